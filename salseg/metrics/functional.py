"""Per-image math of the salient-object-detection (SOD) metrics, as pure functions.

Conventions are those of PySODMetrics 1.6.x (github.com/lartpang/PySODMetrics, ``py_sod_metrics/sod_metrics.py``
and ``utils.py``), which mirrors the MATLAB code of the metric authors; the averaged-PR ``maxF_pr`` follows the
older MATLAB benchmark (sal_eval_toolbox, ``tools/Curve_BenchCode/performCalcu.m``). The formulas were
re-derived from those references and the papers; no code is copied.

Inputs, per image:

- ``pred``: (H, W) ``uint8`` (0..255, a saved 8-bit map) or floating point in [0, 1].
- ``gt``: (H, W) ``uint8`` raw 8-bit values (foreground = ``gt > 128``), ``bool``, or floating point (``> 0.5``).

Preparation (PySOD ``prepare_data``, float64): a uint8 map is divided by 255; then, unless the map is constant,
it is min-max normalised to [0, 1]. The threshold curves quantise that map as ``uint8(floor(pred * 255))`` into
256 bins; reversed cumulative sums of the foreground / background histograms give, for all thresholds
``t = 255 .. 0`` at once, the true / false positives of ``pred_q >= t``.

Curve order: every curve has 256 entries in DESCENDING threshold order. Entry ``i`` is the threshold ``255 - i``
(quantised map, PySOD) or ``(255 - i) / 255`` (MATLAB curve); the last entry is "everything is foreground".

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
passes over a uint8 map (mask, joint codes, centroid) are numpy on the same memory, except the one joint
histogram, a ``torch.bincount`` (faster than ``np.bincount`` on int16 codes); the results are returned as float64
torch tensors. The weighted F-measure is numpy/scipy: torch has no exact Euclidean distance transform with
nearest-feature indices (``scipy.ndimage.distance_transform_edt``), and once the map is in numpy scipy's
separable 7x7 filter is also faster than a float64 ``conv2d``. Maps given on a GPU
are copied to the CPU first (a uint8 map is ~0.1 MB): the per-image work is a few hundred small operations on
256-entry tables, each of which would cost a kernel launch and a host synchronisation on a GPU, and the
weighted F-measure needs the CPU anyway. The metric classes move the resulting sums back to their own device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

EPS = float(np.spacing(1))  # MATLAB's eps == numpy.spacing(1) == PySOD's EPS (2.220446049250313e-16)
NUM_BINS = 256
F64 = torch.float64

ALL_GROUPS = ("fm", "pr_matlab", "mae", "sm", "em", "wf")  # what image_statistics can compute
CENTROID_ROUNDING = ("half_even", "half_away")


# ---------------------------------------------------------------------------------------------------------------
# Input checks and preparation
# ---------------------------------------------------------------------------------------------------------------
def as_2d(x, name: str) -> Tensor:
    """A (H, W) tensor from a tensor / numpy array; a leading singleton channel (1, H, W) is squeezed."""
    t = torch.as_tensor(x)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) map, got shape {tuple(t.shape)}")
    return t


def check_pair(pred: Tensor, gt: Tensor) -> None:
    """The metrics compare pixel to pixel: the caller must resize the prediction to the GT first."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from ground-truth shape {tuple(gt.shape)}; "
            "resize the prediction to the ground-truth size first"
        )


def binarize_gt(gt: Tensor) -> Tensor:
    """Foreground mask: uint8 ``> 128`` (PySOD), bool as is, float ``> 0.5``.

    The MATLAB toolbox uses ``im2double(gt) >= 0.1`` (uint8 >= 26): for {0, 255} masks, i.e. the GTs of the
    standard benchmarks, both rules give the same mask; they differ only on soft/multi-annotator masks.
    """
    if gt.dtype == torch.bool:
        return gt
    if gt.dtype == torch.uint8:
        return torch.from_numpy(gt.numpy() > 128) if gt.device.type == "cpu" else gt > 128
    if gt.is_floating_point():
        return gt > 0.5
    raise TypeError(f"ground truth must be uint8 (0..255), bool or float (0..1), got {gt.dtype}")


