"""Joint transforms, test-time distortions, collation and object masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salseg.data import (
    Distortion,
    JointTransform,
    awgn,
    build_distortion,
    build_transform,
    collate_samples,
    jpeg,
    mask_objects,
    render_shapes,
)


def _pattern(h: int = 60, w: int = 80):
    """An image whose red channel marks the object, so image/mask alignment can be checked after transforms."""
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[8:40, 10:30] = 1  # off-centre: a flip or a crop moves it
    mask[45:55, 50:75] = 1
    img[..., 0] = mask * 255
    img[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    return img, mask


def test_eval_resize_shapes_dtypes_and_nearest_mask():
    img, mask = _pattern()
    t = build_transform(32, train=False)
    out = t(img, mask, mask.astype(np.int64) * 3)
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert 0 <= float(out["image"].min()) and float(out["image"].max()) <= 1
    assert out["mask"].shape == (1, 32, 32) and set(torch.unique(out["mask"]).tolist()) == {0.0, 1.0}
    assert out["class_mask"].shape == (32, 32) and set(torch.unique(out["class_mask"]).tolist()) == {0, 3}
    # eval is deterministic
    assert torch.equal(t(img, mask)["image"], out["image"])
    # an input already S x S is left untouched (exact uint8 -> float conversion)
    sq = img[:32, :32]
    assert torch.equal(t(sq, mask[:32, :32])["image"], torch.from_numpy(sq).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("augment", [{"crop_scale": [0.5, 1.0], "hflip": True}, {"hflip": True},
                                     {"crop_scale": [0.9, 1.0], "crop_ratio": [0.8, 1.25]}])
def test_train_transform_keeps_image_and_mask_aligned(augment):
    img, mask = _pattern(120, 160)
    t = build_transform(64, train=True, augment=augment)
    torch.manual_seed(0)
    outs = [t(img, mask) for _ in range(12)]
    for o in outs:
        red = o["image"][0] > 0.5
        agree = (red == (o["mask"][0] > 0)).float().mean()
        assert agree > 0.97, float(agree)
    # it is random: not all outputs are the same
    assert any(not torch.equal(outs[0]["image"], o["image"]) for o in outs[1:])


def test_flip_happens_and_crop_scale_respected():
    img, mask = _pattern(100, 100)
    torch.manual_seed(1)
    t = JointTransform(100, train=True, hflip=True)
    flips = sum(torch.equal(t(img, mask)["mask"][0], torch.from_numpy(mask[:, ::-1].copy()).float())
                for _ in range(40))
    assert 8 < flips < 32
    t = JointTransform(100, train=True, crop_scale=(0.25, 0.25))
    box = [t._crop_box(100, 200) for _ in range(5)]
    assert all((h, w) == (50, 100) for _, _, h, w in box)  # area 1/4, aspect of the image kept
    with pytest.raises(ValueError, match="crop_scale"):
        JointTransform(10, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"augment: unknown key\(s\) \['vflip'\]"):
        build_transform(10, True, {"vflip": True})
    # eval ignores the augmentation entirely
    assert not build_transform(10, False, {"hflip": True}).hflip


def test_awgn_variance_statistics_and_clipping():
    img = torch.full((3, 256, 256), 0.5)
    g = torch.Generator().manual_seed(0)
    for var in (0.001, 0.004):
        out = awgn(img, var, generator=g)
        noise = out - img
        assert abs(float(noise.var()) - var) / var < 0.05
        assert abs(float(noise.mean())) < 0.002
    hi = awgn(torch.rand(3, 64, 64), 0.5, generator=g)
    assert float(hi.min()) >= 0 and float(hi.max()) <= 1
    a = awgn(img, 0.01, generator=torch.Generator().manual_seed(3))
    b = awgn(img, 0.01, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(awgn(img, 0.0), img)
    with pytest.raises(ValueError):
        awgn(img, -1.0)


def test_jpeg_low_quality_changes_the_image_quality_100_barely():
    # a photo-like image: smooth colour fields, fine luminance texture, one luminance edge
    # (libjpeg's 4:2:0 chroma subsampling, the standard setting, blurs sharp COLOUR edges even at quality 100)
    from salseg.data.shapes import _smooth_noise

    rng = np.random.default_rng(0)
    a = 0.5 + 0.35 * _smooth_noise(rng, 128, 6, 3) + 0.1 * _smooth_noise(rng, 128, 32, 1)
    a[40:90, 30:80] += 0.15
    img = (torch.from_numpy(np.clip(a, 0, 1)).permute(2, 0, 1).float() * 255).round() / 255
    d = {q: float((jpeg(img, q) - img).abs().mean()) for q in (10, 30, 100)}
    assert d[10] > 0.02 and d[10] > d[30] > d[100], d
    assert d[100] < 0.005 and d[100] < d[10] / 8, d
    # on the cluttered shapes images low quality is even more visible
    r = render_shapes(0, 11, image_size=128)
    shp = torch.from_numpy(r["image"]).permute(2, 0, 1).float() / 255
    assert float((jpeg(shp, 10) - shp).abs().mean()) > 0.03
    batch = jpeg(img[None].repeat(2, 1, 1, 1), 30)
    assert batch.shape == (2, 3, 128, 128) and torch.equal(batch[0], batch[1])
    assert float(batch.min()) >= 0 and float(batch.max()) <= 1
    with pytest.raises(ValueError):
        jpeg(img, 0)


def test_distortion_specs_ranges_and_reproducibility():
    assert build_distortion(None) is None and build_distortion({"kind": "none"}) is None
    d = build_distortion({"kind": "awgn", "variance": [0.0, 0.05]}, seed=1)
    strengths = [d.strength(i) for i in range(50)]
    assert all(0.0 <= s <= 0.05 for s in strengths) and len(set(strengths)) == 50
    assert strengths == [build_distortion({"kind": "awgn", "variance": [0.0, 0.05]}, seed=1).strength(i)
                         for i in range(50)]
    assert strengths != [build_distortion({"kind": "awgn", "variance": [0.0, 0.05]}, seed=2).strength(i)
                         for i in range(50)]
    img = torch.full((3, 16, 16), 0.5)
    assert torch.equal(d(img, 4), d(img, 4)) and not torch.equal(d(img, 4), d(img, 5))
    q = build_distortion({"kind": "jpeg", "quality": [10, 90]})
    qs = {q.strength(i) for i in range(1000)}
    assert all(isinstance(v, int) and 10 <= v <= 90 for v in qs) and {10, 90} <= qs
    assert build_distortion({"kind": "jpeg", "quality": 30}).strength(7) == 30
    for bad in ({"kind": "jpeg", "quality": 101}, {"kind": "awgn"}, {"kind": "awgn", "variance": 0.1, "x": 1},
                {"kind": "blur"}, {"kind": "awgn", "variance": [0.1, 0.0]}):
        with pytest.raises(ValueError):
            build_distortion(bad)
    assert isinstance(d, Distortion) and "awgn" in repr(d)


def test_collate_samples():
    s = [{"image": torch.zeros(3, 4, 4), "gt": torch.zeros(5, 6, dtype=torch.uint8), "name": "a", "k": 1},
         {"image": torch.ones(3, 4, 4), "gt": torch.zeros(7, 3, dtype=torch.uint8), "name": "b", "k": 2}]
    b = collate_samples(s)
    assert b["image"].shape == (2, 3, 4, 4) and b["name"] == ["a", "b"]
    assert isinstance(b["gt"], list) and [g.shape for g in b["gt"]] == [(5, 6), (7, 3)]
    assert b["k"].tolist() == [1, 2]
    same = collate_samples([dict(s[0]), dict(s[0])])
    assert isinstance(same["gt"], list)  # gt is always a list
    with pytest.raises(KeyError):
        collate_samples([s[0], {"image": torch.zeros(3, 4, 4)}])


def test_mask_objects():
    img = torch.rand(3, 8, 8)
    m = torch.zeros(1, 8, 8)
    m[:, 2:5, 2:5] = 1
    out = mask_objects(img, m, [0.1, 0.2, 0.3])
    assert torch.allclose(out[:, 3, 3], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(out[:, 0, 0], img[:, 0, 0])
    outb = mask_objects(img[None].repeat(2, 1, 1, 1), m[None].repeat(2, 1, 1, 1), torch.tensor([0.0, 0.0, 0.0]))
    assert outb.shape == (2, 3, 8, 8) and float(outb[:, :, 3, 3].abs().sum()) == 0
