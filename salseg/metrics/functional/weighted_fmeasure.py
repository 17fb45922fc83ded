"""Weighted F-measure (Margolin et al., "How to evaluate foreground maps?", CVPR 2014), as the authors' ``WFb.m``
and PySODMetrics 1.6.x ``WeightedFmeasure``. numpy / scipy: an exact Euclidean distance transform with
nearest-feature indices (see :mod:`.pixels` for why this runs on the CPU).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from salseg.metrics.functional.inputs import EPS, prepare_pair
from salseg.metrics.functional.pixels import pixels_of


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
    # Background: raw error times 2 - 0.5^(d / 5), d from the EDT indices (exact integer squares). Only
    # background pixels with a non-zero error add to the sum: the distance and weight are computed there only
    # (a saliency map is exactly 0 on much of its background; on SOD-300 / Amulet ~80% of the pixels drop out).
    where = np.flatnonzero((err != 0) & ~gt)
    dy = nearest[0].ravel()[where] - where // w
    dx = nearest[1].ravel()[where] - where % w
    weight = np.sqrt((dy * dy + dx * dx).astype(np.float64))
    weight *= _LOG_HALF_OVER_5
    np.exp(weight, out=weight)
    np.subtract(2.0, weight, out=weight)
    weight *= err.ravel()[where]
    fp_w = weight.sum()
    n_fg = int(np.count_nonzero(gt))
    tp_w = n_fg - fg_sum
    recall = 1 - fg_sum / n_fg
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def weighted_fmeasure(pred, gt, beta: float = 1.0) -> float:
    """Weighted F-measure of one (pred, gt) pair."""
    pred, gt = prepare_pair(pred, gt)
    px = pixels_of(pred, gt)
    return weighted_fmeasure_from_error(px.error_map(), gt, beta)
