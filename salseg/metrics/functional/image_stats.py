"""Everything one image contributes to the SOD metrics, in one pass of the pixel engine.

:func:`image_statistics` prepares the pair once (:mod:`.inputs`), builds its pixel groups and histograms once
(:mod:`.pixels`) and hands them to each requested measure: F-measure family (:mod:`.fmeasure`), E-measure
(:mod:`.emeasure`), MAE (:mod:`.mae`), S-measure (:mod:`.smeasure`), weighted F (:mod:`.weighted_fmeasure`).
The metric classes of :mod:`salseg.metrics.sod` sum these per-image statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from salseg.metrics.functional.emeasure import emeasure_from_counts
from salseg.metrics.functional.fmeasure import adaptive_fmeasure, fmeasure_curves_numpy, matlab_pr_curve_numpy
from salseg.metrics.functional.inputs import NUM_BINS, prepare_pair
from salseg.metrics.functional.mae import mae_from_groups
from salseg.metrics.functional.pixels import descending_cumsum, pixels_of
from salseg.metrics.functional.smeasure import centroid_split, s_measure_from_pixels
from salseg.metrics.functional.weighted_fmeasure import weighted_fmeasure_from_error

ALL_GROUPS = ("fm", "pr_matlab", "mae", "sm", "em", "wf")  # what image_statistics can compute
CENTROID_ROUNDING = ("half_even", "half_away")


def image_statistics(
    pred,
    gt,
    groups: Iterable[str] = ALL_GROUPS,
    *,
    beta2: float = 0.3,
    alpha: float = 0.5,
    wf_beta: float = 1.0,
    centroid_rounding: str = "half_even",
) -> dict[str, Any]:
    """Per-image statistics that the metric states sum, as float64 CPU tensors (:func:`image_statistics_numpy`,
    whose values they are, as torch tensors for :mod:`salseg.metrics.sod`).

    Groups and keys:
      fm        -> precision, recall, fmeasure (256 each, PySOD curves), adp_f
      em        -> emeasure (256), adp_em
      pr_matlab -> pr_precision, pr_recall (256 each; zeros for an all-zero map), pr_valid (0 or 1)
      mae       -> mae;   sm -> sm;   wf -> wf
    """
    import torch  # the torch metric classes' entry; the numpy core below does not need it

    stats = image_statistics_numpy(pred, gt, groups, beta2=beta2, alpha=alpha, wf_beta=wf_beta,
                                   centroid_rounding=centroid_rounding)
    return {k: torch.from_numpy(v) for k, v in stats.items()}


def image_statistics_numpy(
    pred,
    gt,
    groups: Iterable[str] = ALL_GROUPS,
    *,
    beta2: float = 0.3,
    alpha: float = 0.5,
    wf_beta: float = 1.0,
    centroid_rounding: str = "half_even",
) -> dict[str, np.ndarray]:
    """:func:`image_statistics` as float64 numpy arrays (0-d for the scalars); numpy / scipy only."""
    groups = set(groups)
    if groups - set(ALL_GROUPS):
        raise ValueError(f"unknown statistic groups {sorted(groups - set(ALL_GROUPS))}; choose from {ALL_GROUPS}")
    if centroid_rounding not in CENTROID_ROUNDING:
        raise ValueError(f"centroid_rounding must be one of {CENTROID_ROUNDING}, got {centroid_rounding!r}")
    pred, gt = prepare_pair(pred, gt)
    split = centroid_split(gt, centroid_rounding) if "sm" in groups and pred.dtype == np.uint8 else None
    px = pixels_of(pred, gt, split, centroid_rounding)
    fg, bg = px.classes()
    n_fg, n = fg.n(), float(gt.size)
    out: dict[str, np.ndarray] = {}

    def scalar(v: float) -> np.ndarray:
        return np.array(float(v), dtype=np.float64)

    def curve(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float64)

    if groups & {"fm", "em"}:
        tp, fp = (descending_cumsum(h) for h in px.quantised_histograms())
        threshold = min(2 * (fg.total() + bg.total()) / n, 1.0)  # PySOD get_adaptive_threshold
        a_tp = fg.count_ge(threshold)
        a_pos = a_tp + bg.count_ge(threshold)
        if "fm" in groups:
            curves = fmeasure_curves_numpy(tp, fp, int(n_fg), beta2)
            out["precision"], out["recall"], out["fmeasure"] = (curve(c) for c in curves)
            out["adp_f"] = scalar(adaptive_fmeasure(a_tp, a_pos, n_fg, beta2))
        if "em" in groups:
            out["emeasure"] = curve(emeasure_from_counts(tp, fp, n_fg, n))
            out["adp_em"] = scalar(emeasure_from_counts(a_tp, a_pos - a_tp, n_fg, n))
    if "pr_matlab" in groups:
        hists = px.matlab_histograms()
        if hists is None:  # all-zero map: left out of the MATLAB curve averages
            out["pr_precision"], out["pr_recall"], out["pr_valid"] = np.zeros(NUM_BINS), np.zeros(NUM_BINS), scalar(0)
        else:
            out["pr_precision"], out["pr_recall"] = (curve(c) for c in matlab_pr_curve_numpy(*hists, n_fg))
            out["pr_valid"] = scalar(1)
    if "mae" in groups:
        out["mae"] = scalar(mae_from_groups(fg, bg, n))
    if "sm" in groups:
        out["sm"] = scalar(s_measure_from_pixels(px, alpha, centroid_rounding))
    if "wf" in groups:
        out["wf"] = scalar(weighted_fmeasure_from_error(px.error_map(), gt, wf_beta))
    return out
