"""DCSP's class attention (paper 004): a fully convolutional multi-label classifier.

The trunk of a backbone (its convolutional part at ``output_stride``: ``salseg.backbones.build_trunk``) gives features;
a 1x1 convolution turns them into one map per class; the image-level logits are the global AVERAGE of each class map,
trained with sigmoid cross-entropy on the image-level labels. At cue time the class maps themselves are the attention:
computed at the scales {1, 0.75, 0.5} of the input, resized, max-fused and min-max normalised per class
(``cues.fuse_attention``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.backbones import build_trunk, input_normalization

from .cues import at_scale, fuse_attention

# avg: the paper's global average pooling; max: global max pooling, for networks trained from scratch on the
# embedded shapes, where the average learns far slower (measured on 256 images, 12 epochs, Adam 1e-3: BCE 0.48 with
# the average, 0.33 with the max)
POOLINGS = ("avg", "max")


class AttentionNet(nn.Module):
    """Images in [0, 1] (B, 3, H, W) -> ``class_maps`` (B, C, h, w); ``forward`` -> logits (B, C) (their mean)."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", weights: str | None = "imagenet",
                 output_stride: int = 32, class_pooling: str = "avg", freeze_trunk: bool = False):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_pooling not in POOLINGS:
            raise ValueError(f"model.class_pooling must be one of {POOLINGS}, got {class_pooling!r}")
        self.class_pooling = class_pooling
        self.trunk, channels = build_trunk(backbone, weights, output_stride, method="DCSP")
        self.freeze_trunk = bool(freeze_trunk)
        if self.freeze_trunk:  # the pretrained features as they are: only the heads train
            self.trunk.requires_grad_(False)
        self.channels = channels
        self.classifier = nn.Conv2d(channels, int(num_classes), kernel_size=1)
        mean, std = input_normalization(backbone)  # what the trunk's weights expect (timm's lite0: [-1, 1])
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's features; a frozen trunk runs without autograd (no graph to keep: about 3x cheaper steps)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_trunk):
            return self.trunk((images - self.mean) / self.std)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))

    def pool(self, class_maps: torch.Tensor) -> torch.Tensor:
        """Image-level logits (B, C) from class maps: their global average (the paper) or maximum."""
        return class_maps.mean(dim=(2, 3)) if self.class_pooling == "avg" else class_maps.amax(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.class_maps(images))


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy on the image-level multi-hot labels, averaged over images and classes."""
    return F.binary_cross_entropy_with_logits(logits, labels.float())


@torch.no_grad()
def multiscale_attention(net: AttentionNet, images: torch.Tensor,
                         scales: Sequence[float] = (1.0, 0.75, 0.5)) -> torch.Tensor:
    """Attention (B, C, H, W) in [0, 1] at the images' size: the class maps at each scale of the input, fused."""
    size = tuple(images.shape[-2:])
    maps = []
    for s in scales:
        x = at_scale(images, s)
        maps.append(net.class_maps(x))
    return fuse_attention(maps, size)
