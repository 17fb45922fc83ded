"""Per-image math of the salient-object-detection (SOD) metrics, as pure functions.

Conventions are those of PySODMetrics 1.6.x (github.com/lartpang/PySODMetrics, ``py_sod_metrics/sod_metrics.py``
and ``utils.py``), which mirrors the MATLAB code of the metric authors; the averaged-PR ``maxF_pr`` follows the
older MATLAB benchmark (sal_eval_toolbox, ``tools/Curve_BenchCode/performCalcu.m``). The formulas were
re-derived from those references and the papers; no code is copied.

Inputs, per image:

- ``pred``: (H, W) ``uint8`` (0..255, a saved 8-bit map) or floating point in [0, 1].
- ``gt``: (H, W) ``uint8`` raw 8-bit values (foreground = ``gt > 128``), ``bool``, or floating point (``> 0.5``).

Curve order: every curve has 256 entries in DESCENDING threshold order. Entry ``i`` is the threshold ``255 - i``
(quantised map, PySOD) or ``(255 - i) / 255`` (MATLAB curve); the last entry is "everything is foreground".

Modules: :mod:`.inputs` (checks, scaling, min-max), :mod:`.pixels` (the shared pixel engine: groups of values,
histograms, cumulative counts, thresholds; also where and how it runs), one module per measure
(:mod:`.fmeasure`, :mod:`.emeasure`, :mod:`.mae`, :mod:`.smeasure`, :mod:`.weighted_fmeasure`) and
:mod:`.image_stats` (:func:`image_statistics`: every measure of one image in one pass).

numpy, OpenCV and scipy only (the last two on first use): no module here imports torch at import time
(``salseg eval`` scores folders without it); torch tensors are accepted and, where a function returns curves,
returned as tensors. ``F64`` (torch.float64) is resolved lazily.
"""

from salseg.metrics.functional.emeasure import emeasure_from_counts
from salseg.metrics.functional.fmeasure import (
    adaptive_fmeasure,
    f_of_averages,
    f_of_averages_numpy,
    fmeasure_curves,
    matlab_pr_curve,
)
from salseg.metrics.functional.image_stats import (
    ALL_GROUPS,
    CENTROID_ROUNDING,
    image_statistics,
    image_statistics_numpy,
)
from salseg.metrics.functional.inputs import (
    EPS,
    NUM_BINS,
    as_2d,
    binarize_gt,
    check_pair,
    check_pred_dtype,
    level_table,
    minmax,
    normalize_pred,
    to_numpy,
    unit_scale,
)
from salseg.metrics.functional.pixels import Group, descending_cumsum, matlab_bins, pixels_of
from salseg.metrics.functional.smeasure import (
    centroid_split,
    object_similarity,
    region_similarity,
    round_half,
    s_measure,
    s_measure_from_pixels,
)
from salseg.metrics.functional.weighted_fmeasure import matlab_gauss_1d, weighted_fmeasure, weighted_fmeasure_from_error

__all__ = [
    "ALL_GROUPS",
    "CENTROID_ROUNDING",
    "EPS",
    "F64",
    "NUM_BINS",
    "Group",
    "adaptive_fmeasure",
    "as_2d",
    "binarize_gt",
    "centroid_split",
    "check_pair",
    "check_pred_dtype",
    "descending_cumsum",
    "emeasure_from_counts",
    "f_of_averages",
    "f_of_averages_numpy",
    "fmeasure_curves",
    "image_statistics",
    "image_statistics_numpy",
    "level_table",
    "matlab_bins",
    "matlab_gauss_1d",
    "matlab_pr_curve",
    "minmax",
    "normalize_pred",
    "object_similarity",
    "pixels_of",
    "region_similarity",
    "round_half",
    "s_measure",
    "s_measure_from_pixels",
    "to_numpy",
    "unit_scale",
    "weighted_fmeasure",
    "weighted_fmeasure_from_error",
]


def __getattr__(name: str):
    if name == "F64":  # torch.float64, imported only when asked for
        from salseg.metrics.functional import inputs

        return inputs.F64
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
