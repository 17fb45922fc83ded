"""DCSP's network (paper 004; the authors' DeepLab-v2 ResNet, ``deeplab_resnet/model.py``): ONE trunk, two heads.

* ``classifier`` (from :class:`AttentionNet`): a 1x1 convolution to one map per object class; its global average
  is the image-level logit. Trained alone first (the attention network), it gives the attention of the cues.
* ``seg_head``: a DeepLab ASPP head (torchvision's ``ASPP`` module: parallel atrous convolutions plus image
  pooling, with batch norm) to background + the object classes, trained on the cues.

As in the authors' code, the segmentation network starts from the attention network's weights (the same module
simply continues training). The image-level classification loss of the segmentation phase (so that every present
class keeps evidence somewhere in the image) is taken, by default (``model.cls_on: segmentation``), on the globally
pooled object-class scores of ``seg_head``; ``cls_on: class_head`` takes it on ``classifier`` instead. The authors'
released code differs in structure: their class head (``fc1_voc12_d0``) is a 1x1 convolution ON the segmentation
scores (``fc1_voc12``, four summed atrous 3x3 convolutions, rates 6 / 12 / 18 / 24, without batch norm), not a
second branch from the trunk; their classification loss is on that head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .attention import AttentionNet
from .cues import at_scale, fuse_scales


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
                 class_pooling: str = "avg", freeze_trunk: bool = False):
        super().__init__(num_classes, backbone, weights, output_stride, class_pooling, freeze_trunk)
        self.seg_head = deeplab_head(self.channels, int(num_classes) + 1, aspp_rates, int(aspp_width))

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
def multiscale_seg_scores(net: DCSPNet, images: torch.Tensor, scales: Sequence[float] = (1.0, 0.75, 0.5),
                          flip: bool = False) -> torch.Tensor:
    """Segmentation scores (B, K + 1, H, W) at the images' size: the logits at each input scale, resized to the
    first scale's map, max-fused, then upsampled bilinearly (the authors' ``fc1_voc12`` over scales 1, 0.75, 0.5
    in ``get_localization.py``'s adapt step and in ``evaluate.py``). ``flip`` adds each scale's mirrored view to
    the maximum (not the authors')."""
    size = tuple(images.shape[-2:])
    out = []
    for s in scales:
        x = at_scale(images, s)
        out.append(net.seg_scores(x))
        if flip:
            out.append(net.seg_scores(x.flip(-1)).flip(-1))
    return F.interpolate(fuse_scales(out), size=size, mode="bilinear", align_corners=False)
