"""Weighted F-measure (Margolin et al., "How to evaluate foreground maps?", CVPR 2014), as the authors' ``WFb.m``
and PySODMetrics 1.6.x ``WeightedFmeasure``, in numpy and OpenCV (scipy where OpenCV cannot be exact); see
:mod:`.pixels` for why this runs on the CPU.

The measure needs, from a Euclidean distance transform of the background: (a) the distance d of every background
pixel that has an error (its weight 2 - 0.5^(d/5)); (b) for background pixels within 3 px of the foreground, the
error of their nearest foreground pixel (the 7x7 smoothing reads it). WFb.m and PySOD take both from one feature
transform (``bwdist`` / ``scipy.ndimage.distance_transform_edt(..., return_indices=True)``). Here (a) comes from
OpenCV's exact transform (~2.5x faster than scipy's on SOD maps) and (b) from a search of the few offsets within
sqrt(18) px, in the order scipy breaks ties in, so the values are scipy's exactly (the 7x7 filter, OpenCV's too,
sums in another order: ~1e-16). Without OpenCV, or for images too large for its float32 output to be exact,
scipy's feature transform gives both, as WFb.m's port does.
"""

from __future__ import annotations

import math

import numpy as np

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
_HALF = 3  # the 7x7 window's half width
_LOG_HALF_OVER_5 = math.log(0.5) / 5
# A pixel within 3 px (Chebyshev) of the foreground is within sqrt(18) (Euclidean) of it: its nearest foreground
# pixel is at one of these offsets. They are ordered by squared length, then column, then row: scipy's feature
# transform (Maurer et al., PAMI 2003) keeps, among equidistant foreground pixels, the one with the smallest
# column, then the smallest row (its row pass keeps the first of equal parabolas, its column pass the upper of two
# equal candidates; tests/test_metrics_wf_fast.py checks this against scipy). So for a pixel at squared distance
# L, the first offset of length L in this order that lands on the foreground is the pixel scipy finds.
_BAND_D2 = 2 * _HALF * _HALF
_REACH = math.isqrt(_BAND_D2)  # 4: the largest offset component
_OFFSETS: dict[int, list[tuple[int, int]]] = {}  # squared length -> offsets, by column then row
for _dy, _dx in sorted(((dy, dx) for dy in range(-_REACH, _REACH + 1) for dx in range(-_REACH, _REACH + 1)),
                       key=lambda o: (o[1], o[0])):
    if 0 < _dy * _dy + _dx * _dx <= _BAND_D2:
        _OFFSETS.setdefault(_dy * _dy + _dx * _dx, []).append((_dy, _dx))
# The same as a table indexed by squared length: row L lists the offsets of length L in order, the last repeated
# to a common width (a pixel at squared distance L has a foreground pixel at one of them, so the first hit comes
# before any repeat). Rows of lengths no grid offset has are never read.
_WIDTH = max(len(v) for v in _OFFSETS.values())
_DY, _DX = (np.zeros((_BAND_D2 + 1, _WIDTH), np.intp) for _ in range(2))
for _length, _offsets in _OFFSETS.items():
    _padded = _offsets + _offsets[-1:] * (_WIDTH - len(_offsets))
    _DY[_length], _DX[_length] = zip(*_padded)

# OpenCV's distances are float32: squaring and rounding recovers the exact integer d^2 while d^2 < 2^21 (the
# float32 square's relative error is below 3 * 2^-24, under 0.4 there). Larger images use scipy.
_OPENCV_MAX_D2 = 2**21
_BAND_LIMIT = np.float32((math.sqrt(_BAND_D2) + math.sqrt(_BAND_D2 + 1)) / 2)
_cv2 = None  # the module once imported; False when not installed
use_opencv = True  # tests set this to False to check the scipy path gives the same values


def _opencv():
    """cv2 with its thread pool switched off, or None. Threads off (setNumThreads(0): every call runs in the
    calling thread) is what makes it safe in forked workers: a fork copies no half-used pool. Imported on first
    use only, so `salseg eval` and training pay nothing until a weighted F is computed."""
    global _cv2
    if _cv2 is None:
        try:
            import cv2
        except ImportError:
            _cv2 = False
        else:
            cv2.setNumThreads(0)
            _cv2 = cv2
    return _cv2 or None


