"""Refinement of GD maps: superpixel mean (001 Eq. 4), global colour contrast (Eq. 5), the two recipes, closing."""

import numpy as np
import pytest
from skimage import color

from salseg.methods.gd_saliency.refine import (
    global_color_contrast,
    morphological_smooth,
    refine,
    slic_superpixels,
    superpixel_mean,
)


def _two_region_image():
    img = np.zeros((20, 30, 3))
    img[:, :10] = (1.0, 0.0, 0.0)  # red left third
    img[:, 10:] = (0.0, 0.0, 1.0)  # blue rest
    labels = np.zeros((20, 30), dtype=np.int64)
    labels[:, 10:] = 1
    return img, labels


def test_superpixel_mean_is_constant_per_superpixel_and_keeps_the_sums():
    rng = np.random.default_rng(0)
    s = rng.random((20, 30))
    _, labels = _two_region_image()
    out = superpixel_mean(s, labels)
    assert np.allclose(out[:, :10], s[:, :10].mean()) and np.allclose(out[:, 10:], s[:, 10:].mean())
    assert out.sum() == pytest.approx(s.sum())
    with pytest.raises(ValueError, match="differ in size"):
        superpixel_mean(s, labels[:, :5])


def test_global_color_contrast_against_eq_5():
    img, labels = _two_region_image()
    gc = global_color_contrast(img, labels)
    # two superpixels: GC_1 = GC_2 = ||C_red - C_blue||: equal, so the normalised map is all zero
    assert np.allclose(gc, 0.0)
    img[:5, 10:] = (0.0, 1.0, 0.0)  # a third, green superpixel
    labels[:5, 10:] = 2
    gc = global_color_contrast(img, labels)
    lab = color.rgb2lab(np.array([[[1, 0, 0], [0, 0, 1], [0, 1, 0]]], dtype=float))[0]
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1).sum(1)
    expected = (d - d.min()) / (d.max() - d.min())
    assert gc[0, 0] == pytest.approx(expected[0]) and gc[10, 20] == pytest.approx(expected[1])
    assert gc[0, 20] == pytest.approx(expected[2])


def test_slic_gives_about_n_segments_and_accepts_chw_tensors():
    import torch

    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    img = np.stack([xx, yy, 1 - xx]).astype(np.float32)  # a smooth colour ramp: SLIC makes a regular grid
    labels = slic_superpixels(torch.from_numpy(img), n_segments=20)
    assert labels.shape == (48, 64) and 5 <= labels.max() + 1 <= 40


@pytest.mark.parametrize("recipe", ["authors", "paper"])
def test_refine_stages_are_maps_in_unit_range(recipe):
    img, labels = _two_region_image()
    img[:, 10:] = 0.5  # a gray background in two superpixels: the red one has the highest contrast
    labels[10:, 10:] = 2
    s = np.zeros((20, 30))
    s[5:15, 2:8] = 1.0  # raw saliency on the red region
    s[0, 20] = 0.3  # a speck of noise
    out = refine(s, img, recipe=recipe, labels=labels)
    for key in ("smoothed", "lowlevel", "refined"):
        assert out[key].shape == (20, 30) and out[key].min() >= 0 and out[key].max() <= 1
    assert out["refined"][:, 10:].max() == 0  # the noise speck is pruned away
    assert out["refined"][:, :10].min() > 0  # the whole red superpixel is salient after smoothing
    assert np.allclose(out["lowlevel"][:, :10], 1.0) and np.allclose(out["lowlevel"][:, 10:], 0.0)
    if recipe == "authors":
        assert (out["refined"][out["refined"] > 0] >= 0.2).all()  # zero below 0.2
    with pytest.raises(ValueError, match="recipe"):
        refine(s, img, recipe="x")
    with pytest.raises(ValueError, match="differ in size"):
        refine(s[:10], img)


def test_morphological_smooth_closes_a_hole():
    s = np.zeros((21, 21))
    s[5:16, 5:16] = 1.0
    s[10, 10] = 0.0
    out = morphological_smooth(s, radius=1)
    assert out[10, 10] == 1.0 and out[0, 0] == 0.0
    assert morphological_smooth(np.ones((50, 100))).shape == (50, 100)
