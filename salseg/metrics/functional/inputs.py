"""Input checks and the per-image preparation every SOD measure shares (PySODMetrics ``prepare_data``).

Per image, ``pred`` is a (H, W) ``uint8`` map (0..255, a saved 8-bit map) or floating point in [0, 1]; ``gt`` is
``uint8`` raw 8-bit values (foreground = ``gt > 128``), ``bool``, or floating point (``> 0.5``). A leading
singleton channel is squeezed. Preparation (PySOD ``prepare_data``, float64): a uint8 map is divided by 255 (MATLAB
``im2double``); then, unless the map is constant, it is min-max normalised to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

EPS = float(np.spacing(1))  # MATLAB's eps == numpy.spacing(1) == PySOD's EPS (2.220446049250313e-16)
NUM_BINS = 256
F64 = torch.float64


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


def prepare_pair(pred, gt) -> tuple[Tensor, Tensor]:
    """(pred, boolean GT) on the CPU (see :mod:`.pixels` for why), shapes and dtypes checked."""
    pred, gt = as_2d(pred, "prediction"), as_2d(gt, "ground truth")
    check_pair(pred, gt)
    check_pred_dtype(pred)
    return pred.detach().cpu(), binarize_gt(gt.detach().cpu())


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
