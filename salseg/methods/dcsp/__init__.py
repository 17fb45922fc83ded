"""DCSP (paper 004): weakly-supervised semantic segmentation from saliency + attention cues (in progress: issue 5)."""

from .cues import CueResult, fuse_attention, hierarchical_saliency, make_cues

__all__ = ["CueResult", "fuse_attention", "hierarchical_saliency", "make_cues"]
