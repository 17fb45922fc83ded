"""Shared sample assembly for the class-labelled segmentation datasets (PASCAL VOC, MS COCO).

A subclass only decodes one record into ``Raw`` (image, class map, image-level labels); this base turns it into
the sample contract of ``salseg.data``:

* ``image`` float32 (3, S, S) [0, 1]; ``mask`` float32 (1, S, S): 1 on object pixels (class 1..K), 0 on background
  AND on ``IGNORE`` (255, VOC's void/boundary) pixels: an unlabelled band is not evidence of saliency;
* ``class_mask`` int64 (S, S): 0 background, c + 1 for class c (the ``shapes`` convention), ``IGNORE`` = 255 kept
  as is (the joint transform resizes masks with nearest neighbour, so 255 never blends into a class);
* ``label`` int64 (class of the largest object, see the subclass), ``labels`` float32 (K,) multi-hot;
* ``name``, ``dataset``; eval roles: ``gt`` uint8 (H, W) original resolution = mask * 255 (void -> 0), and
  ``gt_class`` uint8 (H, W), the raw class map (0, c + 1, 255) for mIoU-style evaluation;
* ``masked: true`` (GD method's CNN2/CNN3): ``image`` has its object pixels replaced by ``fill`` (default: the
  mean colour of the split's first ``mean_samples`` images) and ``original`` holds the unmasked image. Every pixel
  whose class is not background is masked, void included: in VOC it outlines every object and covers difficult ones,
  so leaving it would leak the shape (``salseg.data.masking.masking_region``, shared with the GD method's on-the-fly
  masking). An image without pixel annotation (``has_mask`` false) is left unmasked: no object pixel is known.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .masking import dataset_mean_colour, mask_objects, masking_region
from .transforms import JointTransform

IGNORE = 255


@dataclass
class Raw:
    """One decoded record at original resolution."""

    image: np.ndarray  # uint8 (H, W, 3)
    class_map: np.ndarray  # uint8 (H, W): 0 background, c + 1 object of class c, IGNORE unlabelled / void
    label: int  # class (0..K-1) of the largest object
    labels: np.ndarray  # float32 (K,) multi-hot
    has_mask: bool = True  # False: no pixel annotation (class_map is all IGNORE, mask all 0)


class LabelledSegDataset(Dataset, abc.ABC):
    """Base class: subclasses set ``self.names`` (one per record), ``class_names`` and implement ``load(index)``.

    Args:
        name: the ``dataset`` string of the samples.
        transform: a :class:`JointTransform` (input size S).
        with_gt: add ``gt`` / ``gt_class`` (eval roles).
        distortion: optional test-time distortion of the decoded image at native size, before the transform and
            the masking (``salseg.data.distortions``).
        masked: replace object pixels of ``image`` by ``fill`` and add ``original``.
        fill: (3,) colour in [0, 1]; None = mean colour of the first ``mean_samples`` images (computed once).
    """

    names: list[str]
    class_names: tuple[str, ...]

    def __init__(self, name: str, transform: JointTransform, with_gt: bool = False, distortion=None,
                 masked: bool = False, fill: Sequence[float] | None = None, mean_samples: int = 200):
        self.name = name
        self.transform = transform
        self.with_gt = bool(with_gt)
        self.distortion = distortion
        self.masked = bool(masked)
        self._fill = None if fill is None else torch.as_tensor(fill, dtype=torch.float32).reshape(3)
        self.mean_samples = int(mean_samples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} images, masked={self.masked}, {self.transform})"

    @abc.abstractmethod
    def load(self, index: int) -> Raw:
        """Decode item ``index`` of the split: the image, its class map (255 = ignore) and its labels. Each dataset
        (VOC, COCO) reads its own format here; everything after decoding is shared."""

    @property
    def fill(self) -> torch.Tensor:
        """The masking colour. The default (dataset mean) is computed on first use at a small size with a
        deterministic resize, so every process gets the same colour; call it once before forking workers."""
        if self._fill is None:
            view = _UnmaskedView(self, JointTransform(32))
            self._fill = dataset_mean_colour(view, max_samples=self.mean_samples)
        return self._fill

    def sample(self, index: int, transform: JointTransform,
               distort: bool = False) -> tuple[Raw, dict[str, torch.Tensor]]:
        raw = self.load(index)
        cm = raw.class_map
        obj = ((cm > 0) & (cm != IGNORE)).astype(np.uint8)
        image = raw.image
        if distort and self.distortion is not None:  # the dataset image itself, before any resize
            image = self.distortion.native(image, index)
        out = transform(image, obj, cm.astype(np.int64))
        return raw, out

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw, out = self.sample(index, self.transform, distort=True)
        img = out["image"]
        sample: dict[str, Any] = {}
        if self.masked:
            sample["original"] = img
            img = mask_objects(img, masking_region(out["mask"], out["class_mask"], raw.has_mask), self.fill)
        sample.update({
            "image": img,
            "mask": out["mask"],
            "class_mask": out["class_mask"],
            "label": torch.tensor(raw.label, dtype=torch.int64),
            "labels": torch.from_numpy(raw.labels.astype(np.float32)),
            "has_mask": raw.has_mask,
            "name": self.names[index],
            "dataset": self.name,
        })
        if self.with_gt:
            cm = raw.class_map
            sample["gt"] = torch.from_numpy(((cm > 0) & (cm != IGNORE)).astype(np.uint8) * np.uint8(255))
            sample["gt_class"] = torch.from_numpy(np.ascontiguousarray(cm, dtype=np.uint8))
        return sample


class _UnmaskedView(Dataset):
    """The images of ``base`` through a fixed eval transform (for the mean colour)."""

    def __init__(self, base: LabelledSegDataset, transform: JointTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.base.sample(index, self.transform)[1]["image"]}
