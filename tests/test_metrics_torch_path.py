"""The batched torch path of the SOD metrics (salseg.metrics.functional.batched) against the numpy path.

Run on the CPU: the torch path is the same tensor code on any device, so equality here is what a GPU run relies
on. Values agree to ~1e-15 (sums taken in another order); the assertions allow 1e-9 (the contract is 1e-6).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.metrics import METRIC_KEYS, SODMetrics
from salseg.metrics import functional as F
from salseg.metrics.functional.batched import batch_statistics, pair_statistics, split_images

TOL = 1e-9


def _maps(b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B uint8 maps and uint8 GTs with the edge cases mixed in: empty / full GT, constant and all-zero maps,
    speckled GTs (many equally near foreground pixels: the weighted F's tie rule), few-level maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    preds, gts = [], []
    for i in range(b):
        pred = rng.integers(0, 256, (h, w), dtype=np.uint8)
        cy, cx, r2 = rng.integers(0, h), rng.integers(0, w), rng.integers(1, max(2, h * w // 3))
        gt = (yy - cy) ** 2 + (xx - cx) ** 2 < r2
        kind = i % 8
        if kind == 1:
            gt[:] = False
        elif kind == 2:
            gt[:] = True
        elif kind == 3:
            pred[:] = 77
        elif kind == 4:
            gt = rng.random((h, w)) < 0.2
        elif kind == 5:
            pred = (gt * 200 + rng.integers(0, 40, (h, w))).astype(np.uint8)
        elif kind == 6:
            pred[:] = 0
        elif kind == 7:
            pred = pred // 85 * 85
        preds.append(pred)
        gts.append(gt.astype(np.uint8) * 255)
    return torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts))


def _assert_stats_equal(got: dict, ref: dict, tol: float = TOL, what: str = "") -> None:
    assert got.keys() == ref.keys()
    for key in ref:
        diff = (torch.as_tensor(got[key], dtype=torch.float64) - torch.as_tensor(ref[key])).abs().max().item()
        assert diff <= tol, f"{what} {key}: differs by {diff}"


@pytest.mark.parametrize("size", [(13, 17), (31, 24), (48, 64)])
@pytest.mark.parametrize("as_float", [False, True])
def test_torch_path_equals_numpy_path_per_image(size, as_float):
    preds, gts = _maps(16, *size, seed=sum(size))
    if as_float:
        preds, gts = preds.double() / 255, gts > 128
    got = split_images(batch_statistics(preds, gts))
    for i, stats in enumerate(got):
        _assert_stats_equal(stats, F.image_statistics(preds[i], gts[i]), what=f"image {i}")


@pytest.mark.parametrize("rounding", ["half_even", "half_away"])
def test_centroid_rounding_and_options_follow_the_numpy_path(rounding):
    h, w = 12, 9
    gt = torch.zeros(h, w, dtype=torch.bool)
    gt[4:10, 2:4] = True  # centroid (6.5, 2.5): the two conventions split differently
    preds, gts = _maps(4, h, w, seed=5)
    gts = torch.cat([gts, (gt.to(torch.uint8) * 255)[None]])
    preds = torch.cat([preds, preds[:1]])
    kwargs = {"beta2": 0.5, "alpha": 0.7, "wf_beta": 2.0, "centroid_rounding": rounding}
    got = split_images(batch_statistics(preds, gts, **kwargs))
    for i, stats in enumerate(got):
        _assert_stats_equal(stats, F.image_statistics(preds[i], gts[i], **kwargs), what=f"image {i}")


def test_batched_equals_one_image_at_a_time():
    preds, gts = _maps(9, 21, 34, seed=11)
    batched = split_images(batch_statistics(preds, gts))
    for i in range(len(preds)):
        (alone,) = split_images(batch_statistics(preds[i:i + 1], gts[i:i + 1]))
        _assert_stats_equal(batched[i], alone, tol=1e-15, what=f"image {i}")


def test_pairs_of_different_sizes_keep_their_order():
    a, ga = _maps(3, 20, 30, seed=1)
    b, gb = _maps(2, 17, 11, seed=2)
    pairs = [(a[0], ga[0]), (b[0], gb[0]), (a[1], ga[1]), (b[1], gb[1]), (a[2], ga[2])]
    got = pair_statistics(pairs)
    for (p, g), stats in zip(pairs, got):
        _assert_stats_equal(stats, F.image_statistics(p, g))


def test_sodmetrics_engines_agree_and_auto_keeps_numpy_on_the_cpu(monkeypatch):
    preds, gts = _maps(8, 25, 19, seed=7)
    odd_p, odd_g = _maps(3, 14, 33, seed=8)
    p_list, g_list = list(preds) + list(odd_p), list(gts) + list(odd_g)
    results = {}
    for engine in ("numpy", "torch"):
        metrics = SODMetrics(engine=engine)
        metrics.update(p_list, g_list)
        results[engine] = (metrics.compute(), metrics.curves())
    assert list(results["torch"][0]) == list(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert results["torch"][0][key] == pytest.approx(results["numpy"][0][key], abs=TOL), key
    np.testing.assert_allclose(results["torch"][1]["pr_matlab"]["f"], results["numpy"][1]["pr_matlab"]["f"],
                               rtol=0, atol=TOL)

    import salseg.metrics.functional.batched as batched

    def refuse(*args, **kwargs):
        raise AssertionError("engine='auto' took the torch path for CPU maps")

    monkeypatch.setattr(batched, "pair_statistics", refuse)
    SODMetrics().update(p_list[:2], g_list[:2])  # auto on CPU tensors: numpy


def test_unknown_engine_and_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"engine must be one of .*got 'gpu'"):
        SODMetrics(engine="gpu")
    with pytest.raises(ValueError, match=r"\(4, 5\) differs from ground-truth shape \(4, 6\)"):
        pair_statistics([(torch.zeros(4, 5, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.uint8))])
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        batch_statistics(torch.full((1, 3, 3), 2.0), torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="uint8 .* or float"):
        batch_statistics(torch.zeros(1, 3, 3, dtype=torch.int64), torch.zeros(1, 3, 3, dtype=torch.bool))


def test_sod300_subset_matches_the_references(shared_data):
    root = shared_data / "sod300"
    ref = json.loads((root / "reference_metrics_matlab.json").read_text())
    names = ref["files"][::30]  # 10 of the 300 maps, of several sizes
    per_image = ref["methods"]["Amulet"]["per_image"]
    index = {name: i for i, name in enumerate(ref["files"])}

    def read(path):
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("L")))

    pairs = [(read(root / "preds" / "Amulet" / n), read(root / "gt" / n)) for n in names]
    got = pair_statistics(pairs)
    for name, (pred, gt), stats in zip(names, pairs, got):
        for key, ref_key in (("mae", "MAE"), ("sm", "S_measure"), ("adp_f", "adaptive_F")):
            assert stats[key].item() == pytest.approx(per_image[ref_key][index[name]], abs=1e-9), (name, key)
        _assert_stats_equal(stats, F.image_statistics(pred, gt), what=name)


def test_test_loop_resizes_a_batch_as_it_resizes_each_map():
    from salseg.callbacks.scorers import to_gt_resolution

    maps = torch.rand(5, 1, 37, 51, generator=torch.Generator().manual_seed(0))
    gts = [torch.zeros(1, 60, 80, dtype=torch.uint8) for _ in range(5)]
    batched, one_by_one = to_gt_resolution(maps, gts), to_gt_resolution(list(maps), gts)
    assert all(torch.equal(a, b) for a, b in zip(batched, one_by_one))
    assert batched[0].shape == (60, 80) and batched[0].dtype == torch.uint8


def test_weighted_f_far_from_the_foreground_matches():
    """Pixels farther than 270 px from the foreground: the row pass stops there, their weight is exactly 2."""
    from scipy import ndimage

    from salseg.metrics.functional import batched

    gts = torch.zeros(2, 12, 700, dtype=torch.bool)
    gts[0, 3:6, :3] = True
    gts[1, 5, 650] = True
    preds = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (2, 12, 700), dtype=np.uint8))
    got = batch_statistics(preds, gts, ("wf",))["wf"]
    for i in range(2):
        assert got[i].item() == pytest.approx(F.image_statistics(preds[i], gts[i], ("wf",))["wf"].item(), abs=TOL)
    # The distances themselves: exact up to 270 px, and never below the true one beyond.
    near_row = batched._column_nearest(gts)
    dy2 = torch.where(near_row >= 0, (near_row - torch.arange(12)[None, :, None]) ** 2, batched._BIG).to(torch.int32)
    ours = batched._row_distances(dy2).numpy()  # squared distances (int32)
    for i in range(2):
        exact = ndimage.distance_transform_edt(~gts[i].numpy())
        near = exact <= batched._FAR
        np.testing.assert_array_equal(ours[i][near], np.round(exact[near] ** 2))
        assert (ours[i][~near] > batched._FAR ** 2).all() and (~near).any()
