"""LightningModule wrapper around Region Contrast (:mod:`.region_contrast`).

RC is a training-free, per-image CPU algorithm (numpy + scikit-image).  The
module has no parameters and ``trainable = False``: the runner skips ``fit`` and
only calls ``trainer.test`` / ``trainer.predict``.  Whatever device the batch is
on, the images are copied to the CPU, processed one by one (optionally on a
thread pool, ``num_workers``) and the maps are moved back to the batch's device.

Every image is processed at the size it arrives in.  Cheng's code runs on the
photo's native size (its segmentation constants are absolute pixel counts), so the
rc_* experiments set ``data.image_size: null``; a batch of such images carries
``image`` as a LIST of (3, H_i, W_i) tensors (``salseg.data.collate``), and the
module then returns a list of (1, H_i, W_i) maps, one per image, each at its own
image's size.  A stacked (B, 3, H, W) tensor gives a (B, 1, H, W) tensor.

Lightning accepts a module without parameters for ``test``/``predict`` (only
``fit`` needs an optimizer), so no dummy parameter is registered.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from salseg.methods.base import SalsegMethod

from .region_contrast import DEFAULTS, region_contrast_saliency

__all__ = ["RegionContrast"]

_RANGE_TOL = 1e-3


def _images_from_batch(batch):
    if isinstance(batch, dict):
        if "image" not in batch:
            raise KeyError(f"batch dict has no 'image' key (keys: {sorted(batch)})")
        return batch["image"]
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"expected a dict batch with an 'image' tensor (or a tensor), got {type(batch).__name__}")


def _check_range(x: torch.Tensor) -> None:
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
            raise ValueError(
                f"expected images in [0, 1] (un-normalised), got range [{lo:.4g}, {hi:.4g}]; "
                "RC works on raw colours, do not apply mean/std normalisation"
            )


def _to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> uint8 (H, W, 3), rounded to the nearest 8-bit level."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class RegionContrast(SalsegMethod):
    """Region Contrast saliency (Cheng et al., CVPR 2011 / TPAMI 2015) as a LightningModule.

    Keyword arguments are those of
    :func:`salseg.methods.baselines.region_contrast.region_contrast_saliency`
    (the authors' code's defaults) plus ``num_workers``: number of threads used to process the
    images of a batch in parallel (1 = sequential).  The heavy parts (numpy
    matrix products, colour conversion) release the GIL only partly, so the
    speed-up from threads is modest; processes are not used because they would
    fight with the dataloader workers and with Lightning's process handling.
    """

    trainable = False

    def __init__(
        self,
        sigma_s2: float = 0.4,
        n_levels: int = 12,
        coverage: float = 0.95,
        segmentation: str = "felzenszwalb",
        seg_sigma: float = 0.5,
        seg_k: float = 50.0,
        seg_min_size: int = 50,
        n_segments: int = 200,
        compactness: float = 10.0,
        seg_colorspace: str = "lab",
        seg_ref_pixels: int | None = None,
        spatial_distance: str = "sqeuclidean",
        center_prior: bool = False,
        max_colors: int = 256,
        min_colors: int = 10,
        fallback_colors: int = 100,
        merge_colors: str = "bins",
        color_mean: str = "rgb",
        blur: bool = True,
        num_workers: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.rc_kwargs = dict(
            sigma_s2=sigma_s2,
            n_levels=n_levels,
            coverage=coverage,
            segmentation=segmentation,
            seg_sigma=seg_sigma,
            seg_k=seg_k,
            seg_min_size=seg_min_size,
            n_segments=n_segments,
            compactness=compactness,
            seg_colorspace=seg_colorspace,
            seg_ref_pixels=seg_ref_pixels,
            spatial_distance=spatial_distance,
            center_prior=center_prior,
            max_colors=max_colors,
            min_colors=min_colors,
            fallback_colors=fallback_colors,
            merge_colors=merge_colors,
            color_mean=color_mean,
            blur=blur,
        )
        assert set(self.rc_kwargs) == set(DEFAULTS)
        if int(num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers!r}")
        self.num_workers = int(num_workers)
        # fail at construction time, not in the middle of a test run
        region_contrast_saliency(np.zeros((4, 4, 3), np.uint8), **self.rc_kwargs)

    # ------------------------------------------------------------------ core
    def saliency_numpy(self, image_hwc_uint8: np.ndarray) -> np.ndarray:
        """One image, uint8 (H, W, 3) -> float32 (H, W) in [0, 1]."""
        return region_contrast_saliency(image_hwc_uint8, **self.rc_kwargs)

    def forward(self, images):
        """Saliency maps at each image's own size, float32 in [0, 1], on the input's device.

        (B, 3, H, W) float tensor in [0, 1] -> (B, 1, H, W) tensor; a list (or tuple)
        of (3, H_i, W_i) tensors, the native-size batches of ``data.image_size: null``,
        -> a list of (1, H_i, W_i) tensors.
        """
        if isinstance(images, (list, tuple)):
            for i, im in enumerate(images):
                if not isinstance(im, torch.Tensor) or im.ndim != 3 or im.shape[0] != 3:
                    shape = tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__
                    raise ValueError(f"expected a list of (3, H, W) image tensors, item {i} is {shape}")
            frames = list(images)
            device = frames[0].device if frames else torch.device("cpu")
        elif isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"expected images of shape (B, 3, H, W) or a list of (3, H, W), got {tuple(images.shape)}"
                )
            frames, device = list(images), images.device
        else:
            raise TypeError(
                f"expected a (B, 3, H, W) tensor or a list of (3, H, W) tensors, got {type(images).__name__}"
            )
        cpu = []
        for im in frames:
            if not im.is_floating_point():
                raise ValueError(f"expected float images in [0, 1], got dtype {im.dtype}")
            x = im.detach().to("cpu", torch.float32)
            _check_range(x)
            cpu.append(_to_uint8_hwc(x))
        if self.num_workers > 1 and len(cpu) > 1:
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(cpu))) as pool:
                maps = list(pool.map(self.saliency_numpy, cpu))
        else:
            maps = [self.saliency_numpy(f) for f in cpu]
        if isinstance(images, (list, tuple)):
            return [torch.from_numpy(m)[None].to(device) for m in maps]
        if maps:
            out = torch.from_numpy(np.stack(maps, 0)[:, None])
        else:
            out = torch.zeros((0, 1) + tuple(images.shape[2:]), dtype=torch.float32)
        return out.to(device)

    # ---------------------------------------------------------- Lightning API
    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return {"saliency": self(_images_from_batch(batch))}

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return {"saliency": self(_images_from_batch(batch))}

    def configure_optimizers(self):
        return None
