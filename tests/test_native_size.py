"""Native resolution: test-time distortions act on the dataset image before any resize (paper 003 Sec. IV-D
distorts the test images themselves), and ``image_size: null`` keeps every image at its own size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.data import SaliencyDataModule, build_distortion
from salseg.data.transforms import JointTransform, to_image_tensor


def _flat_tree(root, n=2, size=(160, 128)):
    """ECSSD layout, images of one flat grey (so any variance in a sample is the distortion's)."""
    w, h = size
    (root / "ECSSD/images").mkdir(parents=True)
    (root / "ECSSD/ground_truth_mask").mkdir(parents=True)
    for k in range(n):
        img = np.full((h + 16 * k, w - 8 * k, 3), 128, np.uint8)
        Image.fromarray(img).save(root / f"ECSSD/images/{k:04d}.png")
        m = np.zeros(img.shape[:2], np.uint8)
        m[20:60, 30:90] = 255
        Image.fromarray(m).save(root / f"ECSSD/ground_truth_mask/{k:04d}.png")
    return root


def _dm(root, image_size, distortion):
    return SaliencyDataModule(root=str(root), test={"e": {"dataset": "ecssd", "split": "all"}},
                              image_size=image_size, eval_batch_size=2, num_workers=0, distortion=distortion)


def test_awgn_variance_holds_at_native_size(tmp_path):
    """A variance of 0.01 is 0.01 on the native image: at native size the sample's noise variance is ~0.01."""
    dm = _dm(_flat_tree(tmp_path), None, {"kind": "awgn", "variance": 0.01})
    dm.setup("test")
    img = dm.test_datasets[0][0]["image"]
    assert img.shape == (3, 128, 160)
    noise = img - 128 / 255
    assert noise.var().item() == pytest.approx(0.01, rel=0.05)


def test_distortion_comes_before_the_resize(tmp_path):
    """At input size 32 the sample is resize(distort(native)): the noise is averaged by the antialiased resize, so
    its variance falls far below 0.01 (distorting after the resize, the old order, kept it at 0.01)."""
    root = _flat_tree(tmp_path)
    dm = _dm(root, 32, {"kind": "awgn", "variance": 0.01})
    dm.setup("test")
    ds = dm.test_datasets[0]
    got = ds[1]["image"]
    assert got.shape == (3, 32, 32)
    assert (got - 128 / 255).var().item() < 0.002
    native = np.asarray(Image.open(root / "ECSSD/images/0001.png").convert("RGB"))
    d = build_distortion({"kind": "awgn", "variance": 0.01}, seed=0)
    want = JointTransform(32)(d.native(native, 1))["image"]
    assert torch.equal(got, want)


def test_jpeg_distortion_is_applied_at_native_size(tmp_path):
    root = tmp_path
    (root / "ECSSD/images").mkdir(parents=True)
    (root / "ECSSD/ground_truth_mask").mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / "ECSSD/images/a.png")
    Image.fromarray(np.zeros((64, 96), np.uint8)).save(root / "ECSSD/ground_truth_mask/a.png")
    dm = _dm(root, 32, {"kind": "jpeg", "quality": 10})
    dm.setup("test")
    got = dm.test_datasets[0][0]["image"]
    want = JointTransform(32)(build_distortion({"kind": "jpeg", "quality": 10}).native(img, 0))["image"]
    assert torch.equal(got, want)
    assert not torch.equal(got, JointTransform(32)(img)["image"])


def test_random_strength_study_draws_per_image_at_native_size(tmp_path):
    """The robustness study's random strengths (a [lo, hi] range) go through the same native-size path."""
    dm = _dm(_flat_tree(tmp_path), None, {"kind": "awgn", "variance": [0.02, 0.04]})
    dm.setup("test")
    ds = dm.test_datasets[0]
    for i in range(2):
        var = ds.distortion.strength(i)
        assert 0.02 <= var <= 0.04
        assert (ds[i]["image"] - 128 / 255).var().item() == pytest.approx(var, rel=0.06)


def test_shapes_distortion_before_resize():
    dm = SaliencyDataModule(root="unused", test={"s": {"dataset": "shapes", "split": "test", "size": 2}},
                            image_size=32, eval_batch_size=2, num_workers=0,
                            distortion={"kind": "awgn", "variance": 0.05})
    dm.setup("test")
    ds = dm.test_datasets[0]
    image, _, _ = ds._raw(ds._index(0))
    want = JointTransform(32)(ds.distortion.native(image, 0))["image"]
    assert torch.equal(ds[0]["image"], want)


def test_native_size_batches_are_lists(tmp_path):
    dm = _dm(_flat_tree(tmp_path), None, None)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    assert isinstance(batch["image"], list) and isinstance(batch["mask"], list)
    assert [tuple(t.shape) for t in batch["image"]] == [(3, 128, 160), (3, 144, 152)]
    assert [tuple(t.shape) for t in batch["mask"]] == [(1, 128, 160), (1, 144, 152)]
    assert all(g.shape == m.shape[1:] for g, m in zip(batch["gt"], batch["mask"]))


def test_native_size_train_crop_keeps_its_own_size():
    torch.manual_seed(0)
    img = np.zeros((100, 80, 3), np.uint8)
    out = JointTransform(None, train=True, crop_scale=(0.25, 0.25))(img, np.zeros((100, 80), np.uint8))
    assert out["image"].shape == (3, 50, 40) and out["mask"].shape == (1, 50, 40)
    assert JointTransform(None)(img)["image"].shape == (3, 100, 80)
    assert torch.equal(to_image_tensor(img), JointTransform(None)(img)["image"])
    with pytest.raises(ValueError, match="positive or null"):
        JointTransform(0)
