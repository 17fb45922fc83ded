"""Tests of Region Contrast (salseg.methods.baselines): algorithm, real-data sanity, LightningModule."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from salseg.methods.baselines import RegionContrast, histogram_contrast, region_contrast_saliency
from salseg.methods.baselines import region_contrast as rcmod


# ----------------------------------------------------------------------------- helpers
def red_disc_image(h: int = 120, w: int = 160, radius: int = 22, seed: int = 0):
    """A saturated red disc on a grey, noise-textured background; returns (image, disc mask)."""
    rng = np.random.default_rng(seed)
    base = 128 + rng.normal(0, 12, size=(h, w, 1)) + rng.normal(0, 4, size=(h, w, 3))
    img = np.clip(base, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h * 0.45) ** 2 + (xx - w * 0.55) ** 2 <= radius**2
    img[disc] = (230, 20, 25)
    return img, disc


def two_squares_image():
    """Flat grey image with two identical red squares: A at the centre, B in a corner."""
    img = np.full((120, 160, 3), 128, np.uint8)
    a = (slice(50, 70), slice(70, 90))
    b = (slice(5, 25), slice(5, 25))
    img[a] = (220, 30, 30)
    img[b] = (220, 30, 30)
    return img, a, b


# --------------------------------------------------------------------- the algorithm
def test_deterministic_shape_dtype_range():
    img, _ = red_disc_image()
    s1 = region_contrast_saliency(img)
    s2 = region_contrast_saliency(img.copy())
    assert s1.shape == img.shape[:2]
    assert s1.dtype == np.float32
    assert np.isfinite(s1).all()
    assert s1.min() == 0.0 and s1.max() == 1.0  # min-max normalised
    np.testing.assert_array_equal(s1, s2)


def test_disc_is_salient():
    img, disc = red_disc_image()
    for kw in ({}, {"segmentation": "slic"}):
        s = region_contrast_saliency(img, **kw)
        fg, bg = float(s[disc].mean()), float(s[~disc].mean())
        assert fg > 0.8, (kw, fg, bg)
        assert bg < 0.25, (kw, fg, bg)
        assert fg - bg > 0.6, (kw, fg, bg)


def test_histogram_contrast_disc_is_salient():
    img, disc = red_disc_image()
    for smooth in (True, False):
        s = histogram_contrast(img, smooth=smooth)
        assert s.shape == disc.shape and s.dtype == np.float32
        assert 0.0 <= s.min() and s.max() <= 1.0
        assert s[disc].mean() - s[~disc].mean() > 0.6


def test_spatial_weighting_direction():
    """Documented: huge sigma_s2 -> global contrast, position does not matter (A == B);
    small sigma_s2 -> local contrast, the corner square B, far from the background's centroid,
    loses saliency relative to the centred square A; the effect grows as sigma_s2 shrinks."""
    img, a, b = two_squares_image()
    ratios = []
    for s2 in (1e6, 0.4, 0.05):
        s = region_contrast_saliency(img, sigma_s2=s2)
        ratios.append(float(s[b].mean()) / float(s[a].mean()))
    assert abs(ratios[0] - 1.0) < 0.02, ratios
    assert ratios[1] < 0.8, ratios
    assert ratios[2] < ratios[1] < ratios[0], ratios


def _region_contrast_loop(hist, cdist, weights, centroids, sigma_s2, spatial_distance, center_w):
    """Straightforward transcription of Eq. 5 and Eq. 6 (reference for the vectorised version)."""
    n_reg, n_col = hist.shape
    out = np.zeros(n_reg)
    for k in range(n_reg):
        total = 0.0
        for i in range(n_reg):
            if i == k:
                continue
            d_r = 0.0
            for a in range(n_col):
                for b in range(n_col):
                    d_r += hist[k, a] * hist[i, b] * cdist[a, b]
            d2 = sum((centroids[k, j] - centroids[i, j]) ** 2 for j in range(centroids.shape[1]))
            d_s = d2 if spatial_distance == "sqeuclidean" else d2**0.5
            total += np.exp(-d_s / sigma_s2) * weights[i] * d_r
        out[k] = total * (1.0 if center_w is None else center_w[k])
    return out


@pytest.mark.parametrize("spatial_distance", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("with_center", [False, True])
def test_vectorised_contrast_equals_loop(spatial_distance, with_center):
    rng = np.random.default_rng(1)
    n_reg, n_col = 6, 5
    hist = rng.random((n_reg, n_col)) * (rng.random((n_reg, n_col)) > 0.3)
    hist[:, 0] += 0.1
    hist /= hist.sum(1, keepdims=True)
    colors = rng.normal(0, 30, size=(n_col, 3))
    cdist = rcmod.color_distance_matrix(colors)
    weights = rng.random(n_reg)
    centroids = rng.random((n_reg, 2))
    center_w = rng.random(n_reg) if with_center else None
    got = rcmod.region_contrast(hist, cdist, weights, centroids, 0.4, spatial_distance, center_w)
    want = _region_contrast_loop(hist, cdist, weights, centroids, 0.4, spatial_distance, center_w)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_quantisation_keeps_coverage_and_merges_rare_colours():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:] = (200, 40, 40)  # 96 %
    img[:3, :] = (40, 40, 200)  # 3 %
    img[3, :] = (210, 45, 50)  # 1 %, other quantisation bin, close to the first colour in Lab
    idx, colors, counts = rcmod.quantize_colors(img, coverage=0.95, min_colors=1)
    assert colors.shape == (1, 3) and counts.tolist() == [10000]
    idx, colors, counts = rcmod.quantize_colors(img, coverage=0.99, min_colors=1)
    assert colors.shape[0] == 2 and sorted(counts.tolist()) == [300, 9700]  # rare red merged into red
    assert (idx[3] == idx[50, 50]).all() and (idx[0] != idx[50, 50]).all()
    idx, colors, counts = rcmod.quantize_colors(img)  # defaults: min_colors=10 keeps all three
    assert colors.shape[0] == 3
    # at most 12^3 bins, capped at max_colors, coverage respected otherwise
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    idx, colors, counts = rcmod.quantize_colors(noisy)
    assert colors.shape[0] == 256 and counts.sum() == 64 * 64 and idx.max() == 255


def test_input_conversions():
    img, _ = red_disc_image(60, 80, 12)
    ref = region_contrast_saliency(img)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 7, np.uint8)], 2)
    np.testing.assert_array_equal(region_contrast_saliency(rgba), ref)
    np.testing.assert_array_equal(region_contrast_saliency(img.astype(np.float32) / 255.0), ref)
    # float input is rounded to the nearest 8-bit level (not truncated)
    off = np.clip((img.astype(np.float64) - 0.3) / 255.0, 0.0, 1.0)
    np.testing.assert_array_equal(region_contrast_saliency(off), ref)
    gray = img[:, :, 0]
    s = region_contrast_saliency(gray)
    np.testing.assert_array_equal(s, region_contrast_saliency(np.repeat(gray[:, :, None], 3, 2)))
    np.testing.assert_array_equal(s, region_contrast_saliency(gray[:, :, None]))
    # no contrast at all -> all-zero map, not NaN
    flat = region_contrast_saliency(np.full((20, 30, 3), 90, np.uint8))
    assert flat.shape == (20, 30) and not flat.any()


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((10, 10, 3), np.int32), "uint8"),
        (np.zeros((10, 10, 3), np.uint16), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((2, 10, 10, 3), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10,), np.uint8), r"\(H, W, 3\)"),
        (np.full((10, 10, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((10, 10, 3), np.nan, np.float64), "finite"),
    ],
)
def test_invalid_inputs(bad, match):
    with pytest.raises(ValueError, match=match):
        region_contrast_saliency(bad)


def test_invalid_parameters():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="segmentation"):
        region_contrast_saliency(img, segmentation="watershed")
    with pytest.raises(ValueError, match="sigma_s2"):
        region_contrast_saliency(img, sigma_s2=0)
    with pytest.raises(ValueError, match="coverage"):
        region_contrast_saliency(img, coverage=1.5)
    with pytest.raises(TypeError, match="unknown"):
        region_contrast_saliency(img, sigma=0.4)


# -------------------------------------------------------------------- real data (sod300)
def _shared_data() -> Path:
    env = os.environ.get("SALSEG_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _center_blob(h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    """Centred Gaussian, std = sigma * side length, min-max normalised (a centre-bias baseline)."""
    y = (np.arange(h) - (h - 1) / 2) / h
    x = (np.arange(w) - (w - 1) / 2) / w
    g = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return (g - g.min()) / (g.max() - g.min())


def test_sod300_mae_beats_center_blob():
    root = _shared_data() / "sod300"
    images = sorted((root / "images").glob("*.jpg"))
    if not images:
        pytest.skip(f"no sod300 images under {root}")
    from PIL import Image

    rc, blob = [], []
    for p in images:
        img = np.asarray(Image.open(p).convert("RGB"))
        gt = np.asarray(Image.open(root / "gt" / f"{p.stem}.png").convert("L")) > 128
        s = region_contrast_saliency(img)
        assert s.shape == gt.shape
        rc.append(float(np.abs(s - gt).mean()))
        blob.append(float(np.abs(_center_blob(*gt.shape) - gt).mean()))
    mae_rc, mae_blob = float(np.mean(rc)), float(np.mean(blob))
    print(f"\nsod300 ({len(images)} images): MAE RC {mae_rc:.4f}, centred Gaussian blob {mae_blob:.4f}")
    assert mae_rc < mae_blob, (mae_rc, mae_blob)
    assert 0.15 < mae_rc < 0.40, mae_rc  # published RC MAE on SOD is ~0.2-0.3 (with the TPAMI extras)


# ------------------------------------------------------------------- LightningModule
class _DictDataset(torch.utils.data.Dataset):
    def __init__(self, n: int = 5, size: int = 48):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.images[:, 0, 12:30, 14:34] = 0.95  # a reddish patch so maps are not trivial
        self.images[:, 1:, 12:30, 14:34] = 0.05

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "gt": (self.images[i, :1] > 0.9).float(), "name": f"img{i}"}


class _Collect(__import__("lightning").Callback):
    def __init__(self):
        self.outputs = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.outputs.append((outputs, batch["image"].shape))


def test_module_contract_and_trainer_test():
    import lightning

    model = RegionContrast()
    assert RegionContrast.trainable is False
    assert len(list(model.parameters())) == 0
    assert model.configure_optimizers() is None
    ds = _DictDataset()
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    collect = _Collect()
    trainer = lightning.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[collect]
    )
    trainer.test(model, dataloaders=loader, verbose=False)
    assert len(collect.outputs) == 3
    for out, shape in collect.outputs:
        sal = out["saliency"]
        assert sal.shape == (shape[0], 1) + tuple(shape[2:]) and sal.dtype == torch.float32
        assert sal.min() >= 0 and sal.max() <= 1

    preds = trainer.predict(model, dataloaders=loader)
    assert len(preds) == 3 and preds[0]["saliency"].shape == (2, 1, 48, 48)
    full = torch.cat([p["saliency"] for p in preds])
    torch.testing.assert_close(full, torch.cat([o["saliency"] for o, _ in collect.outputs]))


def test_module_batched_equals_per_image():
    ds = _DictDataset(n=4, size=40)
    x = ds.images
    model = RegionContrast()
    batched = model(x)
    assert batched.shape == (4, 1, 40, 40) and batched.dtype == torch.float32
    assert batched.device == x.device
    for i in range(len(x)):
        torch.testing.assert_close(batched[i : i + 1], model(x[i : i + 1]), rtol=0, atol=0)
        u8 = (x[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(batched[i, 0].numpy(), region_contrast_saliency(u8))
    torch.testing.assert_close(RegionContrast(num_workers=2)(x), batched, rtol=0, atol=0)
    out = model.test_step({"image": x}, 0)
    torch.testing.assert_close(out["saliency"], batched, rtol=0, atol=0)
    torch.testing.assert_close(model.predict_step({"image": x}, 0)["saliency"], batched, rtol=0, atol=0)


def test_module_parameters_and_input_checks():
    sig = inspect.signature(RegionContrast).parameters
    assert {k: sig[k].default for k in rcmod.DEFAULTS} == rcmod.DEFAULTS  # same defaults as the algorithm
    assert sig["num_workers"].default == 1
    model = RegionContrast(sigma_s2=1e6, segmentation="slic", n_segments=50)
    assert model.hparams.sigma_s2 == 1e6 and model.rc_kwargs["segmentation"] == "slic"
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RegionContrast()(torch.randn(1, 3, 16, 16) * 3)  # mean/std-normalised input
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        RegionContrast()(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="segmentation"):
        RegionContrast(segmentation="nope")
    with pytest.raises(ValueError, match="num_workers"):
        RegionContrast(num_workers=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_returns_on_batch_device():
    x = torch.rand(2, 3, 32, 32, device="cuda")
    out = RegionContrast().test_step({"image": x}, 0)["saliency"]
    assert out.device == x.device and out.shape == (2, 1, 32, 32)
    torch.testing.assert_close(out.cpu(), RegionContrast()(x.cpu()), rtol=0, atol=0)
