"""Masked images for the GD method's CNN2/CNN3: object pixels replaced by a fill colour.

Which pixels (``masking_region``): every pixel whose class is not background. With a class map (VOC / COCO /
shapes ``class_mask``) that is ``class_mask != 0``: the objects AND the void / ignore label 255, because VOC's void
band outlines every object (and covers the difficult ones), so an image masked by the object pixels alone still
shows each outline (paper 002 Sec. 3.1 trains CNN2 on images whose objects are gone). Without a class map (saliency
datasets) it is the binary ``mask``. An image without pixel annotation (``has_mask`` false: its class map is all
void) has no known object pixels and is left as it is.

The default fill is the dataset's mean colour (``dataset_mean_colour``); any (3,) colour in [0, 1] works too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def masking_region(mask: torch.Tensor, class_mask: torch.Tensor | None = None,
                   has_mask: torch.Tensor | bool | None = None) -> torch.Tensor:
    """Boolean pixels to mask, shaped like ``mask`` ((1, H, W) or (B, 1, H, W)): ``class_mask != 0`` (objects and
    void) where a class map is given, else ``mask > 0.5``; nothing for images whose ``has_mask`` is false."""
    if class_mask is None:
        return mask > 0.5
    region = (class_mask != 0).reshape(mask.shape).to(mask.device)
    if has_mask is not None:
        known = torch.as_tensor(has_mask, dtype=torch.bool, device=region.device)
        if known.ndim:  # one flag per image of a batch
            known = known.reshape(-1, *[1] * (region.ndim - 1))
        region = region & known
    return region


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
