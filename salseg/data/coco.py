"""MS COCO 2014 / 2017 instance annotations as a class-labelled saliency / segmentation dataset (GD method).

Layout (``<base>`` = the data root, or ``<root>/<folder>`` with the spec key ``folder``; ``<base>/coco`` is also
looked at)::

    <base>/annotations/instances_{split}{year}.json     split: train / val, year: 2014 / 2017
    <base>/{split}{year}/<file_name>                    the images named in the json

Targets (sample contract: ``salseg.data.labelled``): COCO's 80 category ids (1..90 with gaps) map to contiguous
classes 0..79 in increasing id order (``class_mask`` = class + 1, 0 background); ``cat_id_to_class``,
``categories`` and ``class_names`` expose the mapping. Masks are decoded from polygons, uncompressed and compressed
RLE with ``pycocotools.mask``; annotations are painted largest first, so a small object lying on a large one stays
visible. Crowd (``iscrowd``) regions are objects of their class (a crowd of people is salient); ``crowd_ignore:
true`` paints them 255 (ignore, not salient) instead. ``labels`` (80,) = every category annotated in the image;
``label`` = the category of the annotation with the largest segment ``area`` (non-crowd ones first; ties to the
lower class). Images without any annotation are left out (they have no class).

``single_category: true`` follows paper 002 (section 5.1): "we only select the images that contain one category of
objects", i.e. images whose annotations (crowd ones included) all have the same category. The paper reports 6869
train / 3479 val images in 18 classes for COCO 2014 but does not say how the other categories were dropped (the
text suggests ImageNet compatibility); ``categories`` (names or ids) restricts the images to those whose
categories are all in the given list, so such a class subset can be reproduced once known. The label space stays
the 80 classes either way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salseg.errors import import_extra

from .io import DataError, MissingDataError, read_image
from .labelled import IGNORE, LabelledSegDataset, Raw

LAYOUT = ("<root>/annotations/instances_{split}{year}.json + <root>/{split}{year}/*.jpg (split train/val, year "
          "2014/2017; <root>/coco/... or the spec key folder: also work)")


def ann_to_mask(ann: dict, h: int, w: int) -> np.ndarray:
    """Binary uint8 (h, w) mask of one COCO annotation (polygons, uncompressed or compressed RLE)."""
    # imported on first decode: building the registry stays cheap, and pycocotools is the `coco` extra
    mask_utils = import_extra("pycocotools.mask", "coco", "the COCO dataset (its polygon/RLE masks)")

    segm = ann["segmentation"]
    if isinstance(segm, list):  # polygons: one object may have several parts
        if not segm:
            return np.zeros((h, w), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif isinstance(segm.get("counts"), list):  # uncompressed RLE (crowd annotations)
        rle = mask_utils.frPyObjects(segm, h, w)
    else:
        rle = segm
    return mask_utils.decode(rle).astype(np.uint8)


def find_coco_annotations(base: Path, split: str, year: int) -> tuple[Path, Path]:
    """(annotation json, image folder) of ``{split}{year}`` under ``base`` or ``base/coco``."""
    name = f"instances_{split}{year}.json"
    for cand in (base, base / "coco"):
        if (cand / "annotations" / name).is_file():
            img_dir = cand / f"{split}{year}"
            if not img_dir.is_dir():
                raise MissingDataError(f"coco: image folder not found: {img_dir}\n  expected layout: {LAYOUT}")
            return cand / "annotations" / name, img_dir
    raise MissingDataError(
        f"coco: annotation file not found: {base / 'annotations' / name} (nor under {base / 'coco'})\n"
        f"  expected layout: {LAYOUT}\n  (point the data root at the folder that holds it: SALSEG_DATA / "
        f"data.root, or the spec key folder: <name>)"
    )


class COCODataset(LabelledSegDataset):
    """COCO images with their instance annotations (see the module docstring)."""

    def __init__(self, ann_file: Path, img_dir: Path, name: str, transform, with_gt: bool = False,
                 distortion=None, single_category: bool = False, categories: Sequence[int | str] | None = None,
                 crowd_ignore: bool = False, masked: bool = False, fill=None, mean_samples: int = 200):
        super().__init__(name, transform, with_gt, distortion, masked, fill, mean_samples)
        self.img_dir = Path(img_dir)
        self.crowd_ignore = bool(crowd_ignore)
        try:
            data = json.loads(Path(ann_file).read_text())
            cats = sorted(data["categories"], key=lambda c: c["id"])
            images, anns = data["images"], data["annotations"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"coco: cannot read the annotation file {ann_file}: {type(e).__name__}: {e}") from e
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in cats]
        self.class_names = tuple(c["name"] for c in self.categories)
        self.cat_id_to_class = {c["id"]: i for i, c in enumerate(self.categories)}
        allowed = self._allowed(categories)

        by_image: dict[int, list[dict]] = defaultdict(list)
        for a in anns:
            if a["category_id"] not in self.cat_id_to_class:
                raise DataError(f"coco: {ann_file}: annotation {a.get('id')} has unknown category {a['category_id']}")
            by_image[a["image_id"]].append(a)
        self.records: list[dict[str, Any]] = []
        for im in sorted(images, key=lambda i: i["file_name"]):
            cats_here = {a["category_id"] for a in by_image.get(im["id"], [])}
            if not cats_here or (single_category and len(cats_here) != 1):
                continue
            if allowed is not None and not cats_here <= allowed:
                continue
            self.records.append({"file_name": im["file_name"], "height": int(im["height"]),
                                 "width": int(im["width"]), "anns": by_image[im["id"]]})
        self.names = [Path(r["file_name"]).stem for r in self.records]

    def identity_sources(self) -> list[tuple[str, Path]]:
        """(stem, image file) of every record, for the train / test overlap check (``overlap.py``)."""
        return [(n, self.img_dir / r["file_name"]) for n, r in zip(self.names, self.records)]

    def _allowed(self, categories) -> set[int] | None:
        if categories is None:
            return None
        by_name = {c["name"]: c["id"] for c in self.categories}
        ids = set()
        for c in categories:
            if isinstance(c, str) and c in by_name:
                ids.add(by_name[c])
            elif isinstance(c, int) and c in self.cat_id_to_class:
                ids.add(c)
            else:
                raise ValueError(f"coco: unknown category {c!r}; known: {sorted(by_name)} (or their ids)")
        return ids

    def load(self, index: int) -> Raw:
        rec = self.records[index]
        path = self.img_dir / rec["file_name"]
        image = read_image(path)
        h, w = rec["height"], rec["width"]
        if image.shape[:2] != (h, w):
            raise DataError(f"coco: {path} is {image.shape[1]}x{image.shape[0]} but the json says {w}x{h}")
        cm = np.zeros((h, w), np.uint8)
        labels = np.zeros(len(self.categories), np.float32)
        for a in sorted(rec["anns"], key=lambda a: -float(a.get("area", 0.0))):  # largest first, small on top
            cls = self.cat_id_to_class[a["category_id"]]
            labels[cls] = 1.0
            cm[ann_to_mask(a, h, w) > 0] = IGNORE if (a.get("iscrowd") and self.crowd_ignore) else cls + 1
        best = min(rec["anns"], key=lambda a: (bool(a.get("iscrowd")), -float(a.get("area", 0.0)),
                                               self.cat_id_to_class[a["category_id"]]))
        return Raw(image, cm, self.cat_id_to_class[best["category_id"]], labels, True)


def build_coco(ctx, split: str = "train", year: int = 2017, folder: str | None = None,
               single_category: bool = False, categories: Sequence[int | str] | None = None,
               crowd_ignore: bool = False, masked: bool = False, fill: Sequence[float] | None = None,
               mean_samples: int = 200) -> COCODataset:
    """MS COCO instances (see the module docstring for the layout, targets and the single-category subset)."""
    base = ctx.root / folder if folder else ctx.root
    if not base.is_dir():
        raise MissingDataError(f"coco: folder not found: {base}\n  expected layout: {LAYOUT}")
    ann_file, img_dir = find_coco_annotations(base, split, int(year))
    ds = COCODataset(ann_file, img_dir, ctx.dataset, ctx.transform(), with_gt=ctx.with_gt,
                     distortion=ctx.distortion(), single_category=single_category, categories=categories,
                     crowd_ignore=crowd_ignore, masked=masked, fill=fill, mean_samples=mean_samples)
    if not len(ds):
        raise DataError(f"coco: no image of {ann_file} is left (single_category={single_category}, "
                        f"categories={categories})")
    if masked:
        ds.fill  # noqa: B018 - compute the mean colour once, before DataLoader workers fork
    return ds
