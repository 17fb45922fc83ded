"""Refinement of raw GD saliency maps (paper 001 Secs. 3.2-3.3; paper 002 Sec. 3.2). Per image, on the CPU:
SLIC and colour conversion are scikit-image's; what is written here is only the arithmetic the papers define.

* ``superpixel_mean`` (001 Eq. 4): every pixel takes the mean saliency of its SLIC superpixel (100 segments,
  compactness 10 in the paper).
* ``global_color_contrast`` (001 Eq. 5): GC_i = sum_j ||C_i - C_j||_2 over the superpixels, C_i the mean L*a*b*
  colour of superpixel i; as a pixel map, min-max normalised to [0, 1].
* ``refine`` (001 Algorithm 1): smoothed * low-level, the low-level map scaled into [alpha, 1 + alpha], then
  pruned and renormalised. Two recipes (``recipe``):
  - ``authors`` (default; the authors' code, DESIGN 6.1): prune the raw map below 1.3 x its Otsu threshold
    (capped at the map's max), superpixel mean, multiply by (contrast + 0.2), scale x1.7, clip to 1, zero below 0.2;
  - ``paper``: S = max(S - theta, 0) on the [0, 1] map, superpixel mean, x (alpha + contrast), prune by theta,
    rescale to [0, 1].
  In both the smoothed map is rescaled to [0, 1] before the product, so the constants act on a fixed scale.
* ``morphological_smooth`` (002 Sec. 3.2, "a simple image dilation and erosion"): grey dilation then erosion
  (a closing) with a disk; the radius is not given in the paper: 2 % of the shorter side by default.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color, filters, morphology, segmentation

RECIPES = ("authors", "paper")


def _hw3(image) -> np.ndarray:
    """(H, W, 3) float64 RGB in [0, 1] from a (3, H, W) / (H, W, 3) tensor or array (float [0, 1] or uint8)."""
    x = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected an RGB image (3, H, W) or (H, W, 3), got shape {x.shape}")
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return np.repeat(x, 3, -1) if x.shape[-1] == 1 else x


def _hw(saliency) -> np.ndarray:
    s = saliency.detach().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    s = np.squeeze(s)
    if s.ndim != 2:
        raise ValueError(f"expected one saliency map (H, W), got shape {np.shape(saliency)}")
    return s.astype(np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def slic_superpixels(image, n_segments: int = 100, compactness: float = 10.0) -> np.ndarray:
    """SLIC labels (H, W), 0..K-1 (scikit-image; it clusters in L*a*b*)."""
    return segmentation.slic(_hw3(image), n_segments=n_segments, compactness=compactness, start_label=0,
                             channel_axis=-1)


def superpixel_mean(saliency, labels: np.ndarray) -> np.ndarray:
    """Eq. 4: each pixel gets the mean of ``saliency`` over its superpixel."""
    s = _hw(saliency)
    if labels.shape != s.shape:
        raise ValueError(f"superpixel labels {labels.shape} and saliency {s.shape} differ in size")
    flat = labels.ravel()
    sums = np.bincount(flat, weights=s.ravel())
    counts = np.bincount(flat)
    return (sums / np.maximum(counts, 1))[labels]


def global_color_contrast(image, labels: np.ndarray) -> np.ndarray:
    """Eq. 5 as a pixel map in [0, 1]: GC_i = sum_j ||C_i - C_j||_2, C = mean L*a*b* colour per superpixel."""
    lab = color.rgb2lab(_hw3(image)).reshape(-1, 3)
    flat = labels.ravel()
    counts = np.maximum(np.bincount(flat), 1)
    means = np.stack([np.bincount(flat, weights=lab[:, c]) / counts for c in range(3)], 1)  # (K, 3)
    present = np.bincount(flat) > 0
    dist = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1) * present[None, :]
    return _unit(dist.sum(1))[labels]


def morphological_smooth(saliency, radius: int | None = None) -> np.ndarray:
    """Paper 002: dilation then erosion (grey closing) with a disk of ``radius`` (default 2 % of min(H, W))."""
    s = _hw(saliency)
    r = max(1, round(0.02 * min(s.shape))) if radius is None else int(radius)
    footprint = morphology.disk(r)
    return morphology.erosion(morphology.dilation(s, footprint), footprint)


def refine(saliency, image, *, recipe: str = "authors", n_segments: int = 100, compactness: float = 10.0,
           alpha: float = 0.2, theta: float = 0.2, otsu_factor: float = 1.3, gain: float = 1.7,
           labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Paper 001's smoothing and low-level refinement of one raw map. Returns every stage, each (H, W) in [0, 1]:
    ``smoothed`` (superpixel mean of the pruned map), ``lowlevel`` (the contrast map in [0, 1]) and ``refined``."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    s = _unit(_hw(saliency))
    rgb = _hw3(image)
    if rgb.shape[:2] != s.shape:
        raise ValueError(f"saliency {s.shape} and image {rgb.shape[:2]} differ in size; resize the map first")
    labels = slic_superpixels(rgb, n_segments, compactness) if labels is None else labels
    contrast = global_color_contrast(rgb, labels)
    if recipe == "authors":
        t = min(otsu_factor * filters.threshold_otsu(s), s.max()) if s.max() > s.min() else s.max()
        smoothed = _unit(superpixel_mean(np.where(s >= t, s, 0.0), labels))
        refined = np.clip(smoothed * (contrast + alpha) * gain, 0.0, 1.0)
        refined[refined < theta] = 0.0
    else:
        smoothed = _unit(superpixel_mean(np.maximum(s - theta, 0.0), labels))
        refined = _unit(np.maximum(smoothed * (alpha + contrast) - theta, 0.0))
    return {"smoothed": smoothed, "lowlevel": contrast, "refined": refined, "labels": labels}
