"""Joint image + mask transforms (``torchvision.transforms.v2`` functional ops on ``tv_tensors``).

Input: an image ``uint8 (H, W, 3)`` numpy array (or ``(3, H, W)`` tensor), a binary mask ``(H, W)`` with values
{0, 1} and optionally an integer class mask ``(H, W)``. Output: ``image`` float32 (3, S, S) in [0, 1] (not
ImageNet-normalised), ``mask`` float32 (1, S, S) in {0, 1}, ``class_mask`` int64 (S, S).

* eval: resize to S x S (image bilinear with antialias, masks nearest). An input already S x S is left as is.
  ``size=None`` keeps every image at its native resolution (Cheng's Region Contrast and DCSP's testing run at
  native size); a batch of such images is collated as a list (``salseg.data.collate``).
* train: a random crop covering ``crop_scale`` of the image AREA with the image's own aspect ratio (relative
  aspect jitter ``crop_ratio``, default none), resized to S x S, then a horizontal flip with probability 0.5 when
  ``hflip``. With ``crop_scale: [0.9, 1.0]`` and ``hflip: true`` this is MEnet's augmentation. Randomness comes
  from the torch global RNG (seeded per DataLoader worker by torch / Lightning's ``seed_everything``).
* :func:`scale_flip_pad_crop`: DCSP's joint scale / mirror / pad / crop of an image and its cue (the authors'
  DeepLab readers), applied by the method itself to native-size batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

AUGMENT_KEYS = ("crop_scale", "crop_ratio", "hflip")


def to_image_tensor(image: Any) -> torch.Tensor:
    """uint8 (H, W, 3) / (H, W) numpy or a (3, H, W) tensor -> float32 (3, H, W) in [0, 1]."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        t = image
    else:
        raise TypeError(f"image must be a numpy array or tensor, got {type(image).__name__}")
    if t.dtype == torch.uint8:
        t = t.to(torch.float32).div_(255.0)
    else:
        t = t.to(torch.float32)
    return t


def _to_mask_tensor(mask: Any, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else torch.as_tensor(mask)
    if t.ndim == 2:
        t = t[None]
    return t.to(dtype)


class JointTransform:
    """Apply the same geometric transform to an image and its masks.

    Args:
        size: output side S (square output), or None for the native size (train: the crop is kept at its own
            size, not resized).
        train: random crop / flip when True, plain resize otherwise.
        crop_scale: (lo, hi) fraction of the image area kept by the random crop (train only); None = no crop.
        crop_ratio: (lo, hi) jitter of the crop's aspect ratio relative to the image's own (1 = same aspect).
        hflip: random horizontal flip (train only).
    """

    def __init__(
        self,
        size: int | None,
        train: bool = False,
        crop_scale: tuple[float, float] | None = None,
        crop_ratio: tuple[float, float] = (1.0, 1.0),
        hflip: bool = False,
    ):
        self.size = None if size is None else int(size)
        if self.size is not None and self.size < 1:
            raise ValueError(f"image size must be positive or null (native size), got {size}")
        self.train = bool(train)
        if crop_scale is not None:
            lo, hi = (float(v) for v in crop_scale)
            if not (0 < lo <= hi <= 1):
                raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {crop_scale}")
            crop_scale = (lo, hi)
        self.crop_scale = crop_scale
        rlo, rhi = (float(v) for v in crop_ratio)
        if not (0 < rlo <= rhi):
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {crop_ratio}")
        self.crop_ratio = (rlo, rhi)
        self.hflip = bool(hflip)
        self._resize = v2.Resize((self.size, self.size), antialias=True) if self.size is not None else None

    def __repr__(self) -> str:
        return (
            f"JointTransform(size={self.size}, train={self.train}, crop_scale={self.crop_scale}, "
            f"crop_ratio={self.crop_ratio}, hflip={self.hflip})"
        )

    def _crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        lo, hi = self.crop_scale
        area = float(torch.empty(1).uniform_(lo, hi))
        rlo, rhi = self.crop_ratio
        log_r = torch.empty(1).uniform_(math.log(rlo), math.log(rhi)) if rhi > rlo else torch.zeros(1)
        r = math.exp(float(log_r))
        ch = int(round(h * math.sqrt(area / r)))
        cw = int(round(w * math.sqrt(area * r)))
        ch, cw = max(1, min(h, ch)), max(1, min(w, cw))
        top = int(torch.randint(0, h - ch + 1, (1,)))
        left = int(torch.randint(0, w - cw + 1, (1,)))
        return top, left, ch, cw

    def __call__(self, image: Any, mask: Any | None = None, class_mask: Any | None = None) -> dict[str, torch.Tensor]:
        img = tv_tensors.Image(to_image_tensor(image))
        items: dict[str, Any] = {"image": img}
        if mask is not None:
            items["mask"] = tv_tensors.Mask(_to_mask_tensor(mask, torch.uint8))
        if class_mask is not None:
            items["class_mask"] = tv_tensors.Mask(_to_mask_tensor(class_mask, torch.int64))
        h, w = img.shape[-2:]
        for k, m in items.items():
            if m.shape[-2:] != (h, w):
                raise ValueError(f"{k} has size {tuple(m.shape[-2:])} but the image has {(h, w)}")

        if self.train and self.crop_scale is not None:
            top, left, ch, cw = self._crop_box(h, w)
            if self.size is None:
                items = {k: TF.crop(v, top, left, ch, cw) for k, v in items.items()}
            else:
                items = {
                    k: TF.resized_crop(v, top, left, ch, cw, [self.size, self.size], antialias=True)
                    for k, v in items.items()
                }
        elif self.size is not None and (h, w) != (self.size, self.size):
            items = self._resize(items)
        if self.train and self.hflip and bool(torch.rand(1) < 0.5):
            items = {k: TF.horizontal_flip(v) for k, v in items.items()}

        out: dict[str, torch.Tensor] = {"image": items["image"].as_subclass(torch.Tensor).clamp_(0.0, 1.0).contiguous()}
        if "mask" in items:
            out["mask"] = (items["mask"].as_subclass(torch.Tensor) > 0).to(torch.float32)
        if "class_mask" in items:
            out["class_mask"] = items["class_mask"].as_subclass(torch.Tensor)[0].to(torch.int64).contiguous()
        return out


def build_transform(size: int | None, train: bool, augment: Mapping[str, Any] | None = None) -> JointTransform:
    """The transform for a split: ``augment`` (``{crop_scale: [lo, hi], crop_ratio: [lo, hi], hflip: bool}``)
    applies only when ``train``; unknown keys are an error naming the accepted ones."""
    augment = dict(augment or {})
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"augment: unknown key(s) {unknown}; accepted keys: {list(AUGMENT_KEYS)}")
    if not train:
        return JointTransform(size, train=False)
    crop_scale = augment.get("crop_scale")
    crop_ratio = augment.get("crop_ratio") or (1.0, 1.0)
    return JointTransform(
        size,
        train=True,
        crop_scale=tuple(crop_scale) if crop_scale is not None else None,
        crop_ratio=tuple(crop_ratio),
        hflip=bool(augment.get("hflip", False)),
    )


