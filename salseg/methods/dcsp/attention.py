"""DCSP's class attention (paper 004; DESIGN 6.3): a fully convolutional multi-label classifier.

The trunk of a backbone (its convolutional part) gives features; a 1x1 convolution turns them into one map per
class; the image-level logits are the global AVERAGE of each class map, trained with sigmoid cross-entropy on the
image-level labels. At cue time the class maps themselves are the attention: computed at the scales {1, 0.75, 0.5}
of the input, resized, max-fused and min-max normalised per class (``cues.fuse_attention``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone

from .cues import fuse_attention

OUTPUT_STRIDES = (8, 16, 32)
# avg: the paper's global average pooling; max: global max pooling, for networks trained from scratch on the
# embedded shapes, where the average learns far slower (measured on 256 images, 12 epochs, Adam 1e-3: BCE 0.48 with
# the average, 0.33 with the max)
POOLINGS = ("avg", "max")


def backbone_for(name: str, weights: str | None, output_stride: int = 32) -> nn.Module:
    """The backbone, built for ``output_stride``: a ResNet dilates its last stages instead of striding (DeepLab:
    ``replace_stride_with_dilation``; 8 = layer3 and layer4 dilated); other models are cut in :func:`trunk_of`."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"model.output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    if name.startswith(("resnet", "resnext", "wide_resnet")) and output_stride < 32:
        dilate = [False, output_stride == 8, True]
        try:
            return build_backbone(name, weights, replace_stride_with_dilation=dilate)
        except NotImplementedError as exc:  # torchvision: "Dilation > 1 not supported in BasicBlock"
            raise ValueError(f"backbone {name!r} (basic blocks) cannot be dilated for output stride {output_stride}: "
                             f"use a bottleneck ResNet (resnet50, resnet101) or model.output_stride=32") from exc
    return build_backbone(name, weights)


def trunk_of(model: nn.Module, name: str, output_stride: int = 32) -> tuple[nn.Module, int]:
    """(the convolutional part of a torchvision classifier, its output channels): ``features`` for VGG, MobileNet,
    EfficientNet, ...; conv1..layer4 for ResNets; the suite's ``mini_vgg`` features. A ``features`` trunk whose
    own stride (VGG 32, ``mini_vgg`` 16) exceeds ``output_stride`` drops its last max-pooling layers, one per
    halving (VGG and ``mini_vgg`` stride only by max pools; the convolutions after them are not dilated, so their
    receptive field shrinks); one already at or below it is kept as it is."""
    if hasattr(model, "layer4") and hasattr(model, "conv1"):
        trunk = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                              model.layer1, model.layer2, model.layer3, model.layer4)
    elif isinstance(getattr(model, "features", None), nn.Module):
        trunk = model.features
        with torch.no_grad():
            native = 64 // trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[-1]    # VGG 32, mini_vgg 16
        drop = max(0, int(math.log2(native / output_stride)))
        if drop:
            layers = list(trunk.children())
            pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
            if len(pools) < drop:
                raise ValueError(f"backbone {name!r}: its features have {len(pools)} max pools, so output stride "
                                 f"{output_stride} cannot be reached by dropping them")
            keep = set(pools[-drop:])
            trunk = nn.Sequential(*[m for i, m in enumerate(layers) if i not in keep])
    else:
        raise ValueError(f"backbone {name!r}: no convolutional trunk found (supported: models with a `features` "
                         f"module, e.g. VGG / MobileNet / EfficientNet / mini_vgg, and ResNets)")
    with torch.no_grad():
        channels = trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
    trunk.train()  # a new network starts in training mode (eval() above only made the probe batch-norm safe)
    return trunk, int(channels)


class AttentionNet(nn.Module):
    """Images in [0, 1] (B, 3, H, W) -> ``class_maps`` (B, C, h, w); ``forward`` -> logits (B, C) (their mean)."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", weights: str | None = "imagenet",
                 output_stride: int = 32, class_pooling: str = "avg"):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_pooling not in POOLINGS:
            raise ValueError(f"model.class_pooling must be one of {POOLINGS}, got {class_pooling!r}")
        self.class_pooling = class_pooling
        self.trunk, channels = trunk_of(backbone_for(backbone, weights, output_stride), backbone, output_stride)
        self.channels = channels
        self.classifier = nn.Conv2d(channels, int(num_classes), kernel_size=1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk((images - self.mean) / self.std))

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
        x = images if s == 1.0 else F.interpolate(images, scale_factor=float(s), mode="bilinear",
                                                   align_corners=False, recompute_scale_factor=False)
        maps.append(net.class_maps(x))
    return fuse_attention(maps, size)
