"""PASCAL VOC 2012 (and the SBD ``train_aug`` augmentation) for the GD-saliency method.

Layout (``<base>`` = the data root, or ``<root>/<folder>`` with the spec key ``folder``)::

    <base>/VOCdevkit/VOC2012/    (or <base>/VOC2012/, or <base> itself when it holds JPEGImages/)
        JPEGImages/<id>.jpg
        Annotations/<id>.xml                       image-level labels (optional, see below)
        SegmentationClass/<id>.png                 index PNG: 0 background, 1..20 classes, 255 void
        SegmentationObject/<id>.png                instance ids (optional: used for the largest object)
        SegmentationClassAug/<id>.png              SBD masks (optional, split train_aug)
        ImageSets/Segmentation/{train,val,trainval}.txt
        ImageSets/SegmentationAug/train_aug.txt    (or ImageSets/Segmentation/train_aug.txt, or train_aug.txt)
        ImageSets/Main/{train,val,trainval}.txt    classification lists (image_set: Main)

Targets (see ``salseg.data.labelled`` for the sample contract): class c in 0..19 is VOC index c + 1, so
``class_mask`` holds VOC's own indices and 255 (void) survives as the ignore value; ``mask`` = any class 1..20
(void is NOT salient). ``labels`` (20,) multi-hot comes from ``Annotations/<id>.xml``: every ``<object>`` counts,
``difficult`` and ``truncated`` ones included (the object is in the image); without the XML file, from the classes
present in the class mask. ``label`` = the class of the largest object by pixel area: per instance when
``SegmentationObject/<id>.png`` exists (instance pixels, class = the class-mask value under them), else per class
from the class-mask pixel counts, else (no mask, or an all-background mask) the largest XML bounding box. Ties go
to the lower instance id / class index; an image with none of these gets ``label = -1``.

Splits: ``train`` / ``val`` / ``trainval`` (ImageSets/<image_set>), ``train_aug`` (10,582 images, SBD masks from
SegmentationClassAug, falling back per image to SegmentationClass), ``all`` (every image that has a mask, or every
JPEG when ``require_masks: false``); ``list_file`` overrides the list; ``exclude_list_file`` (relative to VOC2012/, or
absolute) removes the images it lists, e.g. paper 001's training set: ``split: trainval, image_set: Main,
require_masks: false, exclude_list_file: ImageSets/Segmentation/val.txt``. Images without a class mask (VOC's
classification-only images, e.g. ``image_set: Main``) fail by default, naming the file; ``require_masks: false``
keeps them with ``has_mask = False``, an all-zero ``mask`` and an all-255 ``class_mask`` (labels from the XML).

5-fold cross-validation (paper 002: fine-tune on train + about 80 % of val, test on the remaining 20 %, rotate five
times to cover val): ``fold: k`` (0..folds-1) with ``folds: 5``. The sorted val list is permuted with
``split_seed`` and cut into ``folds`` near-equal parts; ``split: train`` (or ``train_aug``) = that list + val minus
part k, ``split: val`` / ``test`` = part k. The parts are disjoint and cover val, whatever the other options.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import (
    CorruptFileError,
    DataError,
    MissingDataError,
    UnpairedFileError,
    _open,
    read_image,
    read_list_file,
)
from .labelled import IGNORE, LabelledSegDataset, Raw

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
_CLASS_INDEX = {n: i for i, n in enumerate(VOC_CLASSES)}
LAYOUT = ("<root>/VOCdevkit/VOC2012/{JPEGImages, Annotations, SegmentationClass, SegmentationObject, "
          "ImageSets/Segmentation/{train,val,trainval}.txt} (optional SegmentationClassAug + train_aug list); "
          "the root may also point at VOC2012 itself, or use the spec key folder:")
AUG_LISTS = ("ImageSets/SegmentationAug/train_aug.txt", "ImageSets/Segmentation/train_aug.txt", "train_aug.txt")


def read_index_mask(path: str | Path) -> np.ndarray:
    """The raw indices of a label PNG (mode P palette or L), ``uint8 (H, W)``; never the palette colours."""
    im = _open(path)
    if im.mode not in ("P", "L"):
        raise CorruptFileError(f"{path}: a class mask must be an index PNG (mode P or L), got mode {im.mode!r}")
    return np.array(im, dtype=np.uint8)


def parse_annotation(path: str | Path) -> list[tuple[int, float, bool]]:
    """(class 0..19, bounding-box area, difficult) for each ``<object>`` of a VOC XML file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise CorruptFileError(f"cannot parse the VOC annotation {path}: {e}") from e
    objs = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in _CLASS_INDEX:
            raise DataError(f"{path}: unknown VOC class {name!r}")
        box = obj.find("bndbox")
        area = 0.0
        if box is not None:
            x0, y0, x1, y1 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
            area = max(0.0, x1 - x0 + 1) * max(0.0, y1 - y0 + 1)  # VOC boxes are inclusive pixel coordinates
        objs.append((_CLASS_INDEX[name], area, (obj.findtext("difficult") or "0").strip() == "1"))
    return objs


