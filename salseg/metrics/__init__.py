"""Metrics: salient-object detection (torchmetrics ``Metric`` classes with float64 sum states, DDP-exact).

``SODMetrics`` holds them all: ``update(preds, gts)``, ``compute()`` -> flat dict of floats with the keys
``maxF, meanF, adpF, maxF_pr, MAE, Sm, maxEm, meanEm, adpEm, wF``, ``curves()`` -> averaged PR / F curves.
Per-image math: :mod:`salseg.metrics.functional` (numpy / scipy only, so ``salseg eval`` runs without torch).

The metric classes are imported lazily (PEP 562): importing ``salseg.metrics.functional`` must not pull in
torch and torchmetrics through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import Any

METRIC_KEYS = ("maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "meanEm", "adpEm", "wF")

_FROM_SOD = ("AveragedPRFMeasure", "EMeasure", "FMeasure", "MeanAbsoluteError", "SMeasure", "SODMetrics",
             "StatsBatch", "WeightedFMeasure")

__all__ = ["METRIC_KEYS", *_FROM_SOD, "functional"]


def __getattr__(name: str) -> Any:
    if name in _FROM_SOD:
        value = getattr(importlib.import_module(f"{__name__}.sod"), name)
    elif name == "functional":
        value = importlib.import_module(f"{__name__}.functional")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
