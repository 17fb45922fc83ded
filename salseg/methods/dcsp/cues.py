"""DCSP's training cues (paper 004; the method as the authors' code makes it concrete: README "DCSP").

Training sees image-level labels only. The cues are the pixel labels the segmentation network is trained on:

* ``hierarchical_saliency``: class-agnostic saliency in passes (the authors' ``gen_saliency_voc.py``). Run a
  salient-object model; replace the pixels whose saliency is >= 0.7 by the fixed mean colour (the authors' IMG_MEAN,
  :data:`AUTHORS_MEAN`) and run it again, so an object the first pass missed can now stand out; keep the pixel-wise
  maximum of the passes. The authors run TWO passes (their 0.8 mask is made after the last pass and never used);
  ``passes=3`` hides the running maximum's pixels >= 0.8 as well (cumulatively) and runs once more, and
  ``fill="image_mean"`` hides with each image's own mean colour (the suite's former behaviour, three passes).
* ``fuse_attention``: class attention maps from several input scales ({1, 0.75, 0.5}), resized to the first
  scale's map, max-fused over the scales, upsampled to the image and min-max normalised per class (the authors'
  ``get_localization.py``).
* ``make_cues``: per pixel and present class the harmonic mean of attention and saliency,
  H_c = 2 A_c S / (A_c + S); background (0) where the best H over the present classes is below 0.4, else the
  present class with the best H (as c + 1, so 0 stays background). Absent classes never win.

``make_cues(source=...)`` also makes the ablation's one-sided cues: ``attention`` (the best present-class attention
A_c alone, background below the same threshold) and ``saliency`` (S alone: a salient pixel of an image with ONE
present class is that class; with several classes saliency cannot tell them apart, so their salient pixels are
``IGNORE`` (255, not trained on), and the background is the non-salient pixels of every image).
``adapted_cues``: the adapt round's cues, the segmentation network's own multi-scale scores restricted to the
background and the image's present classes, arg-maxed (the authors' ``get_localization`` with ``adapt``).

Bad input: an image whose labels name no class has no cue to make (``ValueError``, naming the image); a class
present in the labels whose attention is empty (all zero after fusion) gets H = 0 everywhere, so it never wins a
pixel: ``make_cues`` reports those (image, class) pairs in ``CueResult.silent`` rather than failing, since an
image-level label without any attention is a normal early-training event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from salseg.maps import minmax_normalize

BACKGROUND = 0
IGNORE = 255
SOURCES = ("both", "attention", "saliency")
HIDE_FILLS = ("dataset_mean", "image_mean")
# The authors' IMG_MEAN, (R, G, B) = (122.679, 116.669, 104.007) on 0..255 (gen_saliency_voc.py writes it into
# caffe's RGB [0, 1] image as IMG_MEAN / 255; their DeepLab readers subtract the same values from BGR images), on the
# suite's RGB [0, 1] scale: the hiding colour of the saliency passes and the padding colour of the training crops.
AUTHORS_MEAN = (122.67891434 / 255, 116.66876762 / 255, 104.00698793 / 255)


def hierarchical_saliency(saliency_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                          thresholds: Sequence[float] = (0.7, 0.8), passes: int = 2, fill: str = "dataset_mean",
                          mean: Sequence[float] = AUTHORS_MEAN) -> torch.Tensor:
    """The pixel-wise maximum over ``passes`` runs of ``saliency_fn`` ((B, 3, H, W) in [0, 1] -> (B, 1, H, W) in
    [0, 1]). Before run k + 1 the pixels whose running maximum is >= ``thresholds[k - 1]`` are hidden (they stay
    hidden in later runs, as the authors overwrite the image itself) by ``fill``: ``dataset_mean`` = the fixed RGB
    colour ``mean`` (the authors' IMG_MEAN / 255), ``image_mean`` = each image's own mean colour."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if fill not in HIDE_FILLS:
        raise ValueError(f"model.hide_fill must be one of {HIDE_FILLS}, got {fill!r}")
    if int(passes) < 1 or len(thresholds) < int(passes) - 1:
        raise ValueError(f"model.saliency_passes={passes} needs >= 1 pass and one threshold per extra pass in "
                         f"model.saliency_thresholds, got {list(thresholds)}")
    if fill == "image_mean":
        colour = images.mean(dim=(2, 3), keepdim=True)
    else:
        colour = torch.as_tensor(list(mean), dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    current = _check_saliency(saliency_fn(images), images)
    hidden = torch.zeros_like(current, dtype=torch.bool)
    for t in list(thresholds)[: int(passes) - 1]:
        hidden |= current >= float(t)                # >= as the authors' ``msk[msk >= th]``
        shown = torch.where(hidden, colour, images)  # (B,1,H,W) condition broadcasts over RGB
        current = torch.maximum(current, _check_saliency(saliency_fn(shown), images))
    return current


def _check_saliency(s: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    want = (images.shape[0], 1, *images.shape[2:])
    if tuple(s.shape) != want:
        raise ValueError(f"the saliency model must return (B, 1, H, W) = {want} maps, got {tuple(s.shape)}")
    return s


def at_scale(images: torch.Tensor, scale: float) -> torch.Tensor:
    """The images resized by ``scale`` (bilinear, half-pixel centres; 1.0 = the images themselves): the input of
    one scale of the authors' multi-scale attention, adapt step and test."""
    if scale == 1.0:
        return images
    return F.interpolate(images, scale_factor=float(scale), mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)


def fuse_attention(per_scale: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Class maps from several scales, each (B, C, h_s, w_s), -> (B, C, H, W): each resized bilinearly to the first
    scale's map, max over the scales, bilinear to ``size``, then min-max normalised per image and class into [0, 1]
    (a constant map becomes 0); the authors' ``get_localization.py`` in this order."""
    if not per_scale:
        raise ValueError("fuse_attention needs the class maps of at least one scale")
    shapes = {tuple(m.shape[:2]) for m in per_scale}
    if len(shapes) != 1:
        raise ValueError(f"every scale must give (B, C, h, w) maps with the same B and C, got {sorted(shapes)}")
    fused = F.interpolate(fuse_scales(per_scale), size=size, mode="bilinear", align_corners=False)
    return minmax_normalize(fused, 2, floor=1e-12)


def fuse_scales(per_scale: Sequence[torch.Tensor]) -> torch.Tensor:
    """The maximum over scales of (B, C, h_s, w_s) maps, each resized bilinearly to the first one's size (the
    authors' attention, adapt and test fusion: ``tf.reduce_max`` of the maps resized to the 1.0 scale's output)."""
    ref = tuple(per_scale[0].shape[-2:])
    return torch.stack([m.float() if tuple(m.shape[-2:]) == ref else
                        F.interpolate(m.float(), size=ref, mode="bilinear", align_corners=False)
                        for m in per_scale]).amax(0)


@dataclass
class CueResult:
    cues: torch.Tensor  # (B, H, W) int64: 0 background, c + 1 for class c
    score: torch.Tensor  # (B, H, W) float: the best harmonic mean at each pixel
    silent: list[tuple[int, int]]  # (image, class) pairs present in the labels with all-zero attention


def make_cues(attention: torch.Tensor, saliency: torch.Tensor, labels: torch.Tensor,
              background_threshold: float = 0.4, names: Sequence[str] | None = None,
              source: str = "both") -> CueResult:
    """Cues from attention (B, C, H, W) in [0, 1], saliency (B, 1, H, W) in [0, 1] and multi-hot labels (B, C);
    ``source``: ``both`` (the paper's harmonic mean), ``attention`` or ``saliency`` alone (module docstring)."""
    if source not in SOURCES:
        raise ValueError(f"cue source must be one of {SOURCES}, got {source!r}")
    if attention.ndim != 4 or saliency.ndim != 4 or saliency.shape[1] != 1:
        raise ValueError(f"attention must be (B, C, H, W) and saliency (B, 1, H, W), got "
                         f"{tuple(attention.shape)} and {tuple(saliency.shape)}")
    if attention.shape[0] != saliency.shape[0] or attention.shape[2:] != saliency.shape[2:]:
        raise ValueError(f"attention {tuple(attention.shape)} and saliency {tuple(saliency.shape)} differ in batch "
                         f"or size")
    if tuple(labels.shape) != tuple(attention.shape[:2]):
        raise ValueError(f"labels must be (B, C) = {tuple(attention.shape[:2])}, got {tuple(labels.shape)}")
    present = labels > 0.5
    empty = (~present.any(1)).nonzero().ravel().tolist()
    if empty:
        which = [names[i] if names is not None else f"batch index {i}" for i in empty]
        raise ValueError(f"no present class in the image-level labels of {which}: DCSP makes cues only for "
                         f"images with at least one class")
    a, s = attention.float(), saliency.float()
    silent = [(int(b), int(c)) for b, c in (present & (attention.flatten(2).amax(2) <= 0)).nonzero().tolist()]
    if source == "saliency":
        single = present.sum(1) == 1                                       # (B,)
        salient = s[:, 0] >= background_threshold                          # (B, H, W)
        only = present.float().argmax(1)                                   # the class of a one-class image
        fg = torch.where(single[:, None, None], (only + 1)[:, None, None].expand_as(salient),
                         torch.full_like(salient, IGNORE, dtype=torch.long))
        cues = torch.where(salient, fg, torch.full_like(fg, BACKGROUND))
        return CueResult(cues=cues.long(), score=s[:, 0], silent=[])
    harmonic = a if source == "attention" else 2 * a * s / (a + s).clamp_min(1e-12)  # (B, C, H, W)
    harmonic = torch.where(present[:, :, None, None], harmonic, torch.full_like(harmonic, -1.0))
    score, best = harmonic.max(dim=1)
    cues = torch.where(score >= background_threshold, best + 1, torch.full_like(best, BACKGROUND))
    return CueResult(cues=cues.long(), score=score.clamp_min(0.0), silent=silent)


def adapted_cues(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The adapt round's cues (B, H, W) int64: the arg-max of segmentation scores (B, 1 + C, H, W) over the
    background and the classes present in the multi-hot ``labels`` (B, C); absent classes never win."""
    if scores.ndim != 4 or tuple(labels.shape) != (scores.shape[0], scores.shape[1] - 1):
        raise ValueError(f"scores must be (B, 1 + C, H, W) and labels (B, C); got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    allowed = torch.cat([torch.ones_like(labels[:, :1], dtype=torch.bool), labels > 0.5], dim=1)
    masked = torch.where(allowed[:, :, None, None], scores.float(), torch.full_like(scores.float(), float("-inf")))
    return masked.argmax(1)
