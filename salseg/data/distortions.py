"""Test-time distortions of the network input (MEnet's robustness study): AWGN and JPEG re-compression.

They act on the DECODED DATASET IMAGE at its native resolution, before any resize or crop (paper 003 Sec. IV-D
distorts the test images themselves, so a variance of 0.01 is 0.01 at native size), never on the ground truth:
datasets call :meth:`Distortion.native` on the decoded image and hand the result to their transform. The functions
take float images in [0, 1], (3, H, W) or (B, 3, H, W).
A spec is ``{kind: awgn, variance: 0.01}`` / ``{kind: awgn, variance: [0.0, 0.05]}`` or ``{kind: jpeg, quality: 30}``
/ ``{kind: jpeg, quality: [10, 90]}``. A range draws a strength per image from ``numpy.random.default_rng([seed,
index])`` (uniform; JPEG qualities are integers, both ends included), and AWGN's noise comes from the same seeded
stream, so a run is reproducible image by image whatever the batch order or the number of processes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

KINDS = {"awgn": "variance", "jpeg": "quality"}


def awgn(image: torch.Tensor, variance: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add white Gaussian noise of the given VARIANCE (on the [0, 1] scale) and clip to [0, 1]."""
    if variance < 0:
        raise ValueError(f"awgn variance must be >= 0, got {variance}")
    if variance == 0:
        return image.clone()
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32, device="cpu")
    noise = noise.to(device=image.device, dtype=image.dtype if image.is_floating_point() else torch.float32)
    return (image + noise * math.sqrt(variance)).clamp(0.0, 1.0)


def _jpeg_one(img: torch.Tensor, quality: int) -> torch.Tensor:
    u8 = (img.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().contiguous()
    try:
        from torchvision.io import decode_jpeg, encode_jpeg

        out = decode_jpeg(encode_jpeg(u8, quality=int(quality)))
    except (RuntimeError, ImportError):  # pragma: no cover - torchvision built without libjpeg
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(u8.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
    return out.to(device=img.device, dtype=torch.float32).div_(255.0)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-encode as JPEG at ``quality`` (1..100, libjpeg scale) and decode back; float [0, 1] in and out."""
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {quality}")
    if image.ndim == 3:
        return _jpeg_one(image, quality).to(image.dtype)
    if image.ndim == 4:
        return torch.stack([_jpeg_one(im, quality) for im in image]).to(image.dtype)
    raise ValueError(f"jpeg expects (3,H,W) or (B,3,H,W), got shape {tuple(image.shape)}")


class Distortion:
    """A seeded test-time distortion: ``d(image, index)``; ``d.strength(index)`` gives that image's strength."""

    def __init__(self, kind: str, strength: float | int | tuple | list, seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"unknown distortion kind {kind!r}; known: {sorted(KINDS)}")
        self.kind = kind
        self.seed = int(seed)
        if isinstance(strength, (list, tuple)):
            if len(strength) != 2:
                raise ValueError(f"{kind} {KINDS[kind]} range must be [lo, hi], got {strength}")
            lo, hi = strength
            if lo > hi:
                raise ValueError(f"{kind} {KINDS[kind]} range must have lo <= hi, got {strength}")
            self.range: tuple[float, float] | None = (lo, hi)
            self.fixed = None
            check = (lo, hi)
        else:
            self.range = None
            self.fixed = strength
            check = (strength,)
        for v in check:
            if kind == "awgn" and not float(v) >= 0:
                raise ValueError(f"awgn variance must be >= 0, got {strength}")
            if kind == "jpeg" and not (1 <= int(v) <= 100 and float(v) == int(v)):
                raise ValueError(f"jpeg quality must be an integer in 1..100, got {strength}")

    def __repr__(self) -> str:
        s = self.fixed if self.range is None else list(self.range)
        return f"Distortion({self.kind}, {KINDS[self.kind]}={s}, seed={self.seed})"

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), 7 if self.kind == "awgn" else 11])

    def strength(self, index: int) -> float | int:
        if self.range is None:
            return int(self.fixed) if self.kind == "jpeg" else float(self.fixed)
        rng = self._rng(index)
        lo, hi = self.range
        if self.kind == "jpeg":
            return int(rng.integers(int(lo), int(hi) + 1))
        return float(rng.uniform(float(lo), float(hi)))

    def native(self, image: Any, index: int) -> torch.Tensor:
        """Distort a decoded dataset image (uint8 (H, W, 3) numpy or float (3, H, W)) at its native size, before
        any transform: float32 (3, H, W) in [0, 1] out, ready for the joint transform."""
        from .transforms import to_image_tensor

        return self(to_image_tensor(image), index)

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        rng = self._rng(index)
        if self.kind == "awgn":
            var = self.strength(index)
            rng.uniform()  # the range draw (kept so noise never depends on whether a range was given)
            g = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
            return awgn(image, var, generator=g)
        return jpeg(image, self.strength(index))


def build_distortion(spec: Mapping[str, Any] | None, seed: int = 0) -> Distortion | None:
    """``{kind: awgn, variance: v|[lo, hi]}`` or ``{kind: jpeg, quality: q|[lo, hi]}`` -> :class:`Distortion`;
    None, ``{}`` or ``{kind: none}`` -> None. Unknown keys are an error naming the accepted ones."""
    if spec is None:
        return None
    spec = dict(spec)
    if not spec or spec.get("kind") in (None, "none") and len(spec) <= 1:
        return None
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"distortion: unknown kind {kind!r}; known: {sorted(KINDS)} (or none)")
    key = KINDS[kind]
    if key not in spec:
        raise ValueError(f"distortion {kind}: missing {key!r} (a value or a [lo, hi] range)")
    strength = spec.pop(key)
    if spec:
        raise ValueError(f"distortion {kind}: unknown key(s) {sorted(spec)}; accepted keys: ['kind', {key!r}]")
    if not isinstance(strength, (int, float)):
        strength = list(strength)
    return Distortion(kind, strength, seed=seed)
