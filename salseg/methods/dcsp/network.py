"""DCSP's network (paper 004; the authors' DeepLab-v2 ResNet as DESIGN 6.3 describes it): ONE trunk, two heads.

* ``classifier`` (from :class:`AttentionNet`): a 1x1 convolution to one map per object class; its global average
  is the image-level logit. Trained alone first (the attention network), it gives the attention of the cues.
* ``seg_head``: a DeepLab ASPP head (torchvision's ``ASPP`` module: parallel atrous convolutions plus image
  pooling) to background + the object classes, trained on the cues.

As in the authors' code, the segmentation network starts from the attention network's weights (the same module
simply continues training) and keeps the classification loss on the class head (the "extra image-level
classification loss", so that every present class keeps evidence somewhere in the image).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .attention import AttentionNet


def deeplab_head(in_channels: int, num_classes: int, rates: Sequence[int], width: int) -> nn.Sequential:
    """ASPP (torchvision) -> 3x3 conv + BN + ReLU -> 1x1 conv to the classes: torchvision's ``DeepLabHead`` with
    the atrous rates and width as parameters (its rates 12 / 24 / 36 only see padding on a small feature map)."""
    return nn.Sequential(
        ASPP(in_channels, list(rates), out_channels=width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, num_classes, 1),
    )


class DCSPNet(AttentionNet):
    """Images in [0, 1] -> ``forward``: (class logits (B, K), segmentation logits (B, K + 1, H, W) at the input
    size); ``class_maps`` (attention, from :class:`AttentionNet`) and ``seg_scores`` (at the trunk's stride)."""

    def __init__(self, num_classes: int, backbone: str = "resnet101", weights: str | None = "imagenet",
                 output_stride: int = 8, aspp_rates: Sequence[int] = (6, 12, 18), aspp_width: int = 256,
                 class_pooling: str = "avg"):
        super().__init__(num_classes, backbone, weights, output_stride, class_pooling)
        self.seg_head = deeplab_head(self.channels, int(num_classes) + 1, aspp_rates, int(aspp_width))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk((images - self.mean) / self.std)

    def seg_scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.seg_head(self.features(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(images)
        logits = self.pool(self.classifier(f))
        seg = F.interpolate(self.seg_head(f), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits, seg

    def head_parameters(self) -> list[nn.Parameter]:
        """The new layers (x10 learning rate, the authors' "fc" layers): both heads."""
        return [*self.classifier.parameters(), *self.seg_head.parameters()]

    def trunk_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())


@torch.no_grad()
def multiscale_seg_scores(net: DCSPNet, images: torch.Tensor, scales: Sequence[float] = (1.0, 0.75, 0.5)
                          ) -> torch.Tensor:
    """Segmentation scores (B, K + 1, H, W) at the images' size: the max over the input scales of the logits,
    each resized bilinearly (the authors' adapt step: their ``fc1_voc12`` over scales 1, 0.75, 0.5)."""
    size = tuple(images.shape[-2:])
    out = []
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, scale_factor=float(s), mode="bilinear",
                                                   align_corners=False, recompute_scale_factor=False)
        out.append(F.interpolate(net.seg_scores(x), size=size, mode="bilinear", align_corners=False))
    return torch.stack(out).amax(0)
