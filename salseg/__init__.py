"""salseg: a PyTorch Lightning experiment suite for salient-object detection and weakly-supervised segmentation."""

__version__ = "0.1.0"
