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


def _three_superpixels():
    """10 x 10: superpixel 0 = columns 0-1 (blue), 1 = columns 2-3 (red), 2 = columns 4-9 (blue). Contrast (Eq. 5):
    GC_1 = 2 d, GC_0 = GC_2 = d, so the normalised low-level map is 1 on superpixel 1 and 0 elsewhere."""
    img = np.zeros((10, 10, 3))
    img[..., 2] = 1.0
    img[:, 2:4] = (1.0, 0.0, 0.0)
    labels = np.zeros((10, 10), dtype=np.int64)
    labels[:, 2:4], labels[:, 4:] = 1, 2
    return img, labels


def test_graythresh_is_matlabs_otsu_on_the_fixed_unit_range():
    from salseg.methods.gd_saliency.refine import graythresh

    s = np.zeros((10, 10))
    s[:, 2:4], s[:, 4:] = 51 / 255, 102 / 255  # 20 % at 0, 20 % at bin 51, 60 % at bin 102
    # between-class variance (bin units): {0} | {51, 102}: .2 * .8 * 89.25^2 = 1274.5; {0, 51} | {102}:
    # .4 * .6 * 76.5^2 = 1404.5, the same for every split in the empty bins 51..101: MATLAB takes their mean, 76
    assert graythresh(s) == pytest.approx(76 / 255)
    assert graythresh(s / 2) == pytest.approx(38 / 255)  # bins 0, 26, 51: the same split, gap 26..50
    assert graythresh(np.full((4, 4), 0.3)) == 0.0


def test_authors_refinement_by_hand():
    img, labels = _three_superpixels()
    s = np.zeros((10, 10))
    s[:, 2:4], s[:, 4:] = 51 / 255, 102 / 255  # peak 0.4: the authors' raw map is not rescaled to 1
    out = refine(s, img, labels=labels)
    # level = graythresh 76/255 x 1.3 x peak 0.4 = 0.155: both 0.2 and 0.4 survive (x1.3 alone, 0.387, cuts 0.2)
    # superpixel mean (already constant) and min-max: (0, 0.5, 1)
    assert np.allclose(out["smoothed"][0], [0, 0, .5, .5, 1, 1, 1, 1, 1, 1])
    assert np.allclose(out["lowlevel"][0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
    # x (contrast + 0.2): (0, 0.6, 0.2); min-max: (0, 1, 1/3); x1.7, clip: (0, 1, 0.567); nothing <= 0.2
    # (without the min-max: 0.2 x 1.7 = 0.34 on superpixel 2)
    assert np.allclose(out["refined"][0], [0, 0, 1, 1] + [1.7 / 3] * 6)
    with pytest.raises(ValueError, match=r"reads a raw map in \[0, 1\]"):
        refine(s * 3, img, labels=labels)  # peak 1.2: not a map on the authors' scale