def check_pred_dtype(pred: Tensor) -> None:
    if pred.dtype != torch.uint8 and not pred.is_floating_point():
        raise TypeError(f"prediction must be uint8 (0..255) or float in [0, 1], got {pred.dtype}")


def unit_scale(pred: Tensor) -> Tensor:
    """float64 map in the [0, 1] scale: uint8 / 255 (MATLAB im2double), floats as given (range checked)."""
    if pred.dtype == torch.uint8:
        return pred.to(F64) / 255
    p = pred.to(F64)
    lo, hi = torch.aminmax(p)
    if not (lo >= 0 and hi <= 1):  # also rejects NaN
        raise ValueError(f"float predictions must lie in [0, 1]; got min {lo.item()}, max {hi.item()}")
    return p


def minmax(p: Tensor) -> Tensor:
    """PySOD ``prepare_data``: (p - min) / (max - min), unless constant (a constant map keeps its value)."""
    lo, hi = torch.aminmax(p)
    return (p - lo) / (hi - lo) if hi != lo else p


def level_table(pred_u8: Tensor) -> Tensor:
    """The normalised value of each of the 256 uint8 levels of this map (same float64 ops as per pixel)."""
    lo, hi = torch.aminmax(pred_u8)
    levels = torch.arange(NUM_BINS, dtype=F64, device=pred_u8.device) / 255
    lo, hi = levels[lo.long()], levels[hi.long()]
    return (levels - lo) / (hi - lo) if hi != lo else levels


def normalize_pred(pred: Tensor) -> Tensor:
    """Prediction as float64 in [0, 1], prepared exactly as PySOD's ``prepare_data``."""
    check_pred_dtype(pred)
    if pred.dtype == torch.uint8:
        return level_table(pred)[pred.long()]
    return minmax(unit_scale(pred))


