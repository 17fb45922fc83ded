"""MEnet (paper 003): a metric expression network for salient object segmentation, trained from scratch.

``network``: the symmetric encoder-decoder with the 13-scale bundle (Sec. II-A); ``loss``: L_ML + lambda L_CE with
hard-negative mining (Sec. II-B, III-B); ``saliency``: the CE map and the metric-space map of Eq. 5 (Sec. II-C);
``module``: the LightningModule ``MEnet`` (registry kind ``menet``).
"""

from .loss import MEnetLoss, hard_negative_mask, metric_terms
from .module import MEnet
from .network import MEnetNetwork, check_input_size, describe
from .saliency import authors_metric_saliency, ce_saliency, metric_saliency

__all__ = ["MEnet", "MEnetNetwork", "MEnetLoss", "describe", "check_input_size", "metric_terms",
           "hard_negative_mask", "ce_saliency", "metric_saliency", "authors_metric_saliency"]
