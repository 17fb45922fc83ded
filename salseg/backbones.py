"""Backbones by name, shared by the methods: any torchvision classification model, with ImageNet weights read from
the torch hub cache (never downloaded: a missing file is an error that names where to put it), a state dict at a
path, or none (from scratch); and the suite's small from-scratch networks (``SUITE_BACKBONES``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFound(FileNotFoundError):
    pass


def hub_weights_file(name: str) -> tuple[object, Path]:
    """(torchvision weights enum, where the torch hub cache keeps its file) for backbone ``name``."""
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ValueError(f"torchvision has no ImageNet weights for backbone {name!r}") from exc
    return weights, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


class MiniVGG(nn.Module):
    """``mini_vgg``: a small VGG-style classifier for the 64 px embedded dataset, trained from scratch on a CPU.

    Why not a torchvision model: the papers fine-tune an ImageNet VGG, and nothing pretrained is available offline.
    From scratch, on shapes at 64 px, ResNet-18 stayed at chance (25-35 % top-1 on 4 classes) after 1,500 steps
    (Adam 1e-3, fresh images), MobileNet-V3 likewise, and torchvision's VGGs carry a 25,088 x 4,096 layer too large
    for a CPU minute. Four blocks of 3x3 conv + batch norm + ReLU + 2x2 max pooling, as VGG's, then a global MAX
    pool (an object anywhere in the image fires its detector; a global average dilutes a small object in the
    clutter: in the same 800 steps, max pooling reached 47 % validation top-1 and average pooling 32 %) and one
    linear layer, the one CNN1 / CNN2 / CNN3 replace. About 0.3 M parameters at the default widths."""

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


def build_backbone(name: str, weights: str | None = "imagenet", **kwargs) -> nn.Module:
    """A torchvision classifier with ImageNet weights from the hub cache, a state dict at a path, or none; or one
    of the suite's small from-scratch backbones (``SUITE_BACKBONES``). ``kwargs`` go to the torchvision builder
    (e.g. ``replace_stride_with_dilation`` for a ResNet)."""
    known = torchvision.models.list_models(module=torchvision.models)
    if name in SUITE_BACKBONES:
        if weights == "imagenet":
            raise ValueError(f"backbone {name!r} is the suite's own small network: it has no ImageNet weights "
                             f"(model.weights: null trains it from scratch, or give a state dict path)")
        model = SUITE_BACKBONES[name](**kwargs)
        if weights is not None:
            _load_state(model, Path(weights), name)
        return model
    if name not in known:
        raise ValueError(f"unknown backbone {name!r}; torchvision classification models: {', '.join(sorted(known))}"
                         f"; the suite's: {', '.join(SUITE_BACKBONES)}")
    if weights is None:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    if weights == "imagenet":
        enum, path = hub_weights_file(name)
        if not path.is_file():
            raise WeightsNotFound(
                f"ImageNet weights for {name} are not in the torch hub cache: expected {path} (torchvision's "
                f"{Path(enum.url).name}). Copy the file there (no download happens at run time), give a state dict "
                f"with model.weights=/path/to/{name}.pth, or set model.weights=null to train from scratch")
        return torchvision.models.get_model(name, weights=enum, **kwargs)  # found in the cache: no network
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    _load_state(model, Path(weights), name)
    return model


def _load_state(model: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise WeightsNotFound(f"model.weights: no file {path} (a state dict of {name})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"model.weights {path} does not fit {name}: {str(exc)[:500]}") from exc
