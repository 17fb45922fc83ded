"""Training-free classic baselines.

``RegionContrast``: Region Contrast saliency (Cheng et al., CVPR 2011 / TPAMI 2015), a per-image CPU
algorithm (numpy + scikit-image) wrapped as a LightningModule with ``trainable = False``.
The algorithm itself (usable without Lightning) lives in the submodule
``salseg.methods.baselines.region_contrast``; its low-level function of the same name is deliberately
not re-exported here, so that the package attribute ``region_contrast`` stays the submodule.
"""

from .module import RegionContrast
from .region_contrast import histogram_contrast, region_contrast_saliency

__all__ = ["RegionContrast", "region_contrast_saliency", "histogram_contrast"]
