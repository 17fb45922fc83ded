"""GD saliency (papers 002 and 001): saliency maps by gradient descent on the input image of a classifier."""

from .generator import (
    COSTS,
    GDResult,
    GDSaliency,
    average_maps,
    cost_per_image,
    masked_targets,
    normalize_maps,
)

__all__ = ["COSTS", "GDResult", "GDSaliency", "average_maps", "cost_per_image", "masked_targets", "normalize_maps"]