def distances(gt: np.ndarray) -> np.ndarray | None:
    """Distance (float32) of every pixel to the nearest foreground pixel of ``gt`` by OpenCV's exact transform
    (``DIST_MASK_PRECISE``: Felzenszwalb-Huttenlocher on integer squared distances), or None (no OpenCV, switched
    off, or an image too large for :func:`exact_squares` to hold)."""
    h, w = gt.shape
    cv2 = _opencv() if use_opencv else None
    if cv2 is None or h * h + w * w >= _OPENCV_MAX_D2:
        return None
    return cv2.distanceTransform((~gt).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def exact_squares(d: np.ndarray) -> np.ndarray:
    """The exact integer d^2 (float64) behind float32 distances ``d`` (see _OPENCV_MAX_D2)."""
    d2 = d.astype(np.float64)
    np.multiply(d2, d2, out=d2)
    return np.rint(d2, out=d2)


def _padded_window(a: np.ndarray, rows: slice, cols: slice, pad: int) -> np.ndarray:
    """``a[rows, cols]`` grown by ``pad`` on each side, zero (False) where that leaves the image."""
    out = np.zeros((rows.stop - rows.start + 2 * pad, cols.stop - cols.start + 2 * pad), dtype=a.dtype)
    r0, c0 = rows.start - pad, cols.start - pad
    src = a[max(r0, 0):rows.stop + pad, max(c0, 0):cols.stop + pad]
    out[max(-r0, 0):max(-r0, 0) + src.shape[0], max(-c0, 0):max(-c0, 0) + src.shape[1]] = src
    return out


def _nearest_error_in_band(err: np.ndarray, gt: np.ndarray, dist: np.ndarray, crop: tuple[slice, slice]) -> np.ndarray:
    """On ``crop``: the error of each pixel's nearest foreground pixel (a foreground pixel's own) for every pixel
    within sqrt(18) of the foreground, 0 farther away (outside every 7x7 window around a foreground pixel)."""
    out = np.where(gt[crop], err[crop], 0.0)
    rows, cols = crop
    d_c = dist[crop]
    # in reach: 0 < d <= sqrt(18); the next distance a pixel grid has is sqrt(19) = 4.36
    band = np.flatnonzero((d_c > 0) & (d_c < _BAND_LIMIT))  # as flat indices of the crop
    length = exact_squares(d_c.ravel()[band]).astype(np.intp)
    cw = out.shape[1]
    y, x = band // cw + rows.start, band % cw + cols.start  # image coordinates
    gt_w = _padded_window(gt, rows, cols, _REACH)  # so that every offset stays inside (False outside the image)
    width, w = gt_w.shape[1], gt.shape[1]
    at_w = (y - rows.start + _REACH) * width + (x - cols.start + _REACH)
    dy, dx = _DY[length], _DX[length]  # (pixels, _WIDTH): each pixel's candidate offsets, in tie order
    first = gt_w.ravel()[at_w[:, None] + (dy * width + dx)].argmax(axis=1)  # the first candidate on the fg
    pick = np.arange(band.size)
    out.reshape(-1)[band] = err.ravel()[(y + dy[pick, first]) * w + (x + dx[pick, first])]
    return out


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
    # Only foreground pixels use the smoothed error, and their 7x7 windows lie in the foreground's bounding box
    # grown by 3 px: gather and smooth that crop only. Zero padding at the crop edge is then either outside
    # every window used or the image border itself, so the foreground values are exactly the full-image ones.
    rows, cols = np.flatnonzero(gt.any(1)), np.flatnonzero(gt.any(0))
    crop = (slice(max(rows[0] - _HALF, 0), min(rows[-1] + _HALF + 1, h)),
            slice(max(cols[0] - _HALF, 0), min(cols[-1] + _HALF + 1, w)))
    dist = distances(gt)
    if dist is None:
        from scipy import ndimage  # imported here: 0.3 s that `salseg eval` saves when OpenCV does the work

        nearest = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)
        err_t = err.ravel()[nearest[0][crop] * w + nearest[1][crop]]  # a foreground pixel's nearest is itself
        smooth = ndimage.correlate1d(err_t, _GAUSS_7, axis=0, mode="constant", cval=0.0)
        smooth = ndimage.correlate1d(smooth, _GAUSS_7, axis=1, mode="constant", cval=0.0)
    else:
        err_t = _nearest_error_in_band(err, gt, dist, crop)
        # the same separable correlation, zero border, ~5x faster than scipy's (sums in another order: ~1e-16)
        smooth = _cv2.sepFilter2D(err_t, _cv2.CV_64F, _GAUSS_7, _GAUSS_7, borderType=_cv2.BORDER_CONSTANT)
    # Foreground: min(smoothed, raw) (== where(gt & (EA < E), EA, E)), weight 1. Masked sums via where=: no
    # boolean-index copies.
    np.minimum(smooth, err[crop], out=smooth)
    fg_sum = smooth.sum(where=gt[crop])
    # Background: raw error times 2 - 0.5^(d / 5), d = sqrt of the exact integer d^2. Only background pixels with
    # a non-zero error add to the sum: the weight is computed there only (a saliency map is exactly 0 on much of
    # its background; on SOD-300 / Amulet ~80% of the pixels drop out).
    where = np.flatnonzero((err != 0) & ~gt)
    if dist is None:
        dy = nearest[0].ravel()[where] - where // w
        dx = nearest[1].ravel()[where] - where % w
        weight = np.sqrt((dy * dy + dx * dx).astype(np.float64))
    else:
        weight = np.sqrt(exact_squares(dist.ravel()[where]))
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
