"""The weighted F-measure's OpenCV path (issue 16 item 1) gives scipy's values: the same distances, the same
nearest foreground pixel (scipy's tie rule), and it stays usable in forked workers."""

from __future__ import annotations

import importlib
import multiprocessing

import numpy as np
import pytest
from scipy import ndimage

cv2 = pytest.importorskip("cv2")
wf = importlib.import_module("salseg.metrics.functional.weighted_fmeasure")


def _random_cases(n: int, seed: int = 0):
    """Masks of every kind the search must get right: sparse dots (many equidistant foreground pixels), blobs
    touching the border, thin lines, almost-full masks; errors with exact zeros and repeats."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        kind = i % 4
        if kind == 0:
            gt = rng.random((h, w)) < rng.choice([0.005, 0.03, 0.1])
        elif kind == 1:
            gt = ndimage.binary_dilation(rng.random((h, w)) < 0.01, iterations=int(rng.integers(1, 6)))
        elif kind == 2:
            gt = np.zeros((h, w), bool)
            gt[rng.integers(0, h), :] = True
            gt[:, rng.integers(0, w)] = rng.random() < 0.5
        else:
            gt = rng.random((h, w)) < 0.9
        err = np.round(rng.random((h, w)) * 4) / 4  # few distinct values: ties between candidates matter
        err[rng.random((h, w)) < 0.3] = 0
        yield err, gt


def test_nearest_error_follows_scipys_tie_rule():
    """Every pixel a 7x7 window around the foreground reads gets the error of exactly the foreground pixel that
    scipy's feature transform names (smallest column, then row, among equidistant ones)."""
    checked = 0
    for err, gt in _random_cases(400):
        if not gt.any():
            continue
        h, w = gt.shape
        rows, cols = np.flatnonzero(gt.any(1)), np.flatnonzero(gt.any(0))
        crop = (slice(max(rows[0] - 3, 0), min(rows[-1] + 4, h)), slice(max(cols[0] - 3, 0), min(cols[-1] + 4, w)))
        got = wf._nearest_error_in_band(err, gt, wf.distances(gt), crop)
        nearest = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)
        want = err[nearest[0], nearest[1]][crop]
        read = ndimage.binary_dilation(gt, np.ones((7, 7), bool))[crop]  # what the smoothing of the fg reads
        assert np.array_equal(got[read], want[read])
        checked += int(read.sum())
    assert checked > 10_000


def test_distances_are_exact():
    for _, gt in _random_cases(200, seed=1):
        if not gt.any():
            continue
        ft = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)
        yy, xx = np.indices(gt.shape)
        want = ((ft[0] - yy) ** 2 + (ft[1] - xx) ** 2).astype(np.float64)
        assert np.array_equal(wf.exact_squares(wf.distances(gt)), want)


@pytest.mark.parametrize("use_opencv", [True, False])
def test_both_paths_give_the_same_weighted_f(monkeypatch, use_opencv):
    cases = [c for c in _random_cases(120, seed=2) if c[1].any()]
    monkeypatch.setattr(wf, "use_opencv", False)
    reference = [wf.weighted_fmeasure_from_error(e, g) for e, g in cases]
    monkeypatch.setattr(wf, "use_opencv", use_opencv)
    got = [wf.weighted_fmeasure_from_error(e, g) for e, g in cases]
    assert np.allclose(got, reference, rtol=0, atol=1e-15)
    assert len(set(np.round(reference, 6))) > 50  # the cases differ: not one value checked 120 times


def test_large_images_fall_back_to_scipy():
    gt = np.zeros((1100, 1100), bool)
    gt[500:600, 500:600] = True
    assert wf.distances(gt) is None  # d^2 could exceed what float32 distances hold exactly
    err = np.zeros(gt.shape)
    err[400:700, 400:700] = 0.5
    assert 0 < wf.weighted_fmeasure_from_error(err, gt) < 1


def _score(case):
    return wf.weighted_fmeasure_from_error(*case)


def test_opencv_used_here_then_in_forked_workers():
    """OpenCV runs with its thread pool off, so a fork after using it copies no pool that the child would wait
    on (the reason it was once removed): a parent that scored maps can still fork workers that score."""
    cases = [c for c in _random_cases(40, seed=3) if c[1].any()]
    here = [_score(c) for c in cases]
    assert cv2.getNumThreads() == 1  # setNumThreads(0): calls run in the calling thread
    with multiprocessing.get_context("fork").Pool(2) as pool:
        there = pool.map_async(_score, cases).get(timeout=60)
    assert there == here
