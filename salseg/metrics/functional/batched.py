"""The SOD pixel engine of :mod:`.pixels` as batched torch code: B maps of one size, on any device.

:func:`batch_statistics` gives, for a (B, H, W) batch, the same per-image statistics as
:func:`.image_stats.image_statistics` (keys and meaning there), to ~1e-15 (sums run in another order), with no
per-image Python loop and no host round trip: every step is a tensor operation over the whole batch, so on a GPU
the evaluation callback scores a test batch where its maps already are (:class:`salseg.metrics.SODMetrics`,
``engine="auto"``). The numpy path stays the reference and the CPU default: there a map costs a few hundred
operations on 256-entry tables, cheaper than this path's per-pixel float64 passes.

What each step reproduces:
- preparation: uint8 levels through the map's own 256-entry level table (:func:`.inputs.level_table`, the same
  float64 operations), float maps min-max normalised (:func:`.inputs.minmax`) per image;
- F / E curves: one ``bincount`` of (image, gt, ``uint8(floor(255 v))``) codes, reversed cumulative sums
  (:func:`.pixels.descending_cumsum`); MATLAB PR bins by ``bucketize`` as :func:`.pixels.matlab_bins`;
- S-measure (Fan et al., ICCV 2017, Sec. 3): per-image GT centroid split (exact integer sums, as
  :func:`.smeasure.centroid_split`), sums / extremes / squared deviations per (image, quadrant, class) segment by
  ``scatter_reduce_``, a region's mean taken exactly when it is constant (as :class:`.pixels.Group`);
- weighted F (Margolin et al., CVPR 2014, Sec. 4, Eq. 5-8): the distances of an exact Euclidean distance transform
  (a column pass, then a row pass grown column by column until no farther column can be nearer) and, for the
  pixels inside the 7x7 windows of the foreground (closer than sqrt(18) to it), the nearest foreground pixel with
  scipy's choice among equally near ones: ``distance_transform_edt`` runs along axis 0 first (the nearest
  foreground pixel of the column, the upper one on a tie), then along axis 1, where its lower envelope keeps every
  minimiser and its scan stops at the first, i.e. the smallest column; an ``argmin`` over the 9 columns within
  4 px, in ascending order, makes the same choice. The tests check it against scipy on speckled masks (many ties).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from salseg.metrics.functional.inputs import EPS, NUM_BINS
from salseg.metrics.functional.weighted_fmeasure import matlab_gauss_1d

F64 = torch.float64
_BIG = 1 << 30  # "no foreground in this column" in the int32 distance tables (BIG + H^2 + W^2 < 2^31)
_FAR = 270  # the row pass's largest column offset (see _row_distances)


def batch_statistics(pred: Tensor, gt: Tensor, groups=("fm", "pr_matlab", "mae", "sm", "em", "wf"), *,
                     beta2: float = 0.3, alpha: float = 0.5, wf_beta: float = 1.0,
                     centroid_rounding: str = "half_even") -> dict[str, Tensor]:
    """Per-image statistics of a (B, H, W) batch, each entry (B, ...) float64 on the maps' device."""
    if pred.ndim == 4 and pred.shape[1] == 1:
        pred, gt = pred[:, 0], gt[:, 0] if gt.ndim == 4 else gt
    if pred.ndim != 3 or tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"batch_statistics needs (B, H, W) maps and GTs of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(gt.shape)}")
    if pred.dtype != torch.uint8 and not pred.is_floating_point():
        raise TypeError(f"prediction must be uint8 (0..255) or float in [0, 1], got {pred.dtype}")
    pred, gt = pred.detach(), _binarize_gt(gt.detach().to(pred.device))
    groups = set(groups)
    b, h, w = pred.shape
    n = float(h * w)
    scaled, norm = _prepare(pred)
    gtf = gt.to(F64)
    n_fg = gtf.sum((1, 2))
    out: dict[str, Tensor] = {}
    if groups & {"fm", "em"}:
        q = (norm * 255).to(torch.uint8)  # truncation, as PySOD
        fg_hist, bg_hist = _class_histograms(q.long(), gt)
        tp, fp = _descending_cumsum(fg_hist), _descending_cumsum(bg_hist)
        threshold = torch.clamp(2 * norm.sum((1, 2)) / n, max=1.0)  # PySOD get_adaptive_threshold
        hit = norm >= threshold[:, None, None]
        a_tp = (hit & gt).sum((1, 2)).to(F64)
        a_pos = hit.sum((1, 2)).to(F64)
        if "fm" in groups:
            out["precision"], out["recall"], out["fmeasure"] = _fmeasure_curves(tp, fp, n_fg[:, None], beta2)
            out["adp_f"] = _adaptive_fmeasure(a_tp, a_pos, n_fg, beta2)
        if "em" in groups:
            out["emeasure"] = _emeasure(tp, fp, n_fg[:, None], n)
            out["adp_em"] = _emeasure(a_tp, a_pos - a_tp, n_fg, n)
    if "pr_matlab" in groups:
        out.update(_matlab_pr(scaled, gt, n_fg))
    if "mae" in groups:
        out["mae"] = (norm - gtf).abs().sum((1, 2)) / n
    if "sm" in groups:
        out["sm"] = _s_measure(norm, gt, alpha, centroid_rounding)
    if "wf" in groups:
        out["wf"] = _weighted_fmeasure(norm, gt, wf_beta)
    return out


