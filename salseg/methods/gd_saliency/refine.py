"""Refinement of raw GD saliency maps (paper 001 Secs. 3.2-3.3; paper 002 Sec. 3.2). Per image, on the CPU:
SLIC and colour conversion are scikit-image's; what is written here is only the arithmetic the papers define.

* ``superpixel_mean`` (001 Eq. 4): every pixel takes the mean saliency of its SLIC superpixel (100 segments,
  compactness 10 in the paper).
* ``global_color_contrast`` (001 Eq. 5): GC_i = sum_j ||C_i - C_j||_2 over the superpixels, C_i the mean L*a*b*
  colour of superpixel i; as a pixel map, min-max normalised to [0, 1] (as the authors normalise their low-level
  map, examples/cnn_saliency_interface.m). This is the whole low-level map S_l here: paper 001 Sec. 3.3 goes on,
  "following [8]" (Fu et al., ACCV 2012), to smooth the contrast map and add a colour-distribution term, but gives
  neither formula, and the authors' code loads that map precomputed (``low_level_saliency_features.mat``); both
  are left out.
* ``refine`` (001 Algorithm 1): smoothed * low-level, the low-level map scaled into [alpha, 1 + alpha], then
  pruned and renormalised. Two recipes (``recipe``):
  - ``authors`` (default; examples/do_saliency.m, ``isPost``): the raw map S (on the authors' scale: the RGB mean
    of the per-channel min-maxed X(0) - X(T), in [0, 1]) keeps the pixels above graythresh(S) x 1.3 x max(S)
    (MATLAB's Otsu level on [0, 1], ``levelamp``, times the map's own peak); superpixel mean; min-max; x (contrast
    + alpha); min-max again; x1.7 (``ampPara``), clip to 1; zero at or below theta = 0.2;
  - ``paper``: S = max(S - theta, 0) on the [0, 1] map, superpixel mean, x (alpha + contrast), prune by theta,
    rescale to [0, 1].
* ``morphological_smooth`` (002 Sec. 3.2, "a simple image dilation and erosion"): grey dilation then erosion
  (a closing) with a disk; the radius is not given in the paper: 2 % of the shorter side by default.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color, morphology, segmentation

from salseg.maps import minmax_normalize_array

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
    return minmax_normalize_array(dist.sum(1))[labels]


def graythresh(s: np.ndarray) -> float:
    """MATLAB's ``graythresh`` (``otsuthresh`` of ``imhist(S, 256)``) of a map in [0, 1]: Otsu's level on a 256-bin
    histogram of the FIXED range [0, 1] (bin k holds the values nearest k / 255), not of the map's own [min, max];
    where several bins maximise the between-class variance, the mean of their indices (MATLAB's tie rule). A map
    within one bin gives 0."""
    k = np.floor(np.clip(np.asarray(s, dtype=np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.int64)
    p = np.bincount(k.ravel(), minlength=256) / k.size
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(1, 257))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b2 = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    if not np.isfinite(sigma_b2).any():
        return 0.0
    best = np.flatnonzero(sigma_b2 == np.nanmax(sigma_b2))  # 0-based k - 1
    return float(best.mean() / 255)


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
    ``smoothed`` (superpixel mean of the pruned map), ``lowlevel`` (the contrast map in [0, 1]) and ``refined``.
    The ``authors`` recipe reads ``saliency`` as it is, on [0, 1] (its Otsu level is scaled by the map's peak);
    the ``paper`` recipe min-max normalises it first."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    s = _hw(saliency)
    if recipe == "authors":
        if not (s.min() >= -1e-6 and s.max() <= 1.0 + 1e-6):
            raise ValueError(f"refine(recipe='authors') reads a raw map in [0, 1] (the RGB mean of the per-channel "
                             f"min-maxed X(0) - X(T)), got values in [{s.min():.4g}, {s.max():.4g}]")
        s = np.clip(s, 0.0, 1.0)
    rgb = _hw3(image)
    if rgb.shape[:2] != s.shape:
        raise ValueError(f"saliency {s.shape} and image {rgb.shape[:2]} differ in size; resize the map first")
    labels = slic_superpixels(rgb, n_segments, compactness) if labels is None else labels
    contrast = global_color_contrast(rgb, labels)
    if recipe == "authors":
        level = graythresh(s) * otsu_factor * s.max()  # level1 = graythresh(curMap) * levelamp * maxGrad
        smoothed = minmax_normalize_array(superpixel_mean(np.where(s > level, s, 0.0), labels))
        # min-max before x1.7 and the cut
        refined = np.clip(minmax_normalize_array(smoothed * (contrast + alpha)) * gain, 0.0, 1.0)
        refined[refined <= theta] = 0.0  # the authors keep grad_mean_norm > 0.2
    else:
        s = minmax_normalize_array(s)
        smoothed = minmax_normalize_array(superpixel_mean(np.maximum(s - theta, 0.0), labels))
        refined = minmax_normalize_array(np.maximum(smoothed * (alpha + contrast) - theta, 0.0))
    return {"smoothed": smoothed, "lowlevel": contrast, "refined": refined, "labels": labels}