def scale_flip_pad_crop(images: Sequence[torch.Tensor], cues: Sequence[torch.Tensor] | None,
                        crop_size: int | None, scale_range: Sequence[float], hflip: bool,
                        pad_value_image: Sequence[float], pad_label: int) -> tuple[list, list]:
    """DCSP's training augmentation, as the authors' DeepLab readers (paper 004; ``image_reader_segment.py``):
    images (each (3, H, W), any size) and their cues ((H, W) int), per image: a random scale s in ``scale_range``
    (size int(s H) x int(s W), image bilinear, cue nearest), a mirror with probability 1/2 (``hflip``), padding at
    the bottom and right to at least the crop (image: the colour ``pad_value_image``; cue: ``pad_label``), a
    random ``crop_size`` crop (None: the image's own size). Returns (images (1, 3, crop, crop), cues (1, crop,
    crop) int64, empty without cues). Random draws per image, in this order: the scale (when the range is not one
    value), the mirror (when ``hflip``), the crop's row and column; all from the torch global RNG."""
    # Hand-written: torchvision's RandomResizedCrop / RandomCrop draw differently and pad on other sides than the
    # authors' TF readers (truncated scaled size, mirror before the padding, bottom / right padding).
    lo, hi = scale_range
    out_i, out_c = [], []
    for k, img in enumerate(images):
        img = img[None].float()
        ch, cw = (int(crop_size),) * 2 if crop_size else tuple(img.shape[-2:])
        cue = cues[k][None, None].to(img.device).float() if cues is not None else None
        s = float(torch.empty(()).uniform_(lo, hi)) if hi > lo else float(lo)
        h, w = (max(1, int(d * s)) for d in img.shape[-2:])      # tf.to_int32: truncation
        if (h, w) != tuple(img.shape[-2:]):
            img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False)
            cue = F.interpolate(cue, size=(h, w), mode="nearest") if cue is not None else None
        if hflip and bool(torch.rand(()) < 0.5):                # mirrored before the padding, as the authors
            img = img.flip(-1)
            cue = cue.flip(-1) if cue is not None else None
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            fill = torch.tensor(list(pad_value_image), dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
            canvas = fill.expand(1, 3, h + ph, w + pw).clone()
            canvas[..., :h, :w] = img
            img = canvas
            cue = F.pad(cue, (0, pw, 0, ph), value=float(pad_label)) if cue is not None else None
        y = int(torch.randint(0, img.shape[-2] - ch + 1, ()))
        x = int(torch.randint(0, img.shape[-1] - cw + 1, ()))
        out_i.append(img[..., y : y + ch, x : x + cw])
        if cue is not None:
            out_c.append(cue[:, 0, y : y + ch, x : x + cw].long())
    return out_i, out_c
