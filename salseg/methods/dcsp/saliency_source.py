"""The class-agnostic saliency model of DCSP's cues: any saliency method of this suite, loaded from a checkpoint.

A salseg checkpoint names its model kind (the runner stamps ``salseg_model`` into every checkpoint; an older one
is recognised by the ``config.yaml`` of its run directory, ``<run>/checkpoints/last.ckpt`` -> ``<run>/config.yaml``).
Only saliency methods qualify (:data:`SALIENCY_KINDS`): a DCSP or GD-classifier checkpoint, a file that is not a
Lightning checkpoint or a missing file is an error that names the file and what was expected. The model's
primary test map is its saliency (the contract of the evaluation callback); images are resized to the model's
own ``image_size`` when it has one (MEnet is built for one input side) and the map back to the images' size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from salseg import registry
from salseg.errors import SalsegError

SALIENCY_KINDS = ("menet", "gd_saliency", "region_contrast")


class SaliencyCheckpointError(SalsegError, ValueError):
    pass


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path`` (a path from config), read with ``weights_only=True``: tensors, containers and
    primitives only, so a crafted pickle cannot run code; anything else is a :class:`SaliencyCheckpointError`."""
    if not path.is_file():
        raise SaliencyCheckpointError(f"model.saliency_checkpoint: no file {path} (expected a salseg checkpoint of "
                                      f"a saliency model: {', '.join(SALIENCY_KINDS)}, e.g. runs/menet_shapes/"
                                      f"<timestamp>/checkpoints/last.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SaliencyCheckpointError(f"model.saliency_checkpoint {path} is not a readable PyTorch checkpoint of "
                                      f"weights only ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise SaliencyCheckpointError(f"model.saliency_checkpoint {path} is not a Lightning checkpoint (no "
                                      f"state_dict): expected the last.ckpt of a salseg saliency run")
    return ckpt


def checkpoint_kind(path: Path, ckpt: dict | None = None) -> str:
    """The model kind of a salseg checkpoint (see the module docstring); ``ckpt``: the already read checkpoint."""
    if ckpt is None:
        ckpt = read_checkpoint(path)
    kind = ckpt.get("salseg_model")
    if kind is None:
        config = path.parent.parent / "config.yaml"
        if config.is_file():
            from omegaconf import OmegaConf

            kind = OmegaConf.select(OmegaConf.load(config), "model.kind")
    if kind is None:
        raise SaliencyCheckpointError(f"model.saliency_checkpoint {path}: cannot tell which model it holds (no "
                                      f"salseg_model entry and no run config.yaml beside it)")
    return str(kind)


class SaliencySource:
    """``source(images)``: (B, 3, H, W) in [0, 1] -> (B, 1, H, W) saliency in [0, 1] from the checkpoint's model."""

    def __init__(self, checkpoint: str | Path, device: torch.device | str = "cpu"):
        self.path = Path(str(checkpoint)).expanduser()
        ckpt = read_checkpoint(self.path)
        self.kind = checkpoint_kind(self.path, ckpt)
        if self.kind not in SALIENCY_KINDS:
            raise SaliencyCheckpointError(
                f"model.saliency_checkpoint {self.path} holds a {self.kind!r} model, which makes no saliency map; "
                f"DCSP needs a saliency model: one of {', '.join(SALIENCY_KINDS)}")
        # built from the checkpoint read above rather than by ``load_from_checkpoint``, which unpickles the file
        # again with whatever ``weights_only`` default the installed Lightning/torch pair has (False before torch 2.6)
        self.model = registry.model_class(self.kind)(**ckpt.get("hyper_parameters", {}))
        self.model.on_load_checkpoint(ckpt)
        self.model.load_state_dict(ckpt["state_dict"])
        self.model.to(device).eval()
        self.model.requires_grad_(False)
        size = getattr(self.model.hparams, "image_size", None)
        self.size = int(size) if size else None

    def to(self, device) -> SaliencySource:
        self.model.to(device)
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        x = images
        if self.size and (h, w) != (self.size, self.size):
            x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)
        # GD saliency differentiates its input itself (it enables gradients inside); the others need none
        with torch.set_grad_enabled(self.kind == "gd_saliency"):
            maps = self.model.test_step({"image": x.clamp(0, 1), "name": [f"image{i}" for i in range(len(x))]}, 0)
        s = next(iter(maps.values())).detach().float()
        if s.shape[-2:] != (h, w):
            s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
        return s.clamp(0, 1)
