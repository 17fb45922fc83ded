"""Metrics: salient-object detection (torchmetrics ``Metric`` classes with float64 sum states, DDP-exact).

``SODMetrics`` holds them all: ``update(preds, gts)``, ``compute()`` -> flat dict of floats with the keys
``maxF, meanF, adpF, maxF_pr, MAE, Sm, maxEm, meanEm, adpEm, wF``, ``curves()`` -> averaged PR / F curves.
Per-image math: :mod:`salseg.metrics.functional`.
"""

from salseg.metrics import functional
from salseg.metrics.sod import (
    METRIC_KEYS,
    AveragedPRFMeasure,
    EMeasure,
    FMeasure,
    MeanAbsoluteError,
    SMeasure,
    SODMetrics,
    StatsBatch,
    WeightedFMeasure,
)

__all__ = [
    "METRIC_KEYS",
    "AveragedPRFMeasure",
    "EMeasure",
    "FMeasure",
    "MeanAbsoluteError",
    "SMeasure",
    "SODMetrics",
    "StatsBatch",
    "WeightedFMeasure",
    "functional",
]