# ---------------------------------------------------------------------------------------------------------------
# Groups of prediction values
# ---------------------------------------------------------------------------------------------------------------
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

    The per-pixel passes are numpy on the (CPU) map's memory, except the one histogram (``torch.bincount``
    counts int16 codes faster than ``np.bincount``); the 256-entry tables are numpy float64 (torch's per-call
    overhead would dominate on them). ``split`` (rows, columns of the S-measure's top-left quadrant), when known
    up front, folds the quadrant histograms into the one ``bincount`` pass.
    """

    def __init__(self, pred: Tensor, gt: Tensor, split: tuple[int, int] | None = None, rounding: str | None = None):
        self.raw, self.gt = pred, gt
        self.split_rounding = rounding
        p, g = pred.numpy(), gt.numpy()
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
            counts = torch.bincount(torch.from_numpy(codes).reshape(-1), minlength=4 * 2 * NUM_BINS).numpy()
            self.quadrant_hists = counts.astype(np.float64).reshape(4, 2, NUM_BINS)
            self.joint = self.quadrant_hists.sum(0)  # exact: integer counts
        # Lowest / highest level present, from the histogram (no extra pass over the pixels).
        present = np.flatnonzero(self.joint[0] + self.joint[1])
        lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, 0)
        table = (_LEVELS - _LEVELS[lo]) / (_LEVELS[hi] - _LEVELS[lo]) if hi != lo else _LEVELS
        self.table_np = self.table = table
        self.top = hi

    @staticmethod
    def _histogram(codes: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(np.ascontiguousarray(codes)).reshape(-1)
        return torch.bincount(codes, minlength=2 * NUM_BINS).numpy().astype(np.float64).reshape(2, NUM_BINS)

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

    def __init__(self, pred: Tensor, gt: Tensor):
        self.scaled = unit_scale(pred)
        self.norm, self.gt = minmax(self.scaled), gt

    def classes(self) -> tuple[Group, Group]:
        return Group(self.norm[self.gt].numpy()), Group(self.norm[~self.gt].numpy())

    def quadrants(self, cy: int, cx: int) -> list[tuple[Group, Group]]:
        out = []
        for rows, cols in ((slice(None, cy), slice(None, cx)), (slice(None, cy), slice(cx, None)),
                           (slice(cy, None), slice(None, cx)), (slice(cy, None), slice(cx, None))):
            p, g = self.norm[rows, cols], self.gt[rows, cols]
            out.append((Group(p[g].numpy()), Group(p[~g].numpy())))
        return out

    def _split(self, bins: Tensor) -> tuple[np.ndarray, np.ndarray]:
        idx = bins.reshape(-1).long() + NUM_BINS * self.gt.reshape(-1).long()
        h = np.bincount(idx.numpy(), minlength=2 * NUM_BINS).astype(np.float64).reshape(2, NUM_BINS)
        return h[1], h[0]

    def quantised_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        return self._split((self.norm * 255).to(torch.uint8))

    def matlab_histograms(self) -> tuple[np.ndarray, np.ndarray] | None:
        s = self.scaled.clamp_min(0)
        top = s.max()
        return None if top == 0 else self._split(matlab_bins(s / top))

    def error_map(self) -> np.ndarray:
        return (self.norm - self.gt.to(F64)).abs().cpu().numpy()


def pixels_of(pred: Tensor, gt: Tensor, split: tuple[int, int] | None = None, rounding: str | None = None):
    """Pixels of a CPU (pred, boolean gt) pair; ``split``: the S-measure quadrants (``centroid_split`` with
    ``rounding``), when known in advance (uint8 maps)."""
    return _LevelPixels(pred, gt, split, rounding) if pred.dtype == torch.uint8 else _FloatPixels(pred, gt)


# ---------------------------------------------------------------------------------------------------------------
# Threshold curves: F-measure, E-measure (PySOD) and the MATLAB PR curve
# ---------------------------------------------------------------------------------------------------------------
def descending_cumsum(hist):
    """Counts of ``value >= t`` for t = 255, 254, ..., 0 (entry i is threshold 255 - i)."""
    if isinstance(hist, Tensor):
        return torch.cumsum(torch.flip(hist, dims=(0,)), dim=0)
    return np.cumsum(hist[::-1])


def _numpy_in_torch_out(fn):
    """Run a curve function on numpy float64 arrays; torch inputs give torch (CPU, float64) outputs."""

    def wrapper(*args, **kwargs):
        was_torch = any(isinstance(a, Tensor) for a in args)
        args = [a.detach().cpu().numpy().astype(np.float64) if isinstance(a, Tensor) else a for a in args]
        out = fn(*args, **kwargs)
        return tuple(torch.from_numpy(o) for o in out) if was_torch else out

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapper


@_numpy_in_torch_out
def fmeasure_curves(tp, fp, n_fg: int, beta2: float = 0.3):
    """PySOD ``Fmeasure.cal_pr``: precision, recall and F_beta per threshold.

    Precision where nothing is predicted is TP / 1 = 0 (PySOD sets Ps[Ps == 0] = 1); recall of an empty GT is
    TP / 1 = 0; F is 0 where its numerator is 0.
    """
    n_pos = tp + fp
    precision = tp / np.where(n_pos == 0, 1.0, n_pos)
    recall = tp / max(n_fg, 1)
    num = (1 + beta2) * precision * recall
    den = np.where(num == 0, 1.0, beta2 * precision + recall)
    return precision, recall, num / den


def adaptive_fmeasure(tp: float, n_pos: float, n_fg: float, beta2: float = 0.3) -> float:
    """F_beta of the adaptively binarised map; 0 when it hits no foreground pixel (PySOD and MATLAB)."""
    if tp == 0:
        return 0.0
    pre, rec = tp / n_pos, tp / n_fg
    return (1 + beta2) * pre * rec / (beta2 * pre + rec)


def emeasure_from_counts(fg_fg, fg_bg, n_fg: float, n: float):
    """E-measure (Fan et al., IJCAI 2018) of a binarised map from its counts, as PySOD's cumsum-histogram form.

    ``fg_fg`` / ``fg_bg``: predicted-foreground pixels on GT foreground / background (python numbers or tensors,
    one entry per threshold). A binary map and a binary GT take 2 values each, so the enhanced-alignment matrix
    has at most 4 distinct entries: its sum is each entry times its pixel count, divided by (N - 1 + eps).
    """
    pred_fg = fg_fg + fg_bg
    pred_bg = n - pred_fg
    if n_fg == 0:  # all-background GT: the matrix is 1 where the prediction is background
        total = pred_bg
    elif n_fg == n:  # all-foreground GT
        total = pred_fg
    else:
        bg_fg = n_fg - fg_fg
        bg_bg = pred_bg - bg_fg
        mean_pred, mean_gt = pred_fg / n, n_fg / n
        p_fg, p_bg = 1 - mean_pred, 0 - mean_pred  # demeaned prediction values
        g_fg, g_bg = 1 - mean_gt, 0 - mean_gt  # demeaned GT values

        def part(a, b, count):
            align = 2 * (a * b) / (a * a + b * b + EPS)
            return (align + 1) * (align + 1) / 4 * count

        total = part(p_fg, g_fg, fg_fg) + part(p_fg, g_bg, fg_bg) + part(p_bg, g_fg, bg_fg) + part(p_bg, g_bg, bg_bg)
    return total / (n - 1 + EPS)


def matlab_bins(s: Tensor) -> Tensor:
    """Index j of the MATLAB threshold bin ``t_j <= s < t_{j+1}``, t_j = j / 255 (s in [0, 1]).

    performCalcu.m builds ``thresholds = [255:-1:0]/255`` and counts ``s >= t`` with ``histc`` and a flipped
    cumsum: float64 comparisons with the exact same threshold values, found here by ``bucketize`` (no rounding).
    """
    thresholds = torch.arange(NUM_BINS, dtype=F64, device=s.device) / 255
    return torch.bucketize(s, thresholds, right=True) - 1


_THRESHOLDS = np.arange(NUM_BINS, dtype=np.float64) / 255


def _matlab_bins_np(s: np.ndarray) -> np.ndarray:
    """:func:`matlab_bins` in numpy (``searchsorted`` right == ``bucketize`` right: same comparisons)."""
    return np.searchsorted(_THRESHOLDS, s, side="right") - 1


@_numpy_in_torch_out
def matlab_pr_curve(fg_hist, bg_hist, n_fg: float):
    """Per-image precision (NaN -> 0, as performCalcu.m) and recall at thresholds (255 - i) / 255.

    An empty GT gets recall 0 here; MATLAB divides by zero and its averaged recall curve becomes NaN.
    """
    tp, fp = descending_cumsum(fg_hist), descending_cumsum(bg_hist)
    n_pos = tp + fp
    precision = np.where(n_pos > 0, tp / np.maximum(n_pos, 1), 0.0)
    recall = tp / n_fg if n_fg > 0 else np.zeros_like(tp)
    return precision, recall


def f_of_averages(precision: Tensor, recall: Tensor, beta2: float = 0.3) -> Tensor:
    """F_beta of averaged precision and recall (MATLAB Fmeasure_Curve); 0 where both are 0 (MATLAB's NaN)."""
    num = (1 + beta2) * precision * recall
    den = beta2 * precision + recall
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


# ---------------------------------------------------------------------------------------------------------------
# S-measure
# ---------------------------------------------------------------------------------------------------------------
def round_half(value: float, rounding: str) -> int:
    """numpy's round (half to even; PySOD) or MATLAB's round (half away from zero) of a value >= 0."""
    if rounding == "half_even":
        return round(value)
    whole = math.floor(value)
    return whole + (1 if value - whole >= 0.5 else 0)


def centroid_split(gt: Tensor, rounding: str = "half_even") -> tuple[int, int]:
    """(rows, columns) of the top-left quadrant: the rounded 1-based centroid of the GT foreground.

    PySOD rounds the 0-based mean with numpy (half to even) and adds 1; MATLAB's S_region.m rounds the 1-based
    mean half away from zero. They differ only when a mean is exactly k + 0.5 with k even: no image of the
    reference sets (sod300, the PySOD pairs, the S-measure demo) has such a centroid, so either convention
    reproduces both references; ``half_even`` (PySOD) is the default, ``half_away`` gives MATLAB's split.
    """
    g = gt.detach().cpu().numpy()
    n_fg = int(np.count_nonzero(g))
    if n_fg == 0:
        return round_half(gt.shape[0] / 2, rounding), round_half(gt.shape[1] / 2, rounding)
    # Exact integer sums (per-row / per-column counts dotted with the indices) and one correctly rounded
    # division: the float numpy's argwhere(gt).mean() gives.
    # Row / column counts are summed in float32 (faster than an int64 reduction of uint8): exact below 2**24.
    u = g.view(np.uint8)
    if max(g.shape) < 1 << 24:
        f = u.astype(np.float32)
        rows, cols = f.sum(axis=1).astype(np.int64), f.sum(axis=0).astype(np.int64)
    else:
        rows, cols = u.sum(axis=1, dtype=np.int64), u.sum(axis=0, dtype=np.int64)
    mean_y = int(rows @ np.arange(g.shape[0], dtype=np.int64)) / n_fg
    mean_x = int(cols @ np.arange(g.shape[1], dtype=np.int64)) / n_fg
    if rounding == "half_even":
        return round_half(mean_y, rounding) + 1, round_half(mean_x, rounding) + 1
    return round_half(mean_y + 1, rounding), round_half(mean_x + 1, rounding)


def object_similarity(group: Group) -> float:
    """S_object of one region: 2 x / (x^2 + 1 + std + eps), std with N - 1 (MATLAB std; 0 for one pixel)."""
    n = group.n()
    if n == 0:
        return 0.0
    x = group.mean()
    std = math.sqrt(group.sum_sq_dev(x) / (n - 1)) if n > 1 else 0.0
    return 2 * x / (x * x + 1 + std + EPS)


def region_similarity(fg: Group, bg: Group) -> float:
    """The S-measure's ``ssim`` of one quadrant (a global SSIM of prediction and GT), PySOD / MATLAB."""
    n1, n0 = fg.n(), bg.n()
    n = n0 + n1
    if n == 0:  # a quadrant of zero width or height has weight 0 (MATLAB/PySOD would compute 0 * NaN)
        return 0.0
    both = fg.union(bg)
    x, y = both.mean(), n1 / n
    denom = n - 1 + EPS
    sigma_x = both.sum_sq_dev(x) / denom
    sigma_y = (n1 * (1 - y) * (1 - y) + n0 * y * y) / denom  # the GT is 1 on fg, 0 on bg
    sigma_xy = ((1 - y) * fg.sum_dev(x) - y * bg.sum_dev(x)) / denom
    alpha = 4 * x * y * sigma_xy
    beta = (x * x + y * y) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def s_measure_from_pixels(px, alpha: float = 0.5, centroid_rounding: str = "half_even") -> float:
    """Structure measure (Fan et al., ICCV 2017): alpha * S_object + (1 - alpha) * S_region, clipped at 0.

    Empty GT: 1 - mean(pred); full GT: mean(pred) (PySOD and MATLAB alike).
    """
    fg, bg = px.classes()
    n1, n0 = fg.n(), bg.n()
    n = n0 + n1
    if n1 == 0 or n0 == 0:
        mean = fg.union(bg).mean()
        return 1 - mean if n1 == 0 else mean
    u = n1 / n
    obj = object_similarity(fg) * u + object_similarity(bg.complement()) * (1 - u)

    h, w = px.gt.shape
    split = getattr(px, "split", None)
    if split is None or getattr(px, "split_rounding", None) != centroid_rounding:
        split = centroid_split(px.gt, centroid_rounding)
    cy, cx = split
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    weights = (w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb)
    region = sum(region_similarity(f, b) * wq for (f, b), wq in zip(px.quadrants(cy, cx), weights))
    return max(0.0, alpha * obj + (1 - alpha) * region)


def s_measure(pred, gt, alpha: float = 0.5, centroid_rounding: str = "half_even") -> float:
    """S-measure of one (pred, gt) pair (inputs as described in the module docstring)."""
    pred, gt = _prepare_pair(pred, gt)
    return s_measure_from_pixels(pixels_of(pred, gt), alpha, centroid_rounding)


# ---------------------------------------------------------------------------------------------------------------
# Weighted F-measure (numpy / scipy: exact EDT with nearest-feature indices)
# ---------------------------------------------------------------------------------------------------------------
def matlab_gauss_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', [size size], sigma)``.

    The 2-D kernel exp(-(x^2 + y^2) / 2 sigma^2) / sum is the outer product of this normalised 1-D kernel
    (fspecial's "zero below eps * max" rule removes nothing at 7x7, sigma 5): a separable filter is the same
    filter up to rounding.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


_GAUSS_7 = matlab_gauss_1d()
_LOG_HALF_OVER_5 = math.log(0.5) / 5


def weighted_fmeasure_from_error(err: np.ndarray, gt: np.ndarray, beta: float = 1.0) -> float:
    """Weighted F-measure (Margolin et al., CVPR 2014; WFb.m / PySOD ``WeightedFmeasure``), 0 for an empty GT.

    ``err`` = |pred - gt| (float64), ``gt`` bool. Background errors are replaced by the error of the nearest
    foreground pixel (EDT indices) before a 7x7 Gaussian (sigma 5, zero border) smooths them; on the foreground
    the smaller of smoothed and raw error counts; every error is weighted by 2 - 0.5^(d / 5), d the distance to
    the foreground (weight 1 on it).
    """
    if not gt.any():
        return 0.0
    h, w = gt.shape
    nearest = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)
    # Only foreground pixels use the smoothed error, and their 7x7 windows lie in the foreground's bounding box
    # grown by 3 px: gather and smooth that crop only. Zero padding at the crop edge is then either outside
    # every window used or the image border itself, so the foreground values are exactly the full-image ones.
    rows, cols = np.flatnonzero(gt.any(1)), np.flatnonzero(gt.any(0))
    r0, r1 = max(rows[0] - 3, 0), min(rows[-1] + 4, h)
    c0, c1 = max(cols[0] - 3, 0), min(cols[-1] + 4, w)
    crop = (slice(r0, r1), slice(c0, c1))
    flat = nearest[0][crop] * w + nearest[1][crop]
    err_t = err.ravel()[flat]  # error of the nearest foreground pixel (a foreground pixel's is its own)
    smooth = ndimage.correlate1d(err_t, _GAUSS_7, axis=0, mode="constant", cval=0.0)
    smooth = ndimage.correlate1d(smooth, _GAUSS_7, axis=1, mode="constant", cval=0.0)
    fg_crop = gt[crop]
    # Foreground: min(smoothed, raw) (== where(gt & (EA < E), EA, E)), weight 1. Masked sums via where=: no
    # boolean-index copies.
    np.minimum(smooth, err[crop], out=smooth)
    fg_sum = smooth.sum(where=fg_crop)
    # Background: raw error times 2 - 0.5^(d / 5), d from the EDT indices (int32, in place: exact squares).
    nearest[0] -= np.arange(h, dtype=np.int32)[:, None]
    nearest[1] -= np.arange(w, dtype=np.int32)[None, :]
    nearest *= nearest
    weight = np.sqrt(nearest[0] + nearest[1], dtype=np.float64)
    weight *= _LOG_HALF_OVER_5
    np.exp(weight, out=weight)
    np.subtract(2.0, weight, out=weight)
    weight *= err
    fp_w = weight.sum(where=~gt)
    n_fg = int(np.count_nonzero(gt))
    tp_w = n_fg - fg_sum
    recall = 1 - fg_sum / n_fg
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def weighted_fmeasure(pred, gt, beta: float = 1.0) -> float:
    """Weighted F-measure of one (pred, gt) pair."""
    pred, gt = _prepare_pair(pred, gt)
    px = pixels_of(pred, gt)
    return weighted_fmeasure_from_error(px.error_map(), gt.cpu().numpy(), beta)


# ---------------------------------------------------------------------------------------------------------------
# Everything for one image
# ---------------------------------------------------------------------------------------------------------------
def _prepare_pair(pred, gt) -> tuple[Tensor, Tensor]:
    """(pred, boolean GT) on the CPU (see the module docstring for why), shapes and dtypes checked."""
    pred, gt = as_2d(pred, "prediction"), as_2d(gt, "ground truth")
    check_pair(pred, gt)
    check_pred_dtype(pred)
    return pred.detach().cpu(), binarize_gt(gt.detach().cpu())


def image_statistics(
    pred,
    gt,
    groups: Iterable[str] = ALL_GROUPS,
    *,
    beta2: float = 0.3,
    alpha: float = 0.5,
    wf_beta: float = 1.0,
    centroid_rounding: str = "half_even",
) -> dict[str, Tensor]:
    """Per-image statistics that the metric states sum, as float64 CPU tensors.

    Groups and keys:
      fm        -> precision, recall, fmeasure (256 each, PySOD curves), adp_f
      em        -> emeasure (256), adp_em
      pr_matlab -> pr_precision, pr_recall (256 each; zeros for an all-zero map), pr_valid (0 or 1)
      mae       -> mae;   sm -> sm;   wf -> wf
    """
    groups = set(groups)
    if groups - set(ALL_GROUPS):
        raise ValueError(f"unknown statistic groups {sorted(groups - set(ALL_GROUPS))}; choose from {ALL_GROUPS}")
    if centroid_rounding not in CENTROID_ROUNDING:
        raise ValueError(f"centroid_rounding must be one of {CENTROID_ROUNDING}, got {centroid_rounding!r}")
    pred, gt = _prepare_pair(pred, gt)
    device = pred.device
    split = centroid_split(gt, centroid_rounding) if "sm" in groups and pred.dtype == torch.uint8 else None
    px = pixels_of(pred, gt, split, centroid_rounding)
    fg, bg = px.classes()
    n_fg, n = fg.n(), float(gt.numel())
    out: dict[str, Tensor] = {}

    def scalar(v: float) -> Tensor:  # CPU (see _prepare_pair); from_numpy costs a fraction of torch.tensor
        return torch.from_numpy(np.array(float(v), dtype=np.float64))

    def curve(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    if groups & {"fm", "em"}:
        tp, fp = (descending_cumsum(h) for h in px.quantised_histograms())
        threshold = min(2 * (fg.total() + bg.total()) / n, 1.0)  # PySOD get_adaptive_threshold
        a_tp = fg.count_ge(threshold)
        a_pos = a_tp + bg.count_ge(threshold)
        if "fm" in groups:
            curves = fmeasure_curves.__wrapped__(tp, fp, int(n_fg), beta2)
            out["precision"], out["recall"], out["fmeasure"] = (curve(c) for c in curves)
            out["adp_f"] = scalar(adaptive_fmeasure(a_tp, a_pos, n_fg, beta2))
        if "em" in groups:
            out["emeasure"] = curve(emeasure_from_counts(tp, fp, n_fg, n))
            out["adp_em"] = scalar(emeasure_from_counts(a_tp, a_pos - a_tp, n_fg, n))
    if "pr_matlab" in groups:
        hists = px.matlab_histograms()
        if hists is None:  # all-zero map: left out of the MATLAB curve averages
            zeros = torch.zeros(NUM_BINS, dtype=F64, device=device)
            out["pr_precision"], out["pr_recall"], out["pr_valid"] = zeros, zeros.clone(), scalar(0)
        else:
            out["pr_precision"], out["pr_recall"] = (curve(c) for c in matlab_pr_curve.__wrapped__(*hists, n_fg))
            out["pr_valid"] = scalar(1)
    if "mae" in groups:
        out["mae"] = scalar(((n_fg - fg.total()) + bg.total()) / n)  # |1 - v| on fg, |v| on bg
    if "sm" in groups:
        out["sm"] = scalar(s_measure_from_pixels(px, alpha, centroid_rounding))
    if "wf" in groups:
        out["wf"] = scalar(weighted_fmeasure_from_error(px.error_map(), gt.cpu().numpy(), wf_beta))
    return out
