"""SOD metrics against their references: PySODMetrics 1.6.x and the MATLAB sal_eval_toolbox.

References used here:
- ../shared/data/pysodmetrics_pairs: the 3 pairs and values PySODMetrics' own test asserts.
- ../shared/data/sod300: the MATLAB toolbox's per-image and aggregate numbers for Amulet's 300 maps.
- PYSOD_CASES below: values printed by pysodmetrics 1.6.2 (numpy 2.3.4, scipy 1.17.1) for small synthetic
  pairs built by ``synthetic_cases()`` (one image per metric object, ``step(pred_uint8, gt_uint8)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from salseg.metrics import (
    METRIC_KEYS,
    AveragedPRFMeasure,
    EMeasure,
    FMeasure,
    MeanAbsoluteError,
    SMeasure,
    SODMetrics,
    WeightedFMeasure,
)
from salseg.metrics import functional as F


def read_l(path) -> np.ndarray:
    """8-bit grayscale like cv2.IMREAD_GRAYSCALE for these files (PIL "L"; checked against read_gray below)."""
    with Image.open(path) as im:
        return np.array(im.convert("L"))


# ---------------------------------------------------------------------------------------------------------------
# Synthetic pairs with PySODMetrics 1.6.2 values
# ---------------------------------------------------------------------------------------------------------------
def synthetic_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    h, w = 48, 64
    yy, xx = np.mgrid[:h, :w]
    textured = ((yy * 37 + xx * 91 + (yy * xx) % 17 * 5) % 256).astype(np.uint8)
    square = np.zeros((h, w), np.uint8)
    square[12:36, 16:44] = 255
    half = np.zeros((h, w), np.uint8)
    half[4:10, 2:4] = 255  # centroid (6.5, 2.5): numpy and MATLAB round it differently
    return {
        "square": (textured, square),
        "empty_gt": (textured, np.zeros((h, w), np.uint8)),
        "full_gt": (textured, np.full((h, w), 255, np.uint8)),
        "const_pred": (np.full((h, w), 128, np.uint8), square),
        "zero_pred": (np.zeros((h, w), np.uint8), square),
        "perfect": (square.copy(), square),
        "half_centroid": (textured, half),
        "soft_gt": (textured, (xx * 4).astype(np.uint8)),
    }


PYSOD_CASES = {
    "square": {"maxF": 0.2677496991576414, "meanF": 0.239028270568014, "adpF": 0.0816967792615868,
               "MAE": 0.49265727124183, "Sm": 0.3335800948228664, "maxEm": 0.6980034194430906,
               "meanEm": 0.39778709642925925, "adpEm": 0.3122698109790161, "wF": 0.2746805232258653},
    "empty_gt": {"maxF": 0.0, "meanF": 0.0, "adpF": 0.0, "MAE": 0.4936019199346405, "Sm": 0.5063980800653596,
                 "maxEm": 0.9941387170302833, "meanEm": 0.5045842152393358, "adpEm": 0.9830674047541518, "wF": 0.0},
    "full_gt": {"maxF": 1.0, "meanF": 0.7240656190438859, "adpF": 0.07069567001846912,
                "MAE": 0.5063980800653595, "Sm": 0.4936019199346405, "maxEm": 1.000325626831651,
                "meanEm": 0.4957414115923153, "adpEm": 0.017258222077499184, "wF": 0.7770857626122817},
    "const_pred": {"maxF": 0.2668621700879765, "meanF": 0.13447351539589436, "adpF": 0.0,
                   "MAE": 0.5011029411764706, "Sm": 0.399467880830331, "maxEm": 0.25008140670791273,
                   "meanEm": 0.2500814067079128, "adpEm": 0.25008140670791273, "wF": 0.22334432225623582},
    "zero_pred": {"maxF": 0.2668621700879765, "meanF": 0.0010424303519061583, "adpF": 0.2668621700879765,
                  "MAE": 0.21875, "Sm": 0.390625, "maxEm": 0.25008140670791273, "meanEm": 0.2500814067079128,
                  "adpEm": 0.25008140670791273, "wF": 0.0},
    "perfect": {"maxF": 1.0, "meanF": 0.9971361803519061, "adpF": 1.0, "MAE": 0.0, "Sm": 0.9999999999999964,
                "maxEm": 1.0003256268316492, "meanEm": 0.997394985346791, "adpEm": 1.0003256268316492, "wF": 1.0},
    "half_centroid": {"maxF": 0.05752212389380532, "meanF": 0.006768024405447326, "adpF": 0.022968197879858657,
                      "MAE": 0.49353043300653593, "Sm": 0.32809002795342973, "maxEm": 0.8994162238733163,
                      "meanEm": 0.25569486633262234, "adpEm": 0.5065879767965785, "wF": 0.005450007161962015},
    "soft_gt": {"maxF": 0.5508537703415081, "meanF": 0.4381877321900043, "adpF": 0.059871846215458546,
                "MAE": 0.49942810457516335, "Sm": 0.3254387836332467, "maxEm": 0.5070562060728661,
                "meanEm": 0.4013271533441098, "adpEm": 0.2553230186421945, "wF": 0.49175762942693746},
}


def _scores(pred, gt, **kwargs) -> dict[str, float]:
    m = SODMetrics(**kwargs)
    m.update([torch.as_tensor(pred)], [torch.as_tensor(gt)])
    return m.compute()


@pytest.mark.parametrize("name", sorted(PYSOD_CASES))
@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float64"])
def test_synthetic_cases_match_pysodmetrics(name, as_float):
    pred, gt = synthetic_cases()[name]
    got = _scores(pred / 255.0 if as_float else pred, gt)
    for key, expected in PYSOD_CASES[name].items():
        assert got[key] == pytest.approx(expected, abs=1e-12), key


def test_edge_case_definitions():
    cases = synthetic_cases()
    pred, _ = cases["empty_gt"]
    p = pred / 255.0
    p = (p - p.min()) / (p.max() - p.min())
    empty = _scores(*cases["empty_gt"])
    assert empty["Sm"] == pytest.approx(1 - p.mean(), abs=1e-14)  # S-measure of an empty GT
    assert empty["wF"] == 0.0 and empty["maxF"] == 0.0 and empty["adpF"] == 0.0
    assert empty["MAE"] == pytest.approx(p.mean(), abs=1e-14)
    full = _scores(*cases["full_gt"])
    assert full["Sm"] == pytest.approx(p.mean(), abs=1e-14)  # S-measure of a full GT
    # A constant map is not normalised (PySOD): 128 stays 128/255.
    const = _scores(*cases["const_pred"])
    gt = cases["const_pred"][1] > 128
    assert const["MAE"] == pytest.approx(np.abs(128 / 255 - gt).mean(), abs=1e-14)
    perfect = _scores(*cases["perfect"])
    assert perfect["MAE"] == 0 and perfect["wF"] == pytest.approx(1.0) and perfect["Sm"] == pytest.approx(1.0)
    assert perfect["maxF_pr"] == pytest.approx(1.0)


def test_centroid_rounding_conventions():
    pred, gt = synthetic_cases()["half_centroid"]
    mask = torch.from_numpy(gt > 128)
    assert F.centroid_split(mask, "half_even") == (7, 3)  # numpy: round(6.5) = 6, round(2.5) = 2, then +1
    assert F.centroid_split(mask, "half_away") == (8, 4)  # MATLAB: round(7.5) = 8, round(3.5) = 4
    default = _scores(pred, gt)["Sm"]
    matlab = _scores(pred, gt, centroid_rounding="half_away")["Sm"]
    assert default == pytest.approx(PYSOD_CASES["half_centroid"]["Sm"], abs=1e-12)
    assert abs(matlab - default) > 1e-4
    with pytest.raises(ValueError, match="centroid_rounding"):
        SMeasure(centroid_rounding="up")



CENTROID_ROUNDINGS = F.CENTROID_ROUNDING


def test_image_statistics_equals_the_single_metric_functions():
    """image_statistics folds the S-measure quadrant histograms into its one histogram pass (uint8 maps); the
    stand-alone functions do not: both must give the very same bits, for either centroid rounding."""
    cases = [synthetic_cases()["half_centroid"]] + _random_pairs(4, seed=3, sizes=((40, 52), (33, 17)))
    for pred, gt in cases:
        p, g = torch.from_numpy(pred), torch.from_numpy(gt)
        for rounding in CENTROID_ROUNDINGS:
            stats = F.image_statistics(p, g, centroid_rounding=rounding)
            assert stats["sm"].item() == F.s_measure(p, g, centroid_rounding=rounding)
            assert stats["wf"].item() == F.weighted_fmeasure(p, g)
        only_sm = F.image_statistics(p, g, ("sm",), centroid_rounding="half_away")
        assert only_sm["sm"].item() == F.s_measure(p, g, centroid_rounding="half_away")

# ---------------------------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------------------------
def _random_pairs(n=5, seed=0, sizes=((40, 52),)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        pred = rng.integers(0, 256, (h, w), dtype=np.uint8)
        pred[: h // 3] = rng.integers(0, 40, (h // 3, w))  # some structure and ties
        gt = np.zeros((h, w), np.uint8)
        gt[h // 4: 3 * h // 4, w // 5: w // 2 + i] = 255
        out.append((pred, gt))
    return out


def _close(a: dict, b: dict, tol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=tol), k


def test_float_and_uint8_inputs_are_equivalent():
    for pred, gt in _random_pairs():
        su = F.image_statistics(torch.from_numpy(pred), torch.from_numpy(gt))
        sf = F.image_statistics(torch.from_numpy(pred / 255.0), torch.from_numpy(gt > 128))
        for key in su:
            if su[key].ndim:  # curves: identical histograms, so identical values
                assert torch.equal(su[key], sf[key]), key
            else:
                assert su[key].item() == pytest.approx(sf[key].item(), abs=1e-14), key
        # GT as float in [0, 1] or bool: same mask
        sg = F.image_statistics(torch.from_numpy(pred), torch.from_numpy((gt / 255.0).astype(np.float32)))
        assert all(torch.equal(su[k], sg[k]) for k in su)


def test_batched_list_and_single_updates_agree():
    pairs = _random_pairs(4)
    preds = torch.stack([torch.from_numpy(p) for p, _ in pairs])
    gts = torch.stack([torch.from_numpy(g) for _, g in pairs])
    batched, listed, single, channel = SODMetrics(), SODMetrics(), SODMetrics(), SODMetrics()
    batched.update(preds, gts)
    listed.update(list(preds), list(gts))
    for p, g in zip(preds, gts):
        single.update(p, g)
    channel.update(preds[:, None], gts[:, None])
    ref = batched.compute()
    for other in (listed, single, channel):
        _close(other.compute(), ref)
    assert set(ref) == set(METRIC_KEYS) and all(isinstance(v, float) for v in ref.values())


def test_images_of_different_sizes_in_one_update():
    pairs = _random_pairs(3, sizes=((30, 40), (45, 33), (20, 64)))
    m = SODMetrics()
    m.update([torch.from_numpy(p) for p, _ in pairs], [torch.from_numpy(g) for _, g in pairs])
    one_by_one = SODMetrics()
    for p, g in pairs:
        one_by_one.update([torch.from_numpy(p)], [torch.from_numpy(g)])
    _close(m.compute(), one_by_one.compute())


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(30, 40\).*\(31, 40\)"):
        SODMetrics().update([torch.zeros(30, 40, dtype=torch.uint8)], [torch.zeros(31, 40, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        SODMetrics().update(torch.zeros(2, 8, 8), torch.zeros(1, 8, 8))


def test_rejects_ambiguous_dtypes_and_ranges():
    pred = torch.zeros(8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="ground truth"):
        F.image_statistics(pred, torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.image_statistics(torch.full((8, 8), 3.0), torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.image_statistics(torch.full((8, 8), float("nan")), torch.zeros(8, 8, dtype=torch.bool))


def test_curves_layout():
    m = SODMetrics()
    pairs = _random_pairs(3)
    m.update([p for p, _ in pairs], [g for _, g in pairs])  # numpy arrays are accepted too
    c = m.curves()
    assert set(c) == {"pr", "pr_matlab", "f"}
    assert set(c["pr"]) == {"precision", "recall"} and set(c["pr_matlab"]) == {"precision", "recall", "f"}
    for curve in (c["f"], c["pr"]["precision"], c["pr"]["recall"], *c["pr_matlab"].values()):
        assert isinstance(curve, list) and len(curve) == 256 and isinstance(curve[0], float)
    # Index i = threshold (255 - i) / 255: recall grows along the list, and the last entry takes every pixel.
    for recall in (c["pr"]["recall"], c["pr_matlab"]["recall"]):
        assert all(a <= b + 1e-15 for a, b in zip(recall, recall[1:])) and recall[-1] == pytest.approx(1.0)
    values = m.compute()
    assert values["maxF"] == pytest.approx(max(c["f"])) and values["maxF_pr"] == pytest.approx(max(c["pr_matlab"]["f"]))


def test_matlab_curve_leaves_out_all_zero_maps():
    (pred, gt), = _random_pairs(1)
    alone, with_zero = AveragedPRFMeasure(), AveragedPRFMeasure()
    alone.update([pred], [gt])
    with_zero.update([pred, np.zeros_like(pred)], [gt, gt])
    a, b = alone.compute(), with_zero.compute()
    assert torch.equal(a["precision"], b["precision"]) and torch.equal(a["recall"], b["recall"])


# ---------------------------------------------------------------------------------------------------------------
# Distributed: states are sums, so shards merge exactly
# ---------------------------------------------------------------------------------------------------------------
def test_merge_state_of_halves_equals_one_object():
    pairs = _random_pairs(6, sizes=((40, 52), (33, 47)))
    full, first, second = SODMetrics(), SODMetrics(), SODMetrics()
    full.update([p for p, _ in pairs], [g for _, g in pairs])
    first.update([p for p, _ in pairs[:3]], [g for _, g in pairs[:3]])
    second.update([p for p, _ in pairs[3:]], [g for _, g in pairs[3:]])
    first.merge_state(second)
    _close(first.compute(), full.compute())
    assert first.curves()["f"] == pytest.approx(full.curves()["f"], abs=1e-15)
    # The same by hand on single metrics: summing the raw states reproduces the one-object state.
    for cls in (FMeasure, AveragedPRFMeasure, MeanAbsoluteError, SMeasure, EMeasure, WeightedFMeasure):
        a, b, c = cls(), cls(), cls()
        a.update([p for p, _ in pairs[:2]], [g for _, g in pairs[:2]])
        b.update([p for p, _ in pairs[2:]], [g for _, g in pairs[2:]])
        c.update([p for p, _ in pairs], [g for _, g in pairs])
        for name in c.metric_state:
            assert torch.allclose(a.metric_state[name] + b.metric_state[name], c.metric_state[name], rtol=0, atol=1e-12)
            assert c.metric_state[name].dtype == torch.float64


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        pairs = _random_pairs(6, sizes=((40, 52), (33, 47)))
        m = SODMetrics()
        shard = pairs[rank::world]
        m.update([p for p, _ in shard], [g for _, g in shard])
        result = {"metrics": m.compute(), "curves": m.curves()}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        # both ranks done before either tears down: on torch 2.6 (the lowest supported, `make test-lowest`) gloo's
        # destroy_process_group on rank 0 hangs now and then once rank 1 has already destroyed its group
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_equals_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    pairs = _random_pairs(6, sizes=((40, 52), (33, 47)))
    single = SODMetrics()
    single.update([p for p, _ in pairs], [g for _, g in pairs])
    expected = single.compute()
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        _close(got["metrics"], expected)
        assert got["curves"]["pr"]["precision"] == pytest.approx(single.curves()["pr"]["precision"], abs=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_inputs_give_the_cpu_numbers():
    pairs = _random_pairs(3)
    cpu, gpu = SODMetrics(), SODMetrics().to("cuda")
    cpu.update([p for p, _ in pairs], [g for _, g in pairs])
    gpu.update([torch.from_numpy(p).cuda() for p, _ in pairs], [torch.from_numpy(g).cuda() for _, g in pairs])
    _close(gpu.compute(), cpu.compute())


# ---------------------------------------------------------------------------------------------------------------
# Reference 1: PySODMetrics' own test data and asserted values
# ---------------------------------------------------------------------------------------------------------------
PYSOD_KEYS = {"MAE": "MAE", "Smeasure": "Sm", "wFmeasure": "wF", "adpEm": "adpEm", "meanEm": "meanEm",
              "maxEm": "maxEm", "adpFm": "adpF", "meanFm": "meanF", "maxFm": "maxF"}


def test_pysodmetrics_reference_values(shared_data):
    from salseg.evaluate import read_gray

    root = shared_data / "pysodmetrics_pairs"
    expected = json.loads((root / "asserted_expected_values.json").read_text())["asserted"]
    names = sorted(os.listdir(root / "masks"))
    pairs = []
    for name in names:
        gt, pred = read_l(root / "masks" / name), read_l(root / "preds" / name)
        # PIL "L" equals the cv2.IMREAD_GRAYSCALE reading here (the RGB mask is all zero) and read_gray.
        assert np.array_equal(gt, read_gray(root / "masks" / name))
        assert np.array_equal(pred, read_gray(root / "preds" / name))
        pairs.append((torch.from_numpy(pred), torch.from_numpy(gt)))
    assert Image.open(root / "masks" / "aerial-1867541__340.png").mode == "RGB" and not pairs[2][1].any()

    # One object per metric, stepped over the 3 pairs (as PySOD's test does).
    singles = [FMeasure(), MeanAbsoluteError(), SMeasure(), EMeasure(), WeightedFMeasure()]
    for metric in singles:
        for pred, gt in pairs:
            metric.update([pred], [gt])
    got = {k: float(v) for m in singles for k, v in m.compute().items() if v.ndim == 0}
    collection = SODMetrics()
    collection.update([p for p, _ in pairs], [g for _, g in pairs])
    together = collection.compute()
    for ref_key, key in PYSOD_KEYS.items():
        tol = 1e-6 if key == "wF" else 1e-9
        assert got[key] == pytest.approx(expected[ref_key], abs=tol), key
        assert together[key] == pytest.approx(expected[ref_key], abs=tol), key


# ---------------------------------------------------------------------------------------------------------------
# Reference 2: the MATLAB toolbox on SOD (300 Amulet maps)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sod300(shared_data):
    root = shared_data / "sod300"
    ref = json.loads((root / "reference_metrics_matlab.json").read_text())
    stats = []
    for name in ref["files"]:
        pred, gt = read_l(root / "preds" / "Amulet" / name), read_l(root / "gt" / name)
        stats.append(F.image_statistics(torch.from_numpy(pred), torch.from_numpy(gt)))
    metrics = SODMetrics()
    metrics.update_from_stats(stats)
    return ref["methods"]["Amulet"], stats, metrics


def test_sod300_per_image_matches_matlab(sod300):
    ref, stats, _ = sod300
    for key, ref_key in (("mae", "MAE"), ("sm", "S_measure"), ("adp_f", "adaptive_F")):
        ours = np.array([s[key].item() for s in stats])
        np.testing.assert_allclose(ours, np.array(ref["per_image"][ref_key]), rtol=0, atol=1e-9, err_msg=key)


def test_sod300_aggregates_match_matlab(sod300):
    ref, _, metrics = sod300
    values, curves = metrics.compute(), metrics.curves()
    agg = ref["aggregate"]
    assert values["maxF_pr"] == pytest.approx(0.80606, abs=2e-4)
    assert values["maxF_pr"] == pytest.approx(agg["MaxFmeasure"], abs=1e-12)  # in fact to the last bits
    for ours, theirs in (("precision", "Pre"), ("recall", "Recall"), ("f", "Fmeasure_Curve")):
        np.testing.assert_allclose(curves["pr_matlab"][ours], ref["curves"][theirs], rtol=0, atol=1e-12)
    assert values["MAE"] == pytest.approx(0.14074, abs=1e-5) and values["MAE"] == pytest.approx(agg["MAE"], abs=1e-12)
    assert values["Sm"] == pytest.approx(0.75792, abs=1e-5)
    assert values["Sm"] == pytest.approx(agg["S_measure"], abs=1e-12)
    assert values["adpF"] == pytest.approx(0.75468, abs=1e-5)
    assert values["adpF"] == pytest.approx(ref["aggregate_adaptive_PRF"][2], abs=1e-12)
    # PySOD convention on the same maps (per-image F curves averaged): pysodmetrics 1.6.2 gives 0.77278851374648.
    assert values["maxF"] == pytest.approx(0.7728, abs=1e-4)
    assert values["maxF"] == pytest.approx(0.77278851374648, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Functional pieces
# ---------------------------------------------------------------------------------------------------------------
def test_matlab_bins_compare_exactly_with_the_thresholds():
    t = torch.arange(256, dtype=torch.float64) / 255
    assert torch.equal(F.matlab_bins(t), torch.arange(256))  # s == t_j counts as >= t_j
    below = torch.nextafter(t[1:], torch.zeros(255, dtype=torch.float64))
    assert torch.equal(F.matlab_bins(below), torch.arange(255))  # one ulp below t_j falls to bin j - 1


def test_fmeasure_curves_pysod_conventions():
    tp = torch.tensor([0.0, 0.0, 5.0, 10.0], dtype=torch.float64)
    fp = torch.tensor([0.0, 3.0, 5.0, 30.0], dtype=torch.float64)
    precision, recall, f = F.fmeasure_curves(tp, fp, n_fg=10)
    assert precision.tolist() == [0.0, 0.0, 0.5, 0.25]  # no positives: TP / 1 = 0
    assert recall.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert f[:2].tolist() == [0.0, 0.0] and f[2].item() == pytest.approx(0.5)
    _, recall_empty, f_empty = F.fmeasure_curves(tp * 0, fp, n_fg=0)  # empty GT: recall TP / 1
    assert recall_empty.abs().sum() == 0 and f_empty.abs().sum() == 0


def test_emeasure_counts_edge_cases():
    n = 100.0
    # Empty GT: the matrix is 1 where the prediction is background.
    assert F.emeasure_from_counts(0.0, 30.0, 0.0, n) == pytest.approx(70 / (n - 1))
    # Full GT: 1 where the prediction is foreground.
    assert F.emeasure_from_counts(30.0, 0.0, n, n) == pytest.approx(30 / (n - 1))
    # A perfect binary prediction aligns everywhere: sum = N, E = N / (N - 1).
    assert F.emeasure_from_counts(40.0, 0.0, 40.0, n) == pytest.approx(n / (n - 1))
