"""One place that turns a backbone name into a network: a classifier (``build_backbone``: GD's CNN1 / CNN2 / CNN3) or
a convolutional trunk at an output stride (``build_trunk``: DCSP's attention and segmentation networks), with the
input normalisation its weights expect (``input_normalization``).

Names (``model.backbone``): a torchvision classification model (``resnet101``, ``vgg16``, ...), any timm model
(``tf_efficientnet_lite0``, ``convnext_tiny``, ...; ``timm/<name>`` picks timm where torchvision has the same
name), or the suite's small from-scratch ``mini_vgg``. Weights (``model.weights``): see :mod:`.weights`
(``lite0_imagenet``, ``imagenet``, ``imagenet_download``, a path, or null for none).
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from pathlib import Path

import torch
import torchvision
from torch import nn

from .mini_vgg import SUITE_BACKBONES, MiniVGG
from .weights import (
    DOWNLOAD,
    LITE0,
    LITE0_ARCHITECTURE,
    WeightsNotFound,
    load_lite0,
    load_state_file,
    timm_cached_file,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SUITE_BACKBONES", "MiniVGG", "WeightsNotFound", "build_backbone",
           "build_trunk", "hub_weights_file", "input_normalization", "library_of", "LITE0", "OUTPUT_STRIDES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_STRIDES = (8, 16, 32)


@lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def library_of(name: str) -> tuple[str, str]:
    """(``suite`` | ``torchvision`` | ``timm``, the name in that library); an unknown name lists close ones."""
    import timm

    if name in SUITE_BACKBONES:
        return "suite", name
    if name.startswith("timm/"):
        bare = name[len("timm/"):]
        if timm.is_model(bare):
            return "timm", bare
    elif name in _torchvision_names():
        return "torchvision", name
    elif timm.is_model(name):
        return "timm", name
    bare = name.removeprefix("timm/")
    pool = sorted(_torchvision_names()) + list(timm.list_models()) + list(SUITE_BACKBONES)
    close = difflib.get_close_matches(bare, pool, n=6, cutoff=0.6)
    suite = ", ".join(SUITE_BACKBONES)
    raise ValueError(f"unknown backbone {name!r}: neither torchvision, timm nor the suite's ({suite}) has it; "
                     f"close names: {', '.join(close) if close else 'none'}")


def input_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's weights expect of images in [0, 1]: timm's pretrained config (EfficientNet-Lite0:
    0.5 / 0.5, i.e. inputs in [-1, 1]); ImageNet's for torchvision models and the suite's."""
    library, bare = library_of(name)
    if library == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(bare)
        if cfg is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


def hub_weights_file(name: str) -> tuple[object, Path]:
    """(torchvision weights enum, where the torch hub cache keeps its file) for backbone ``name``."""
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ValueError(f"torchvision has no ImageNet weights for backbone {name!r}") from exc
    return weights, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def build_backbone(name: str, weights: str | None = "imagenet", **kwargs) -> nn.Module:
    """The classifier ``name`` (with its own head) and ``weights``. ``kwargs`` go to the library's builder (e.g.
    ``replace_stride_with_dilation`` for a torchvision ResNet, ``output_stride`` for a timm model)."""
    library, bare = library_of(name)
    if weights == LITE0 and bare != LITE0_ARCHITECTURE:
        raise ValueError(f"model.weights={LITE0} are EfficientNet-Lite0's (backbone {LITE0_ARCHITECTURE}), not weights "
                         f"for backbone {name!r}: set model.backbone={LITE0_ARCHITECTURE}, or other weights")
    if library == "suite":
        if weights in ("imagenet", DOWNLOAD):
            raise ValueError(f"backbone {name!r} is the suite's own small network: it has no ImageNet weights "
                             f"(model.weights: null trains it from scratch, or give a state dict path)")
        model = SUITE_BACKBONES[name](**kwargs)
    elif library == "torchvision":
        model = _torchvision(bare, weights, **kwargs)
        if weights in ("imagenet", DOWNLOAD):
            return model
    else:
        model = _timm(bare, weights, **kwargs)
        if weights in ("imagenet", DOWNLOAD):
            return model
    if weights == LITE0:
        load_lite0(model, name)
    elif weights is not None:
        load_state_file(model, Path(weights), name)
    return model


def _torchvision(name: str, weights: str | None, **kwargs) -> nn.Module:
    if weights not in ("imagenet", DOWNLOAD):
        return torchvision.models.get_model(name, weights=None, **kwargs)
    enum, path = hub_weights_file(name)
    if weights == "imagenet" and not path.is_file():
        raise WeightsNotFound(
            f"ImageNet weights for {name} are not in the torch hub cache: expected {path} (torchvision's "
            f"{Path(enum.url).name}). Copy the file there (no download happens unless model.weights={DOWNLOAD}), "
            f"give a state dict with model.weights=/path/to/{name}.pth, or set model.weights=null to train from "
            f"scratch")
    return torchvision.models.get_model(name, weights=enum, **kwargs)  # in the cache, or a download asked for