def split_images(stats: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """The per-image dicts the metric states add up (:class:`salseg.metrics.sod.StatsBatch`)."""
    columns = {k: v.unbind(0) for k, v in stats.items()}
    count = len(next(iter(columns.values()))) if columns else 0
    return [{k: v[i] for k, v in columns.items()} for i in range(count)]


# --- preparation and histograms ---------------------------------------------------------------------------------
def _binarize_gt(gt: Tensor) -> Tensor:
    """Foreground mask as :func:`.inputs.binarize_gt`: uint8 ``> 128``, bool as is, float ``> 0.5``."""
    if gt.dtype == torch.bool:
        return gt
    if gt.dtype == torch.uint8:
        return gt > 128
    if gt.is_floating_point():
        return gt > 0.5
    raise TypeError(f"ground truth must be uint8 (0..255), bool or float (0..1), got {gt.dtype}")


def _prepare(pred: Tensor) -> tuple[Tensor, Tensor]:
    """(map in the [0, 1] scale, PySOD-prepared map), float64, as :func:`.inputs.unit_scale` / ``minmax``."""
    if pred.dtype == torch.uint8:
        levels = torch.arange(NUM_BINS, dtype=F64, device=pred.device) / 255
        idx = pred.flatten(1).long()
        lo, hi = levels[idx.amin(1)], levels[idx.amax(1)]
        same = (hi == lo)[:, None]
        table = torch.where(same, levels, (levels - lo[:, None]) / torch.where(same, 1.0, (hi - lo)[:, None]))
        scaled = levels[pred.long()]
        return scaled, table.gather(1, idx).view_as(pred)
    scaled = pred.to(F64)
    lo, hi = scaled.amin((1, 2)), scaled.amax((1, 2))
    if not (bool((lo >= 0).all()) and bool((hi <= 1).all())):  # also rejects NaN
        raise ValueError(f"float predictions must lie in [0, 1]; got min {lo.min().item()}, max {hi.max().item()}")
    same = (hi == lo)[:, None, None]
    lo, hi = lo[:, None, None], hi[:, None, None]
    return scaled, torch.where(same, scaled, (scaled - lo) / torch.where(same, 1.0, hi - lo))


def _class_histograms(bins: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """(fg, bg) 256-bin histograms per image of integer bins (B, H, W), float64 (B, 256)."""
    b = bins.shape[0]
    image = torch.arange(b, device=bins.device)[:, None, None]
    codes = (image * 2 + gt.long()) * NUM_BINS + bins
    h = torch.bincount(codes.reshape(-1), minlength=b * 2 * NUM_BINS).to(F64).view(b, 2, NUM_BINS)
    return h[:, 1], h[:, 0]


def _descending_cumsum(hist: Tensor) -> Tensor:
    return torch.cumsum(torch.flip(hist, dims=(-1,)), dim=-1)


# --- F, E, MATLAB PR -------------------------------------------------------------------------------------------
def _fmeasure_curves(tp: Tensor, fp: Tensor, n_fg: Tensor, beta2: float):
    """:func:`.fmeasure.fmeasure_curves_numpy`, batched."""
    n_pos = tp + fp
    precision = tp / torch.where(n_pos == 0, 1.0, n_pos)
    recall = tp / n_fg.clamp_min(1)
    num = (1 + beta2) * precision * recall
    den = torch.where(num == 0, 1.0, beta2 * precision + recall)
    return precision, recall, num / den


def _adaptive_fmeasure(tp: Tensor, n_pos: Tensor, n_fg: Tensor, beta2: float) -> Tensor:
    """:func:`.fmeasure.adaptive_fmeasure`, batched: 0 where the binarised map hits no foreground."""
    pre, rec = tp / n_pos.clamp_min(1), tp / n_fg.clamp_min(1)
    f = (1 + beta2) * pre * rec / torch.where(tp == 0, 1.0, beta2 * pre + rec)
    return torch.where(tp == 0, 0.0, f)


def _emeasure(fg_fg: Tensor, fg_bg: Tensor, n_fg: Tensor, n: float) -> Tensor:
    """:func:`.emeasure.emeasure_from_counts`, batched (``n_fg`` broadcast against the counts)."""
    pred_fg = fg_fg + fg_bg
    pred_bg = n - pred_fg
    bg_fg = n_fg - fg_fg
    bg_bg = pred_bg - bg_fg
    mean_pred, mean_gt = pred_fg / n, n_fg / n
    p_fg, p_bg = 1 - mean_pred, 0 - mean_pred
    g_fg, g_bg = 1 - mean_gt, 0 - mean_gt

    def part(a, b, count):
        align = 2 * (a * b) / (a * a + b * b + EPS)
        return (align + 1) * (align + 1) / 4 * count

    total = part(p_fg, g_fg, fg_fg) + part(p_fg, g_bg, fg_bg) + part(p_bg, g_fg, bg_fg) + part(p_bg, g_bg, bg_bg)
    total = torch.where(n_fg == 0, pred_bg, torch.where(n_fg == n, pred_fg, total))
    return total / (n - 1 + EPS)


def _matlab_pr(scaled: Tensor, gt: Tensor, n_fg: Tensor) -> dict[str, Tensor]:
    """:meth:`.pixels._LevelPixels.matlab_histograms` + :func:`.fmeasure.matlab_pr_curve_numpy`, batched."""
    s = scaled.clamp_min(0)
    top = s.amax((1, 2))
    valid = top > 0
    s = s / torch.where(valid, top, 1.0)[:, None, None]
    thresholds = torch.arange(NUM_BINS, dtype=F64, device=s.device) / 255
    bins = (torch.bucketize(s, thresholds, right=True) - 1).clamp_max(NUM_BINS - 1)
    fg_hist, bg_hist = _class_histograms(bins, gt)
    tp, fp = _descending_cumsum(fg_hist), _descending_cumsum(bg_hist)
    n_pos = tp + fp
    precision = torch.where(n_pos > 0, tp / n_pos.clamp_min(1), 0.0)
    recall = torch.where(n_fg[:, None] > 0, tp / n_fg.clamp_min(1)[:, None], 0.0)
    keep = valid[:, None]
    return {"pr_precision": torch.where(keep, precision, 0.0), "pr_recall": torch.where(keep, recall, 0.0),
            "pr_valid": valid.to(F64)}


# --- S-measure ---------------------------------------------------------------------------------------------------
class _Segments:
    """Per-(image, segment) count, sum, min and max of pixel values; ``mean`` is exact for a constant segment."""

    def __init__(self, values: Tensor, seg: Tensor, count: int, extremes: bool = True):
        b = values.shape[0]
        self.shape, self.count, self.pixels = (b, count), count, values.shape
        self.index = (seg + count * torch.arange(b, device=seg.device)[:, None, None]).reshape(-1)
        v = values.reshape(-1)
        self.n = self._reduce(torch.ones_like(v), "sum")
        self.sum = self._reduce(v, "sum")
        if extremes:
            self.min, self.max = self._reduce(v, "amin"), self._reduce(v, "amax")

    def _reduce(self, v: Tensor, how: str) -> Tensor:
        out = torch.zeros(self.shape[0] * self.count, dtype=F64, device=v.device)
        out.scatter_reduce_(0, self.index, v, how, include_self=False)
        return out.view(self.shape)

    def gather(self, per_segment: Tensor) -> Tensor:
        """A per-segment value (B, count) at every pixel."""
        return per_segment.reshape(-1)[self.index].view(self.pixels)

    def sums(self, v: Tensor) -> Tensor:
        return self._reduce(v.reshape(-1), "sum")


def _exact_mean(n: Tensor, total: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """:meth:`.pixels.Group.mean`: the value itself when only one value occurs, else total / n."""
    return torch.where(lo == hi, lo, total / n.clamp_min(1))


def _centroid(gt: Tensor, rounding: str) -> tuple[Tensor, Tensor]:
    """:func:`.smeasure.centroid_split`, batched (exact integer sums, one correctly rounded division)."""
    b, h, w = gt.shape
    g = gt.to(torch.int64)
    n_fg = g.sum((1, 2))
    rows = (g.sum(2) * torch.arange(h, device=gt.device)).sum(1)
    cols = (g.sum(1) * torch.arange(w, device=gt.device)).sum(1)
    denom = n_fg.clamp_min(1).to(F64)
    out = []
    for total, size in ((rows, h), (cols, w)):
        mean = total.to(F64) / denom
        if rounding == "half_even":
            split = torch.round(mean).to(torch.int64) + 1
            empty = round(size / 2)
        else:
            m1 = mean + 1
            split = torch.floor(m1).to(torch.int64) + (m1 - torch.floor(m1) >= 0.5).to(torch.int64)
            empty = int(size / 2) + (1 if size / 2 - int(size / 2) >= 0.5 else 0)
        out.append(torch.where(n_fg == 0, empty, split))
    return out[0], out[1]


def _object_similarity(n: Tensor, mean: Tensor, sum_sq: Tensor) -> Tensor:
    """:func:`.smeasure.object_similarity`, batched."""
    std = torch.sqrt(torch.where(n > 1, sum_sq / (n - 1).clamp_min(1), 0.0))
    return torch.where(n == 0, 0.0, 2 * mean / (mean * mean + 1 + std + EPS))


def _s_measure(norm: Tensor, gt: Tensor, alpha: float, rounding: str) -> Tensor:
    """:func:`.smeasure.s_measure_from_pixels`, batched."""
    b, h, w = norm.shape
    g = gt.long()
    # Object part: the foreground's values and the background's complements 1 - v.
    obj_values = torch.where(gt, norm, 1 - norm)
    cls = _Segments(obj_values, g, 2)
    cls_mean = _exact_mean(cls.n, cls.sum, cls.min, cls.max)
    cls_sq = cls.sums((obj_values - cls.gather(cls_mean)) ** 2)
    n0, n1 = cls.n[:, 0], cls.n[:, 1]
    u = n1 / (n0 + n1)
    obj = (_object_similarity(n1, cls_mean[:, 1], cls_sq[:, 1]) * u
           + _object_similarity(n0, cls_mean[:, 0], cls_sq[:, 0]) * (1 - u))
    # Region part: 4 quadrants around the GT centroid, each a global SSIM.
    cy, cx = _centroid(gt, rounding)
    rows = torch.arange(h, device=norm.device)[None, :, None] >= cy[:, None, None]
    cols = torch.arange(w, device=norm.device)[None, None, :] >= cx[:, None, None]
    quad = rows.long() * 2 + cols.long()
    both = _Segments(norm, quad, 4)  # quadrant (both classes)
    x = _exact_mean(both.n, both.sum, both.min, both.max)
    dev = norm - both.gather(x)
    sum_sq = both.sums(dev * dev)
    # Sums of the deviations from the quadrant's mean, per (quadrant, class).
    split = _Segments(dev, quad * 2 + g, 8, extremes=False)
    dev_sum = split.sum.view(b, 4, 2)
    q1 = split.n.view(b, 4, 2)[..., 1]
    nq = both.n
    y = q1 / nq.clamp_min(1)
    denom = nq - 1 + EPS
    sigma_x = sum_sq / denom
    sigma_y = (q1 * (1 - y) * (1 - y) + (nq - q1) * y * y) / denom
    sigma_xy = ((1 - y) * dev_sum[..., 1] - y * dev_sum[..., 0]) / denom
    a = 4 * x * y * sigma_xy
    bb = (x * x + y * y) * (sigma_x + sigma_y)
    ssim = torch.where(a != 0, a / (bb + EPS), torch.where(bb == 0, 1.0, 0.0))
    ssim = torch.where(nq == 0, 0.0, ssim)
    area = h * w
    w_lt = (cx * cy).to(F64) / area
    w_rt = (cy * (w - cx)).to(F64) / area
    w_lb = ((h - cy) * cx).to(F64) / area
    weights = torch.stack([w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb], 1)
    region = (ssim[:, 0] * weights[:, 0] + ssim[:, 1] * weights[:, 1] + ssim[:, 2] * weights[:, 2]
              + ssim[:, 3] * weights[:, 3])
    sm = (alpha * obj + (1 - alpha) * region).clamp_min(0)
    # Empty or full GT: 1 - mean(pred) or mean(pred) (the whole map's mean, exact when constant).
    whole = _exact_mean(torch.full_like(n0, float(h * w)), norm.sum((1, 2)), norm.amin((1, 2)), norm.amax((1, 2)))
    return torch.where(n1 == 0, 1 - whole, torch.where(n0 == 0, whole, sm))


# --- weighted F ------------------------------------------------------------------------------------------------
def _column_nearest(gt: Tensor) -> Tensor:
    """Row of the nearest foreground pixel in the same column (the upper one on a tie), -1 where none (int64)."""
    b, h, w = gt.shape
    r = torch.arange(h, device=gt.device)[None, :, None].expand(b, h, w)
    above = torch.where(gt, r, -1).cummax(1).values  # last foreground row at or above
    below = torch.where(gt, r, 2 * h + 1).flip(1).cummin(1).values.flip(1)  # first at or below
    use_above = (above >= 0) & ((r - above) <= (below - r))
    nearest = torch.where(use_above, above, below)
    return torch.where(nearest > h, -1, nearest)


def _row_distances(dy2: Tensor, block: int = 16) -> Tensor:
    """Exact squared distance of the row pass: min over columns j of (x - j)^2 + dy2[..., j] (int32).

    Grown over column offsets r = 0, 1, 2, ... in blocks of ``block`` offsets: a pixel is done once its minimum is
    at most (r + 1)^2 + min_j dy2[..., j] (its row's smallest dy2), which no column farther than r can beat. Only
    the pixels not yet done are gathered and carried on, so the cost follows each pixel's horizontal offset to its
    nearest foreground pixel, not the width squared of a brute-force min-plus product. The search stops at offset
    :data:`_FAR`: a pixel left then lies at least _FAR + 1 px from the foreground, where the weight
    2 - 0.5^(d / 5) is exactly 2.0 in float64 (0.5^(d / 5) < 2^-53 from d = 266 on), so its distance, though not
    exact, weighs exactly as the true one.
    """
    b, h, w = dy2.shape
    last = min(w - 1, _FAR)
    padded = torch.nn.functional.pad(dy2, (w, w), value=_BIG).reshape(-1)  # row q's column j at 3 w q + w + j
    best = dy2.reshape(-1).clone()
    row_min = dy2.amin(-1).reshape(-1)  # (B * H,): BIG only in an image without foreground (wF is 0)
    floor = row_min.repeat_interleave(w)  # every pixel's row minimum
    pending = torch.nonzero((best > floor + 1) & (floor < _BIG)).squeeze(1)
    for r0 in range(1, last + 1, block):
        if pending.numel() == 0:
            break
        r = torch.arange(r0, min(r0 + block, last + 1), device=dy2.device)
        at = (pending + (2 * (pending // w) + 1) * w)[:, None]  # the pixel's own column in ``padded``
        r2 = (r * r).to(torch.int32)
        left, right = padded[at - r] + r2, padded[at + r] + r2
        value = torch.minimum(best[pending], torch.minimum(left.amin(1), right.amin(1)))
        best[pending] = value
        pending = pending[value > (int(r[-1]) + 1) ** 2 + row_min[pending // w]]
    return best.view(b, h, w)


def _weighted_fmeasure(norm: Tensor, gt: Tensor, beta: float) -> Tensor:
    """:func:`.weighted_fmeasure.weighted_fmeasure_from_error`, batched; 0 for an empty GT."""
    b, h, w = norm.shape
    dev = norm.device
    err = (norm - gt.to(F64)).abs()
    near_row = _column_nearest(gt)
    dy2 = torch.where(near_row >= 0, (near_row - torch.arange(h, device=dev)[None, :, None]) ** 2, _BIG)
    dy2 = dy2.to(torch.int32)
    dist = torch.sqrt(_row_distances(dy2).to(F64))
    # Nearest foreground pixel, exact where it matters (within sqrt(18) of the foreground): the 9 columns x-4..x+4.
    offsets = torch.arange(-4, 5, device=dev)
    cols = torch.arange(w, device=dev)[:, None] + offsets[None, :]  # (W, 9)
    inside = (cols >= 0) & (cols < w)
    cols_c = cols.clamp(0, w - 1)
    cand = dy2[:, :, cols_c]  # (B, H, W, 9)
    cand = torch.where(inside, cand + (offsets * offsets).to(torch.int32), _BIG + _BIG // 2)
    pick = cand.argmin(-1)  # first minimiser: the smallest column
    near_col = cols_c[torch.arange(w, device=dev)[None, None, :], pick]
    near_r = near_row.gather(2, near_col).clamp_min(0)
    err_t = err.flatten(1).gather(1, (near_r * w + near_col).flatten(1)).view(b, h, w)
    k = torch.from_numpy(matlab_gauss_1d()).to(dev)
    smooth = torch.nn.functional.conv2d(err_t[:, None], k.view(1, 1, 7, 1), padding=(3, 0))
    smooth = torch.nn.functional.conv2d(smooth, k.view(1, 1, 1, 7), padding=(0, 3))[:, 0]
    fg_sum = torch.where(gt, torch.minimum(smooth, err), 0.0).sum((1, 2))
    weight = 2 - torch.exp(dist * (math.log(0.5) / 5))  # as the numpy path (exactly 2.0 beyond _FAR)
    fp_w = torch.where(gt, 0.0, weight * err).sum((1, 2))
    n_fg = gt.sum((1, 2)).to(F64)
    tp_w = n_fg - fg_sum
    recall = 1 - fg_sum / n_fg.clamp_min(1)
    precision = tp_w / (tp_w + fp_w + EPS)
    wf = (1 + beta) * recall * precision / (recall + beta * precision + EPS)
    return torch.where(n_fg == 0, 0.0, wf)


# --- lists of pairs (the metric classes' inputs) --------------------------------------------------------------------
def pair_statistics(pairs, groups=("fm", "pr_matlab", "mae", "sm", "em", "wf"), **kwargs) -> list[dict[str, Tensor]]:
    """Per-image statistics of (pred, gt) pairs: pairs of one size, device and dtypes are scored as one batch
    (maps at their GTs' own sizes may differ from image to image); the result keeps the pairs' order."""
    buckets: dict[tuple, list[int]] = {}
    tensors = []
    for i, (p, g) in enumerate(pairs):
        p, g = _as_map(p, "prediction"), _as_map(g, "ground truth")
        if tuple(p.shape) != tuple(g.shape):
            raise ValueError(f"prediction shape {tuple(p.shape)} differs from ground-truth shape {tuple(g.shape)}; "
                             "resize the prediction to the ground-truth size first")
        g = g.to(p.device)
        tensors.append((p, g))
        buckets.setdefault((tuple(p.shape), p.device, p.dtype, g.dtype), []).append(i)
    out: list[dict[str, Tensor]] = [{} for _ in tensors]
    for members in buckets.values():
        preds = torch.stack([tensors[i][0] for i in members])
        gts = torch.stack([tensors[i][1] for i in members])
        for i, stats in zip(members, split_images(batch_statistics(preds, gts, groups, **kwargs))):
            out[i] = stats
    return out


def _as_map(x, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) map, got shape {tuple(t.shape)}")
    return t
