"""GD saliency (papers 002 and 001): saliency maps by gradient descent on the input image of a classifier."""

from .generator import (
    COSTS,
    DIFF_NORMS,
    GRAD_NORMS,
    GDResult,
    GDSaliency,
    average_maps,
    cost_per_image,
    masked_targets,
    minmax,
    normalize_maps,
)

__all__ = ["COSTS", "DIFF_NORMS", "GRAD_NORMS", "GDResult", "GDSaliency", "average_maps", "cost_per_image",
           "masked_targets", "minmax", "normalize_maps"]
