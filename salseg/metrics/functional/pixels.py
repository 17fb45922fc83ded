"""The shared pixel engine: a map's pixels as groups of values, their histograms and cumulative counts.

Conventions are those of PySODMetrics 1.6.x (github.com/lartpang/PySODMetrics, ``py_sod_metrics/sod_metrics.py``
and ``utils.py``); the MATLAB PR curve's bins follow sal_eval_toolbox ``tools/Curve_BenchCode/performCalcu.m``.

Thresholds: the curves quantise the prepared map (:mod:`.inputs`) as ``uint8(floor(pred * 255))`` into 256 bins;
reversed cumulative sums of the foreground / background histograms (:func:`descending_cumsum`) give, for all
thresholds ``t = 255 .. 0`` at once, the true / false positives of ``pred_q >= t``. The MATLAB curve bins the map
divided by its max against ``t_j = j / 255`` (:func:`matlab_bins`).

How it is computed. A map's pixels are seen as :class:`Group` s: the prediction values of a set of pixels (GT foreground
or background, whole image or one S-measure quadrant) with their multiplicities. For a uint8 map (the usual case: saved
PNGs, the evaluation callback) a group is the 256 possible levels with a histogram of counts, built by ``bincount`` of a
joint (level, gt) code; every level's normalised value is computed with exactly the float64 operations PySOD applies per
pixel, so thresholds and quantisation are bit-identical, and beyond one pass of histogramming (plus the S-measure's
centroid and quadrant counts) F, E, S and MAE cost O(256) work. For a float map a group is simply the pixel values
(multiplicity 1); the same formulas serve both, and the tests check that uint8 ``k`` and float ``k / 255`` agree to
~1e-15. Sums are then taken in a different order than numpy's, so values differ from PySOD in the last bits only.

Where it runs: numpy float64 on the CPU for the 256-entry tables and every float sum (a table operation costs
~1 us in numpy against ~5-10 us of torch call overhead, and a map needs a few hundred of them); the per-pixel
passes over a uint8 map (mask, joint codes, one joint histogram, centroid) are numpy on the same memory. Nothing
here imports torch (``salseg eval`` runs without it); :func:`.image_stats.image_statistics` hands the results to
the torch metric classes as float64 tensors. The weighted F-measure is numpy/OpenCV (scipy for
images too large for OpenCV's float32 distances): an exact Euclidean distance transform and, once the map is in
numpy, a separable 7x7 filter faster than a float64 ``conv2d`` (the batched torch path of :mod:`.batched` does
both on a device). Maps given on a GPU
are copied to the CPU first (a uint8 map is ~0.1 MB): the per-image work is a few hundred small operations on
256-entry tables, each of which would cost a kernel launch and a host synchronisation on a GPU, and the
weighted F-measure needs the CPU anyway. The metric classes move the resulting sums back to their own device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from salseg.metrics.functional.inputs import NUM_BINS, minmax, to_numpy, unit_scale


@dataclass(frozen=True)
class Group:
    """Prediction values of a set of pixels, ``values[k]`` occurring ``counts[k]`` times (``None``: once each).

    numpy float64 arrays: the tables have 256 entries, where numpy's per-call cost (~1 us) is a fraction of
    torch's.
    """

    values: np.ndarray
    counts: np.ndarray | None = None

    def n(self) -> float:
        return float(self.values.size) if self.counts is None else float(self.counts.sum())

    def _wsum(self, x: np.ndarray) -> float:
        return float(x.sum() if self.counts is None else x @ self.counts)

    def total(self) -> float:
        return self._wsum(self.values)

    def mean(self) -> float:
        """Weighted mean; exactly the value when only one value occurs, so a constant region has zero spread."""
        present = self.values if self.counts is None else self.values[self.counts > 0]
        if present.size == 0:
            return math.nan
        lo, hi = present.min(), present.max()
        if lo == hi:
            return float(lo)
        return self.total() / self.n()

    def sum_dev(self, m: float) -> float:
        return self._wsum(self.values - m)

    def sum_sq_dev(self, m: float) -> float:
        d = self.values - m
        return self._wsum(d * d)

    def count_ge(self, t: float) -> float:
        hit = self.values >= t
        return float(np.count_nonzero(hit)) if self.counts is None else float(self.counts[hit].sum())

    def union(self, other: Group) -> Group:
        if self.counts is not None and other.counts is not None and self.values is other.values:
            return Group(self.values, self.counts + other.counts)
        return Group(np.concatenate([self._expanded(), other._expanded()]))

    def complement(self) -> Group:
        """Values 1 - v (S_object of the background)."""
        return Group(1 - self.values, self.counts)

    def _expanded(self) -> np.ndarray:
        return self.values if self.counts is None else np.repeat(self.values, self.counts.astype(np.int64))


_LEVELS = np.arange(NUM_BINS, dtype=np.float64) / 255  # uint8 level k in the [0, 1] scale (im2double)


class _LevelPixels:
    """A uint8 map as 256 levels: groups are histograms over the level table (the fast path).

    The per-pixel passes are numpy on the map's memory; the 256-entry tables are numpy float64 (torch's per-call
    overhead would dominate on them). ``split`` (rows, columns of the S-measure's top-left quadrant), when known
    up front, folds the quadrant histograms into the one ``bincount`` pass.
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray, split: tuple[int, int] | None = None,
                 rounding: str | None = None):
        self.raw, self.gt = pred, gt
        self.split_rounding = rounding
        p, g = pred, gt
        # Joint code per pixel: level + 256 * gt (+ 512 * quadrant), so one bincount gives all histograms.
        codes = np.left_shift(g.view(np.uint8), 8, dtype=np.int16)
        codes |= p
        self.split = split
        if split is None:
            self.codes = codes
            self.joint = self._histogram(codes)
        else:
            cy, cx = split
            codes[:cy, cx:] |= 1 << 9
            codes[cy:, :cx] |= 2 << 9
            codes[cy:, cx:] |= 3 << 9
            self.codes = codes
            self.quadrant_hists = _bincount(codes, 4 * 2 * NUM_BINS).reshape(4, 2, NUM_BINS)
            self.joint = self.quadrant_hists.sum(0)  # exact: integer counts
        # Lowest / highest level present, from the histogram (no extra pass over the pixels).
        present = np.flatnonzero(self.joint[0] + self.joint[1])
        lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, 0)
        table = (_LEVELS - _LEVELS[lo]) / (_LEVELS[hi] - _LEVELS[lo]) if hi != lo else _LEVELS
        self.table_np = self.table = table
        self.top = hi

    @staticmethod
    def _histogram(codes: np.ndarray) -> np.ndarray:
        return _bincount(codes, 2 * NUM_BINS).reshape(2, NUM_BINS)

    def classes(self) -> tuple[Group, Group]:
        return Group(self.table, self.joint[1]), Group(self.table, self.joint[0])

    def quadrants(self, cy: int, cx: int) -> list[tuple[Group, Group]]:
        if self.split == (cy, cx):
            parts = list(self.quadrant_hists)
        else:
            c = self.codes & 0x1FF
            parts = [self._histogram(c[:cy, :cx]), self._histogram(c[:cy, cx:]), self._histogram(c[cy:, :cx])]
            parts.append(self.joint - parts[0] - parts[1] - parts[2])  # exact: integer counts
        return [(Group(self.table, h[1]), Group(self.table, h[0])) for h in parts]

    def remap(self, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fg, bg) histograms after moving level v's pixels to bin ``bins[v]``."""
        bins = bins.astype(np.intp)
        return (np.bincount(bins, self.joint[1], NUM_BINS), np.bincount(bins, self.joint[0], NUM_BINS))

    def quantised_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        return self.remap((self.table_np * 255).astype(np.uint8))  # truncation, as PySOD

    def matlab_histograms(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.top == 0:
            return None
        levels = _LEVELS / (self.top / 255)
        return self.remap(np.minimum(_matlab_bins_np(levels), NUM_BINS - 1))  # levels above the max: empty

    def error_map(self) -> np.ndarray:
        """|pred - gt| per pixel (numpy) through a table indexed by the joint code."""
        table = np.concatenate([self.table_np, 1 - self.table_np])
        if self.split is not None:
            table = np.tile(table, 4)
        return table[self.codes]  # fancy indexing: half the time of ``take`` with int16 indices


class _FloatPixels:
    """A float map: groups are the pixel values themselves."""

    def __init__(self, pred: np.ndarray, gt: np.ndarray):
        self.scaled = unit_scale(pred)
        self.norm, self.gt = minmax(self.scaled), gt

    def classes(self) -> tuple[Group, Group]:
        return Group(self.norm[self.gt]), Group(self.norm[~self.gt])

    def quadrants(self, cy: int, cx: int) -> list[tuple[Group, Group]]:
        out = []
        for rows, cols in ((slice(None, cy), slice(None, cx)), (slice(None, cy), slice(cx, None)),
                           (slice(cy, None), slice(None, cx)), (slice(cy, None), slice(cx, None))):
            p, g = self.norm[rows, cols], self.gt[rows, cols]
            out.append((Group(p[g]), Group(p[~g])))
        return out

    def _split(self, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = bins.reshape(-1).astype(np.intp) + NUM_BINS * self.gt.reshape(-1).astype(np.intp)
        h = _bincount(idx, 2 * NUM_BINS).reshape(2, NUM_BINS)
        return h[1], h[0]

    def quantised_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        return self._split((self.norm * 255).astype(np.uint8))  # truncation, as PySOD

    def matlab_histograms(self) -> tuple[np.ndarray, np.ndarray] | None:
        s = np.maximum(self.scaled, 0)
        top = s.max()
        return None if top == 0 else self._split(_matlab_bins_np(s / top))

    def error_map(self) -> np.ndarray:
        return np.abs(self.norm - self.gt.astype(np.float64))


def _bincount(codes: np.ndarray, length: int) -> np.ndarray:
    """float64 histogram of non-negative integer codes (exact: integer counts)."""
    return np.bincount(codes.reshape(-1), minlength=length).astype(np.float64)


def pixels_of(pred: np.ndarray, gt: np.ndarray, split: tuple[int, int] | None = None, rounding: str | None = None):
    """Pixels of a prepared (pred, boolean gt) numpy pair (:func:`.inputs.prepare_pair`); ``split``: the
    S-measure quadrants (``centroid_split`` with ``rounding``), when known in advance (uint8 maps)."""
    return _LevelPixels(pred, gt, split, rounding) if pred.dtype == np.uint8 else _FloatPixels(pred, gt)


def descending_cumsum(hist):
    """Counts of ``value >= t`` for t = 255, 254, ..., 0 (entry i is threshold 255 - i); numpy or torch."""
    if isinstance(hist, np.ndarray):
        return np.cumsum(hist[::-1])
    import torch  # a tensor was given, so torch is loaded already

    return torch.cumsum(torch.flip(hist, dims=(0,)), dim=0)


def matlab_bins(s):
    """Index j of the MATLAB threshold bin ``t_j <= s < t_{j+1}``, t_j = j / 255 (s in [0, 1]); numpy or torch.

    performCalcu.m builds ``thresholds = [255:-1:0]/255`` and counts ``s >= t`` with ``histc`` and a flipped
    cumsum: float64 comparisons with the exact same threshold values, found here by a right-sided binary search
    (``searchsorted`` / ``bucketize``; no rounding).
    """
    if isinstance(s, np.ndarray):
        return _matlab_bins_np(s)
    import torch  # a tensor was given, so torch is loaded already

    return torch.from_numpy(_matlab_bins_np(to_numpy(s).astype(np.float64))).to(s.device)


_THRESHOLDS = np.arange(NUM_BINS, dtype=np.float64) / 255


def _matlab_bins_np(s: np.ndarray) -> np.ndarray:
    """:func:`matlab_bins` in numpy (``searchsorted`` right == ``bucketize`` right: same comparisons)."""
    return np.searchsorted(_THRESHOLDS, s, side="right") - 1
