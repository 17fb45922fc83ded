"""The class-agnostic saliency model of DCSP's cues: any saliency method of this suite, loaded from a checkpoint.

The checkpoint is read (``weights_only=True``) and its model built by :mod:`salseg.checkpoints`, which also tells
its model kind (the ``salseg_model`` stamp, or an older run's ``config.yaml``).
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
from salseg.checkpoints import CheckpointError, build_from_checkpoint, checkpoint_kind, read_checkpoint

SALIENCY_KINDS = ("menet", "gd_saliency", "region_contrast")


KEY = "model.saliency_checkpoint"
EXPECTED = (f"a salseg checkpoint of a saliency model: {', '.join(SALIENCY_KINDS)}, e.g. "
            f"runs/menet_shapes/<timestamp>/checkpoints/last.ckpt")


class SaliencyCheckpointError(CheckpointError):
    pass


class SaliencySource:
    """``source(images)``: (B, 3, H, W) in [0, 1] -> (B, 1, H, W) saliency in [0, 1] from the checkpoint's model."""

    def __init__(self, checkpoint: str | Path, device: torch.device | str = "cpu"):
        self.path = Path(str(checkpoint)).expanduser()
        try:  # one reader (salseg.checkpoints: weights_only=True), its errors under DCSP's own class
            ckpt = read_checkpoint(self.path, KEY, EXPECTED)
            self.kind = checkpoint_kind(self.path, ckpt, KEY)
        except CheckpointError as err:
            raise SaliencyCheckpointError(str(err)) from err
        if self.kind not in SALIENCY_KINDS:
            raise SaliencyCheckpointError(
                f"{KEY} {self.path} holds a {self.kind!r} model, which makes no saliency map; "
                f"DCSP needs a saliency model: one of {', '.join(SALIENCY_KINDS)}")
        self.model = build_from_checkpoint(registry.model_class(self.kind), self.path, ckpt=ckpt)
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
