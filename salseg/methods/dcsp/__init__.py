"""DCSP (paper 004): weakly-supervised semantic segmentation from saliency + attention cues (in progress: issue 5).

So far: ``cues`` (hierarchical saliency, attention fusion, cue fusion), ``attention`` (the fully convolutional
multi-label classifier) and ``cache`` (cues on disk, resumable, stale settings refused). Still to come: the
segmentation network and its training, the adapt round, the method module, experiments and the ``dcsp_cues``
ablation.
"""

from .attention import AttentionNet, multilabel_loss, multiscale_attention
from .cache import CueCache, StaleCueCache
from .cues import CueResult, fuse_attention, hierarchical_saliency, make_cues

__all__ = ["AttentionNet", "CueCache", "CueResult", "StaleCueCache", "fuse_attention", "hierarchical_saliency", "make_cues", "multilabel_loss",
           "multiscale_attention"]
