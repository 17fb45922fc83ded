"""Batching of sample dicts (the ``collate_fn`` of every salseg DataLoader).

* tensors of equal shape (and dtype) across the batch are stacked (``image``, ``mask``, ``label``, ...);
* ``gt`` (original-resolution ground truth) is ALWAYS a list of tensors, one per sample, because its size
  follows each image; any other tensor key whose shapes differ within the batch also becomes a list;
* strings (``name``, ``dataset``) and any other objects become lists; Python numbers become a tensor;
  numpy arrays are converted to tensors first.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ALWAYS_LIST = frozenset({"gt"})


def _collate_values(key: str, values: list[Any]) -> Any:
    if all(isinstance(v, np.ndarray) for v in values):
        values = [torch.from_numpy(np.ascontiguousarray(v)) for v in values]
    if all(isinstance(v, torch.Tensor) for v in values):
        if key in ALWAYS_LIST:
            return list(values)
        first = values[0]
        if all(v.shape == first.shape and v.dtype == first.dtype for v in values):
            return torch.stack(values)
        return list(values)
    if all(isinstance(v, str) for v in values):
        return list(values)
    if all(isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.bool)
    if all(isinstance(v, numbers.Integral) for v in values):
        return torch.tensor(values, dtype=torch.int64)
    if all(isinstance(v, numbers.Real) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    return list(values)


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of sample dicts into one batch dict (see the module docstring)."""
    if len(samples) == 0:
        raise ValueError("collate_samples: empty batch")
    keys = list(samples[0].keys())
    key_set = set(keys)
    for i, s in enumerate(samples[1:], start=1):
        if set(s.keys()) != key_set:
            raise KeyError(
                f"collate_samples: sample {i} has keys {sorted(s.keys())} but sample 0 has {sorted(key_set)}"
            )
    return {k: _collate_values(k, [s[k] for s in samples]) for k in keys}
