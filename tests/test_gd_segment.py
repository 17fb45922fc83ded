"""Segmentation from saliency (paper 002 Sec. 4): seeded refinement, region hierarchy, Jaccard selection, scores."""

import itertools

import numpy as np
import pytest
import torch

from salseg.methods.gd_saliency.segment import (
    region_hierarchy,
    seeded_refinement,
    segment_from_saliency,
    select_proposal,
)
from salseg.metrics.segmentation import BinarySegmentationScores, f_beta_and_jaccard


def _scene(seed: int = 0):
    """A textured background with two flat objects of different colours: (image (H, W, 3), gt (H, W) bool)."""
    rng = np.random.default_rng(seed)
    img = 0.45 + 0.05 * rng.standard_normal((48, 64, 3))
    gt = np.zeros((48, 64), dtype=bool)
    gt[8:22, 6:22] = True
    img[8:22, 6:22] = (0.95, 0.1, 0.1)
    yy, xx = np.mgrid[:48, :64]
    disc = (yy - 32) ** 2 + (xx - 46) ** 2 <= 8 ** 2
    gt |= disc
    img[disc] = (0.1, 0.2, 0.9)
    return np.clip(img, 0, 1), gt


def _jaccard(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_select_proposal_matches_hand_counts():
    levels = np.zeros((2, 4, 6), dtype=np.int64)
    levels[0, :, 3:] = 1                  # level 0: left half / right half
    levels[1, :2, 3:] = 1                 # level 1: three regions, region 1 = top right, 2 = bottom right
    levels[1, 2:, 3:] = 2
    s = np.zeros((4, 6))
    s[:2, 3:] = 0.9                       # M1 = top right (6 pixels)
    s[2, 3] = 0.8                         # plus one pixel of the bottom right
    mask, jac, n = select_proposal(s, levels)
    assert jac == pytest.approx(6 / 7)    # region 1 of level 1: |M1 & R| = 6, |M1 | R| = 7
    assert mask.sum() == 6 and mask[:2, 3:].all()
    assert n == 4                         # left half (same in both levels, counted once), right half, 1, 2
    empty_mask, empty_jac, _ = select_proposal(np.zeros((4, 6)), levels)
    assert not empty_mask.any() and empty_jac == 0.0
    with pytest.raises(ValueError, match=r"\(L, H, W\)"):
        select_proposal(s, levels[0])


def test_select_proposal_unites_regions_for_several_objects():
    levels = np.array([[0, 0, 1, 1, 2, 2, 3, 3]] * 2).reshape(1, 2, 8)
    s = np.array([[1, 1, 0, 0, 0, 0, 1, 1]] * 2, dtype=float)   # two separate objects: regions 0 and 3
    mask, jac, _ = select_proposal(s, levels)
    assert jac == 1.0 and mask.tolist() == (s > 0.5).tolist()


def test_hierarchy_is_nested_and_coarsens():
    img, _ = _scene()
    levels = region_hierarchy(img, n_segments=100)
    counts = [len(np.unique(lv)) for lv in levels]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]
    for fine, coarse in itertools.pairwise(levels):  # every fine region lies inside one coarse region
        for label in np.unique(fine):
            assert len(np.unique(coarse[fine == label])) == 1


@pytest.mark.parametrize("seeder", ["watershed", "random_walker"])
def test_seeded_refinement_recovers_objects_from_a_blurred_map(seeder):
    img, gt = _scene()
    from scipy import ndimage

    s = ndimage.gaussian_filter(gt.astype(float), 3)
    s = s / s.max()
    refined = seeded_refinement(s, img, runs=4 if seeder == "random_walker" else 20, n_seeds=20, seeder=seeder)
    assert refined.shape == gt.shape and 0 <= refined.min() and refined.max() <= 1
    # the seeded segmentation follows the object edges, the blurred map does not
    assert _jaccard(refined > 0.5, gt) > _jaccard(s > 0.5, gt)
    assert _jaccard(refined > 0.5, gt) > 0.9