def largest_object_label(class_map: np.ndarray | None, object_map: np.ndarray | None = None,
                         boxes: Sequence[tuple[int, float, bool]] = ()) -> int:
    """Class 0..19 of the largest object (see the module docstring for the order of sources); -1 if none."""
    if class_map is not None:
        valid = (class_map > 0) & (class_map != IGNORE)
        if object_map is not None and object_map.shape == class_map.shape:
            inst = valid & (object_map > 0) & (object_map != IGNORE)
            if inst.any():
                key = object_map[inst].astype(np.int64) * 256 + class_map[inst]
                return int(np.bincount(key).argmax() % 256) - 1
        if valid.any():
            return int(np.bincount(class_map[valid], minlength=21)[1:21].argmax())
    if boxes:
        return int(max(boxes, key=lambda b: (b[1], -b[0]))[0])
    return -1


def find_voc_dir(base: Path) -> Path:
    """The VOC2012 folder under ``base`` (see the layout); a clear error when there is none."""
    for cand in (base / "VOCdevkit" / "VOC2012", base / "VOC2012", base):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise MissingDataError(
        f"voc: no VOC 2012 folder (with JPEGImages/) found at {base / 'VOCdevkit' / 'VOC2012'}, {base / 'VOC2012'} "
        f"or {base}\n  expected layout: {LAYOUT}\n  (point the data root at the folder that holds it: "
        f"SALSEG_DATA / data.root, or the spec key folder: <name>)"
    )


class VOCDataset(LabelledSegDataset):
    """VOC images listed by stem (see the module docstring). ``mask_dirs``: class-mask folders searched in order."""

    class_names = VOC_CLASSES

    def __init__(self, voc_dir: Path, stems: Sequence[str], mask_dirs: Sequence[Path], name: str, transform,
                 with_gt: bool = False, distortion=None, masked: bool = False, fill=None, mean_samples: int = 200):
        super().__init__(name, transform, with_gt, distortion, masked, fill, mean_samples)
        self.voc_dir = Path(voc_dir)
        self.names = list(stems)
        self.mask_dirs = [Path(d) for d in mask_dirs]

    def identity_sources(self) -> list[tuple[str, Path]]:
        """(stem, JPEG) of every image, for the train / test overlap check (``overlap.py``)."""
        return [(s, self.voc_dir / "JPEGImages" / f"{s}.jpg") for s in self.names]

    def mask_path(self, stem: str) -> Path | None:
        for d in self.mask_dirs:
            if (d / f"{stem}.png").is_file():
                return d / f"{stem}.png"
        return None

    def load(self, index: int) -> Raw:
        stem = self.names[index]
        img_path = self.voc_dir / "JPEGImages" / f"{stem}.jpg"
        image = read_image(img_path)
        xml = self.voc_dir / "Annotations" / f"{stem}.xml"
        boxes = parse_annotation(xml) if xml.is_file() else []
        mpath = self.mask_path(stem)
        cm = om = None
        if mpath is not None:
            cm = read_index_mask(mpath)
            if cm.shape != image.shape[:2]:
                raise DataError(f"voc: mask {mpath} is {cm.shape[::-1]} (WxH) but {img_path} is {image.shape[1::-1]}")
            if ((cm > 20) & (cm != IGNORE)).any():
                raise DataError(f"voc: {mpath} has values outside 0..20 and 255 (a colour-coded mask?)")
            opath = self.voc_dir / "SegmentationObject" / f"{stem}.png"
            om = read_index_mask(opath) if opath.is_file() else None
        labels = np.zeros(len(VOC_CLASSES), np.float32)
        if boxes:
            labels[[b[0] for b in boxes]] = 1.0
        elif cm is not None:
            present = np.unique(cm)
            labels[[int(v) - 1 for v in present if 0 < v <= 20]] = 1.0
        else:
            raise DataError(f"voc: {stem} has neither a class mask in {self.mask_dirs[-1]} nor an annotation {xml}")
        label = largest_object_label(cm, om, boxes)
        has_mask = cm is not None
        if cm is None:
            cm = np.full(image.shape[:2], IGNORE, np.uint8)
        return Raw(image, cm, label, labels, has_mask)


