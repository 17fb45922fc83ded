"""Per-image min-max normalisation of saliency, attention and gradient maps, shared by the methods.

Saliency maps are scored in [0, 1]; each method min-maxes per image (or per image and channel), and a constant
map, which has no range to scale, becomes 0 rather than 0 / 0. The methods differ only in
what counts as constant and how the divisor is kept off zero, so those are parameters here, each caller keeping its
own (its outputs unchanged to the bit).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def minmax_normalize(x: Tensor, start_dim: int = 1, *, min_range: float = 0.0, floor: float | None = None) -> Tensor:
    """Scale each slice of ``x`` over the dims from ``start_dim`` on (1: per image, 2: per image and channel) to
    [0, 1]; a slice whose range (max - min) is not above ``min_range`` becomes 0. The divisor is clamped to ``floor``
    (default: the dtype's smallest normal number), so the branch ``torch.where`` discards never divides by zero."""
    flat = x.flatten(start_dim)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    rng = hi - lo
    floor = torch.finfo(x.dtype).tiny if floor is None else floor
    return torch.where(rng > min_range, (flat - lo) / rng.clamp_min(floor), torch.zeros_like(flat)).reshape_as(x)


def minmax_normalize_array(x: np.ndarray) -> np.ndarray:
    """A float64 copy of the whole array ``x`` scaled to [0, 1]; a constant array becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros(x.shape)