def _timm(name: str, weights: str | None, **kwargs) -> nn.Module:
    import timm

    if weights == DOWNLOAD:
        return timm.create_model(name, pretrained=True, **kwargs)
    if weights != "imagenet":
        return timm.create_model(name, pretrained=False, **kwargs)
    path, looked = timm_cached_file(name)
    if path is None:
        where = "; ".join(looked) if looked else "timm has no pretrained weights for it"
        raise WeightsNotFound(
            f"ImageNet weights for timm's {name} are not cached (looked in: {where}). Put the file there, give a "
            f"state dict with model.weights=/path/to/{name}.pth, set model.weights={DOWNLOAD} to let timm download "
            f"it once" + (f", use model.weights={LITE0} (installed with the suite)" if name == LITE0_ARCHITECTURE
                          else "") + ", or set model.weights=null to train from scratch")
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)


# --------------------------------------------------------------------------------------------------------- trunks
class TimmTrunk(nn.Module):
    """A timm classifier without its head: ``forward_features`` (the last feature map before pooling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model.reset_classifier(0)  # the unused head would be an unused parameter under DDP
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def build_trunk(name: str, weights: str | None, output_stride: int = 32, method: str = "the method"
                ) -> tuple[nn.Module, int]:
    """(the convolutional trunk of backbone ``name`` at ``output_stride``, its output channels), for ``method``
    (named in errors). ResNets (torchvision or timm) and timm's EfficientNets / MobileNets dilate their last stages
    instead of striding (DeepLab); VGG-like ``features`` trunks (VGG, ``mini_vgg``) drop max pools. A backbone
    that cannot reach the stride is an error naming the method and the stride."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"model.output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    library, bare = library_of(name)
    cannot = (f"{method}: backbone {name!r} cannot give output stride {output_stride}; use a backbone that can "
              f"(a ResNet-50/101, tf_efficientnet_lite0, ...) or model.output_stride=32")
    if library == "timm":
        try:
            model = build_backbone(name, weights, **({"output_stride": output_stride} if output_stride != 32 else {}))
        except (TypeError, AssertionError, ValueError) as exc:
            if isinstance(exc, ValueError) and "output_stride" not in str(exc):
                raise
            raise ValueError(cannot) from exc
        trunk = TimmTrunk(model)
    else:
        trunk = _torchvision_trunk(name, weights, output_stride, cannot)
    with torch.no_grad():
        probe = trunk.eval()(torch.zeros(1, 3, 64, 64))
    trunk.train()  # a new network starts in training mode (eval() above only made the probe batch-norm safe)
    # timm must give the stride asked for; a features trunk natively finer than it (mini_vgg: 16) is kept as it is
    stride = 64 // probe.shape[-1] if probe.ndim == 4 else 0
    if stride == 0 or stride > output_stride or (library == "timm" and stride != output_stride):
        raise ValueError(cannot)
    return trunk, int(probe.shape[1])


def _torchvision_trunk(name: str, weights: str | None, output_stride: int, cannot: str) -> nn.Module:
    """conv1..layer4 for ResNets (dilated below stride 32); ``features`` for VGG / MobileNet / EfficientNet / the
    suite's ``mini_vgg``. A ``features`` trunk whose own stride (VGG 32, ``mini_vgg`` 16) exceeds ``output_stride``
    drops its last max-pooling layers, one per halving (VGG and ``mini_vgg`` stride only by max pools; the
    convolutions after them are not dilated, so their receptive field shrinks); one at or below it is kept."""
    if name.startswith(("resnet", "resnext", "wide_resnet")) and output_stride < 32:
        try:
            model = build_backbone(name, weights, replace_stride_with_dilation=[False, output_stride == 8, True])
        except NotImplementedError as exc:  # torchvision: "Dilation > 1 not supported in BasicBlock"
            raise ValueError(f"{cannot} (basic-block ResNets cannot be dilated)") from exc
    else:
        model = build_backbone(name, weights)
    if hasattr(model, "layer4") and hasattr(model, "conv1"):
        return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                             model.layer1, model.layer2, model.layer3, model.layer4)
    if not isinstance(getattr(model, "features", None), nn.Module):
        raise ValueError(f"backbone {name!r}: no convolutional trunk found (supported: models with a `features` "
                         f"module, e.g. VGG / MobileNet / EfficientNet / mini_vgg, ResNets, and timm models)")
    trunk = model.features
    with torch.no_grad():
        native = 64 // trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[-1]  # VGG 32, mini_vgg 16
    drop = max(0, int(math.log2(native / output_stride)))
    if drop:
        layers = list(trunk.children())
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        if len(pools) < drop:
            raise ValueError(f"{cannot} (its features have {len(pools)} max pools to drop)")
        keep = set(pools[-drop:])
        trunk = nn.Sequential(*[m for i, m in enumerate(layers) if i not in keep])
    return trunk