def test_a_flat_image_merges_into_one_region_and_one_superpixel_needs_no_graph():
    flat = np.full((20, 24, 3), 0.5)
    levels = region_hierarchy(flat, n_segments=30)
    assert len(np.unique(levels[0])) > 1 and len(np.unique(levels[-1])) == 1  # colour distance 0: all merge
    single = region_hierarchy(flat, n_segments=1)  # one superpixel: no adjacency graph to build (it would raise)
    assert single.shape == (8, 20, 24) and not single.any()
    s = np.zeros((20, 24))
    s[5:10, 5:10] = 1.0
    result = segment_from_saliency(s, flat, runs=3, n_segments=1)
    assert result.mask.all() and result.n_proposals == 1  # the only proposal: the whole image
    assert result.jaccard == pytest.approx((result.refined > 0.5).sum() / 480)


def test_seeded_refinement_edge_cases():
    img, _ = _scene()
    assert not seeded_refinement(np.zeros((48, 64)), img, runs=2).any()
    assert seeded_refinement(np.ones((48, 64)), img, runs=2).all()   # no background seed anywhere
    with pytest.raises(ValueError, match="differ in size"):
        seeded_refinement(np.zeros((10, 10)), img)
    with pytest.raises(ValueError, match="seeder"):
        seeded_refinement(np.zeros((48, 64)), img, seeder="grabcut")


def test_segment_from_saliency_end_to_end_and_deterministic():
    img, gt = _scene(1)
    s = gt * 0.8 + 0.1 * np.random.default_rng(0).random(gt.shape)
    a = segment_from_saliency(s, img, runs=10)
    b = segment_from_saliency(s, img, runs=10)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.refined, b.refined)
    assert a.mask.dtype == bool and _jaccard(a.mask, gt) > 0.9 and a.n_proposals > 10


def test_f_beta_and_jaccard_conventions():
    f, j = f_beta_and_jaccard(tp=6, fp=2, fn=4)   # P = 0.75, R = 0.6
    assert f == pytest.approx(1.3 * 0.75 * 0.6 / (0.3 * 0.75 + 0.6)) and j == pytest.approx(6 / 12)
    assert f_beta_and_jaccard(0, 0, 0) == (1.0, 1.0)
    assert f_beta_and_jaccard(0, 5, 0) == (0.0, 0.0)
    assert f_beta_and_jaccard(0, 0, 5) == (0.0, 0.0)


def test_binary_segmentation_scores_average_images_and_merge_like_ddp():
    p1, g1 = torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)
    p1[:2, :2] = True
    g1[:2] = True                                             # P = 1, R = 0.5
    p2 = torch.full((3, 5), 255, dtype=torch.uint8)           # uint8 PNG values, another size
    g2 = torch.zeros(3, 5, dtype=torch.uint8)
    g2[0] = 255                                               # P = 1/3, R = 1
    whole = BinarySegmentationScores()
    whole.update([p1, p2], [g1, g2])
    got = whole.compute()
    f1, j1 = f_beta_and_jaccard(4, 0, 4)
    f2, j2 = f_beta_and_jaccard(5, 10, 0)
    assert float(got["segF"]) == pytest.approx((f1 + f2) / 2) and float(got["Jaccard"]) == pytest.approx((j1 + j2) / 2)
    a, b = BinarySegmentationScores(), BinarySegmentationScores()
    a.update([p1], [g1])
    b.update([p2], [g2])
    a.merge_state(b)                                          # what the DDP reduction does: add the sums
    assert float(a.compute()["segF"]) == pytest.approx(float(got["segF"]))
    with pytest.raises(ValueError, match="differ"):
        whole.update([p1], [g2])
    with pytest.raises(RuntimeError, match="no image"):
        BinarySegmentationScores().compute()
