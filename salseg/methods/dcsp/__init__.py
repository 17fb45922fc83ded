"""DCSP (paper 004): weakly-supervised semantic segmentation from saliency + attention cues.

``module.DCSP`` is the method (registry kind ``dcsp``): one network (``network``) trained in three phases of one
fit (attention, segmentation on the cues, the adapt round). Its parts: ``cues`` (hierarchical saliency, attention
fusion, cue fusion, adapted cues), ``attention`` (the fully convolutional multi-label classifier and its trunk),
``saliency_source`` (a saliency model of this suite from its checkpoint), ``cue_builder`` (makes, caches and
scores each round's cues), ``cache`` (cues on disk, resumable, stale settings refused) and ``crf`` (the optional
dense CRF).
"""

from .attention import AttentionNet, multilabel_loss, multiscale_attention
from .cache import CueCache, StaleCueCache
from .cues import (
           CueResult,
           adapted_cues,
           fuse_attention,
           hierarchical_saliency,
           make_cues,
)
from .network import DCSPNet, multiscale_seg_scores

__all__ = ["AttentionNet", "CueCache", "CueResult", "DCSPNet", "StaleCueCache", "adapted_cues", "fuse_attention",
           "hierarchical_saliency", "make_cues", "multilabel_loss", "multiscale_attention", "multiscale_seg_scores"]
