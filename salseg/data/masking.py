"""Masked images for the GD method's CNN2/CNN3: object pixels replaced by a fill colour.

The default fill is the dataset's mean colour (``dataset_mean_colour``); any (3,) colour in [0, 1] works too.
"""

from __future__ import annotations

from typing import Sequence

import torch


def mask_objects(image: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Replace the pixels where ``mask > 0.5`` by ``fill``.

    Args:
        image: (3, H, W) or (B, 3, H, W) float in [0, 1].
        mask: (1, H, W) / (H, W) or (B, 1, H, W) in {0, 1}.
        fill: (3,) colour, or a tensor broadcastable to the image (e.g. (B, 3, 1, 1)).
    """
    fill_t = torch.as_tensor(fill, dtype=image.dtype, device=image.device)
    if fill_t.ndim == 1:
        fill_t = fill_t.view(3, 1, 1)
    m = mask.to(image.device) > 0.5
    if m.ndim == image.ndim - 1:
        m = m.unsqueeze(-3)
    return torch.where(m, fill_t, image)


@torch.no_grad()
def dataset_mean_colour(dataset, max_samples: int = 500) -> torch.Tensor:
    """Mean RGB colour of the ``image`` of the first ``max_samples`` samples of ``dataset`` (a (3,) tensor)."""
    n = min(len(dataset), int(max_samples))
    if n == 0:
        raise ValueError("dataset_mean_colour: empty dataset")
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(n):
        total += dataset[i]["image"].double().mean(dim=(-2, -1))
    return (total / n).float()
