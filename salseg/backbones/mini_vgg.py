"""``mini_vgg``: the suite's small from-scratch classifier for the 64 px embedded dataset (no pretrained weights)."""

from __future__ import annotations

import torch
from torch import nn


class MiniVGG(nn.Module):
    """A small VGG-style classifier for the 64 px embedded dataset, trained from scratch on a CPU.

    Why not a torchvision model: the papers fine-tune an ImageNet VGG; before the suite shipped an offline ImageNet
    network (``weights: lite0_imagenet``), nothing pretrained was available. From scratch, on shapes at 64 px,
    ResNet-18 stayed at chance (25-35 % top-1 on 4 classes) after 1,500 steps (Adam 1e-3, fresh images),
    MobileNet-V3 likewise, and torchvision's VGGs carry a 25,088 x 4,096 layer too large for a CPU minute. Four
    blocks of 3x3 conv + batch norm + ReLU + 2x2 max pooling, as VGG's, then a global MAX pool (an object anywhere in
    the image fires its detector; a global average dilutes a small object in the clutter: in the same 800 steps, max
    pooling reached 47 % validation top-1 and average pooling 32 %) and one linear layer, the one CNN1 / CNN2 / CNN3
    replace. About 0.3 M parameters at the default widths."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128), num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


SUITE_BACKBONES = {"mini_vgg": MiniVGG}  # trained from scratch only (weights: null or a path)