def _fold_parts(val: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    order = sorted(val)
    perm = np.random.default_rng(int(seed)).permutation(len(order))
    return [sorted(order[i] for i in part) for part in np.array_split(perm, folds)]


def build_voc(ctx, split: str = "train", folder: str | None = None, image_set: str = "Segmentation",
              list_file: str | None = None, exclude_list_file: str | None = None,
              require_masks: bool | None = None, fold: int | None = None,
              folds: int = 5, split_seed: int = 0, masked: bool = False, fill: Sequence[float] | None = None,
              mean_samples: int = 200) -> VOCDataset:
    """PASCAL VOC 2012 (see the module docstring for the layout, splits, targets and the fold protocol)."""
    base = ctx.root / folder if folder else ctx.root
    if not base.is_dir():
        raise MissingDataError(f"voc: folder not found: {base}\n  expected layout: {LAYOUT}")
    voc = find_voc_dir(base)
    if require_masks is None:
        require_masks = image_set.lower() != "main"
    seg_dir = voc / "SegmentationClass"
    mask_dirs = ([voc / "SegmentationClassAug"] if split == "train_aug" else []) + [seg_dir]

    def listed(name: str) -> list[str]:
        if name == "train_aug":
            paths = [voc / p for p in AUG_LISTS]
            found = [p for p in paths if p.is_file()]
            if not found:
                raise MissingDataError(f"voc: split train_aug needs a list file, one of {[str(p) for p in paths]} "
                                       f"(and the SBD masks in {voc / 'SegmentationClassAug'})")
            return read_list_file(found[0])
        path = voc / "ImageSets" / image_set / f"{name}.txt"
        if not path.is_file():
            raise MissingDataError(f"voc: split list not found: {path}\n  expected layout: {LAYOUT}\n"
                                   f"  (or give list_file:, or split: all)")
        return read_list_file(path)

    if list_file is not None:
        p = Path(list_file).expanduser()
        stems = read_list_file(p if p.is_absolute() else voc / p)
    elif fold is not None:
        if not (isinstance(fold, int) and int(folds) >= 2 and 0 <= fold < int(folds)):
            raise ValueError(f"voc: fold must be an int in 0..folds-1 with folds >= 2, got fold={fold}, folds={folds}")
        if split not in ("train", "train_aug", "val", "test"):
            raise ValueError(f"voc: with fold, split must be train, train_aug (train + other folds) or val / test "
                             f"(the held-out fold), got {split!r}")
        parts = _fold_parts(listed("val"), int(folds), split_seed)
        if split in ("val", "test"):
            stems = parts[fold]
        else:
            held = set(parts[fold])
            stems = listed(split) + [s for p in parts for s in p if s not in held]
    elif split == "all":
        src = seg_dir if require_masks else voc / "JPEGImages"
        if not src.is_dir():
            raise MissingDataError(f"voc: folder not found: {src}\n  expected layout: {LAYOUT}")
        stems = sorted(p.stem for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg") and p.is_file())
    elif split in ("train", "val", "trainval", "train_aug"):
        stems = listed(split)
    else:
        raise ValueError(f"voc: unknown split {split!r}; known: train, val, trainval, train_aug, all "
                         f"(test: only with fold)")
    stems = list(dict.fromkeys(stems))
    if exclude_list_file is not None:  # e.g. paper 001: Main trainval minus the 1449 segmentation val images
        p = Path(exclude_list_file).expanduser()
        excluded = set(read_list_file(p if p.is_absolute() else voc / p))
        stems = [s for s in stems if s not in excluded]

    img_dir = voc / "JPEGImages"
    for s in stems:
        if not (img_dir / f"{s}.jpg").is_file():
            raise UnpairedFileError(f"voc: listed image {img_dir / (s + '.jpg')} does not exist")
    if require_masks:
        if not seg_dir.is_dir() and split != "train_aug":
            raise MissingDataError(f"voc: folder not found: {seg_dir}\n  expected layout: {LAYOUT}")
        ds_probe = VOCDataset(voc, [], mask_dirs, ctx.dataset, None)
        missing = [s for s in stems if ds_probe.mask_path(s) is None]
        if missing:
            raise UnpairedFileError(
                f"voc: {len(missing)} image(s) of split {split!r} have no class mask, e.g. image "
                f"{img_dir / (missing[0] + '.jpg')} has no mask {mask_dirs[0] / (missing[0] + '.png')} "
                f"(classification-only images: set require_masks: false to keep them without a mask)"
            )
    if not stems:
        raise DataError(f"voc: the {split!r} split is empty")
    ds = VOCDataset(voc, stems, mask_dirs, ctx.dataset, ctx.transform(), with_gt=ctx.with_gt,
                    distortion=ctx.distortion(), masked=masked, fill=fill, mean_samples=mean_samples)
    if masked:
        ds.fill  # noqa: B018 - compute the mean colour once, before DataLoader workers fork
    return ds
