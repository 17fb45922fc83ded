"""S-measure: structure similarity of a saliency map and its GT (Fan et al., "Structure-measure: a new way to
evaluate foreground maps", ICCV 2017): alpha * S_object + (1 - alpha) * S_region, as PySODMetrics 1.6.x
``Smeasure`` and the authors' MATLAB code (``S_region.m`` for the quadrants). The groups of prediction values it
reads (whole classes and the four quadrants around the GT centroid) come from :mod:`.pixels`.
"""

from __future__ import annotations

import math

import numpy as np

from salseg.metrics.functional.inputs import EPS, prepare_pair, to_numpy
from salseg.metrics.functional.pixels import Group, pixels_of


def round_half(value: float, rounding: str) -> int:
    """numpy's round (half to even; PySOD) or MATLAB's round (half away from zero) of a value >= 0."""
    if rounding == "half_even":
        return round(value)
    whole = math.floor(value)
    return whole + (1 if value - whole >= 0.5 else 0)


def centroid_split(gt, rounding: str = "half_even") -> tuple[int, int]:
    """(rows, columns) of the top-left quadrant: the rounded 1-based centroid of the GT foreground.

    PySOD rounds the 0-based mean with numpy (half to even) and adds 1; MATLAB's S_region.m rounds the 1-based
    mean half away from zero. They differ only when a mean is exactly k + 0.5 with k even: no image of the
    reference sets (sod300, the PySOD pairs, the S-measure demo) has such a centroid, so either convention
    reproduces both references; ``half_even`` (PySOD) is the default, ``half_away`` gives MATLAB's split.
    """
    g = to_numpy(gt)
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
    """S-measure of one (pred, gt) pair (inputs as described in :mod:`.inputs`)."""
    pred, gt = prepare_pair(pred, gt)
    return s_measure_from_pixels(pixels_of(pred, gt), alpha, centroid_rounding)
