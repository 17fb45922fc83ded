"""Input checks and the per-image preparation every SOD measure shares (PySODMetrics ``prepare_data``).

Per image, ``pred`` is a (H, W) ``uint8`` map (0..255, a saved 8-bit map) or floating point in [0, 1]; ``gt`` is
``uint8`` raw 8-bit values (foreground = ``gt > 128``), ``bool``, or floating point (``> 0.5``). A leading
singleton channel is squeezed. Preparation (PySOD ``prepare_data``, float64): a uint8 map is divided by 255 (MATLAB
``im2double``); then, unless the map is constant, it is min-max normalised to [0, 1].

numpy only: maps may be numpy arrays or torch tensors (copied to the CPU and viewed as numpy), but this module
never imports torch, so ``salseg eval`` scores folders without it (``F64``, torch's float64, is resolved lazily
for the torch callers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = float(np.spacing(1))  # MATLAB's eps == numpy.spacing(1) == PySOD's EPS (2.220446049250313e-16)
NUM_BINS = 256
_NUMPY_DTYPES = ("torch.uint8", "torch.bool", "torch.float32", "torch.float64", "torch.int64", "torch.int32")


def __getattr__(name: str) -> Any:
    if name == "F64":  # torch.float64, for torch callers; imported only when asked for
        import torch

        return torch.float64
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_numpy(x) -> np.ndarray:
    """A numpy view of a numpy array or (CPU copy of a) torch tensor; dtypes numpy lacks (bfloat16) as float64."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor, recognised without importing torch
        x = x.detach().cpu()
        if str(x.dtype) not in _NUMPY_DTYPES and x.is_floating_point():
            x = x.double()  # exact for every float format torch has
        return x.numpy()
    return np.asarray(x)


def as_2d(x, name: str) -> np.ndarray:
    """A (H, W) array from a numpy array / tensor; a leading singleton channel (1, H, W) is squeezed."""
    a = to_numpy(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) map, got shape {tuple(a.shape)}")
    return a


def check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    """The metrics compare pixel to pixel: the caller must resize the prediction to the GT first."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from ground-truth shape {tuple(gt.shape)}; "
            "resize the prediction to the ground-truth size first"
        )


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    """Foreground mask: uint8 ``> 128`` (PySOD), bool as is, float ``> 0.5``.

    The MATLAB toolbox uses ``im2double(gt) >= 0.1`` (uint8 >= 26): for {0, 255} masks, i.e. the GTs of the
    standard benchmarks, both rules give the same mask; they differ only on soft/multi-annotator masks.
    """
    gt = to_numpy(gt)
    if gt.dtype == np.bool_:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    if np.issubdtype(gt.dtype, np.floating):
        return gt > 0.5
    raise TypeError(f"ground truth must be uint8 (0..255), bool or float (0..1), got {gt.dtype}")


def check_pred_dtype(pred: np.ndarray) -> None:
    if pred.dtype != np.uint8 and not np.issubdtype(pred.dtype, np.floating):
        raise TypeError(f"prediction must be uint8 (0..255) or float in [0, 1], got {pred.dtype}")


def prepare_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """(pred, boolean GT) as CPU numpy arrays (see :mod:`.pixels` for why), shapes and dtypes checked."""
    pred, gt = as_2d(pred, "prediction"), as_2d(gt, "ground truth")
    check_pair(pred, gt)
    check_pred_dtype(pred)
    return pred, binarize_gt(gt)


def unit_scale(pred: np.ndarray) -> np.ndarray:
    """float64 map in the [0, 1] scale: uint8 / 255 (MATLAB im2double), floats as given (range checked)."""
    if pred.dtype == np.uint8:
        return pred.astype(np.float64) / 255
    p = pred.astype(np.float64)
    lo, hi = p.min(), p.max()
    if not (lo >= 0 and hi <= 1):  # also rejects NaN
        raise ValueError(f"float predictions must lie in [0, 1]; got min {lo}, max {hi}")
    return p


def minmax(p: np.ndarray) -> np.ndarray:
    """PySOD ``prepare_data``: (p - min) / (max - min), unless constant (a constant map keeps its value)."""
    lo, hi = p.min(), p.max()
    return (p - lo) / (hi - lo) if hi != lo else p


def level_table(pred_u8: np.ndarray) -> np.ndarray:
    """The normalised value of each of the 256 uint8 levels of this map (same float64 ops as per pixel)."""
    levels = np.arange(NUM_BINS, dtype=np.float64) / 255
    lo, hi = levels[int(pred_u8.min())], levels[int(pred_u8.max())]
    return (levels - lo) / (hi - lo) if hi != lo else levels


def normalize_pred(pred) -> np.ndarray:
    """Prediction as float64 in [0, 1], prepared exactly as PySOD's ``prepare_data``."""
    pred = to_numpy(pred)
    check_pred_dtype(pred)
    if pred.dtype == np.uint8:
        return level_table(pred)[pred]
    return minmax(unit_scale(pred))
