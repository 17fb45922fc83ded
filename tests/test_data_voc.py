"""PASCAL VOC 2012: a tiny VOC tree written here (palette PNGs with 255 borders, XML annotations, SBD train_aug,
a classification-only image), splits, the 5-fold protocol, masked images, errors, and the real sample
../shared/data/voc2012_sample (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.data import (
    DATASETS,
    VOC_CLASSES,
    BuildContext,
    MissingDataError,
    SaliencyDataModule,
    UnpairedFileError,
    largest_object_label,
    read_index_mask,
)

SHARED = Path(os.environ.get("SALSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
H, W = 16, 20
HORSE, PERSON, CHAIR, DOG = 13, 15, 9, 12  # VOC indices (class = index - 1)
TRAIN = [f"2008_{i:06d}" for i in range(3)]
VAL = [f"2009_{i:06d}" for i in range(7)]
MAIN_ONLY = "2010_000000"  # classification-only: JPEG + XML, no SegmentationClass
AUG_ONLY = "2011_000000"  # SBD image: mask only in SegmentationClassAug


def _palette_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr, np.uint8).tobytes())
    im.putpalette(list(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8)))
    im.save(path)


def _class_and_object_maps() -> tuple[np.ndarray, np.ndarray]:
    """A horse of 100 px and two persons of 60 px each: per instance the horse is largest, per class the persons."""
    cm = np.zeros((H, W), np.uint8)
    om = np.zeros((H, W), np.uint8)
    cm[1:11, 1:11], om[1:11, 1:11] = HORSE, 1
    cm[0, 0:12] = 255  # void border above the horse
    cm[1:11, 11] = 255
    cm[0:6, 12:20], om[0:6, 12:20] = PERSON, 2  # 48 px
    cm[6:8, 12:18], om[6:8, 12:18] = PERSON, 2  # +12 -> 60 px
    cm[11:16, 12:20], om[11:16, 12:20] = PERSON, 3  # 40 px
    cm[8:11, 12:19], om[8:11, 12:19] = PERSON, 3  # +21 -> 61 px: each person < 100 < both (121)
    om[cm == 255] = 255
    return cm, om


def _xml(path: Path, objects: list[tuple[str, tuple[int, int, int, int], bool]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objs}</annotation>")


def write_voc(base: Path) -> Path:
    voc = base / "VOCdevkit" / "VOC2012"
    cm, om = _class_and_object_maps()
    rng = np.random.default_rng(0)
    for s in TRAIN + VAL + [MAIN_ONLY, AUG_ONLY]:
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{s}.jpg")
    for s in TRAIN + VAL:
        _palette_png(cm, voc / "SegmentationClass" / f"{s}.png")
        _xml(voc / "Annotations" / f"{s}.xml", [("horse", (1, 1, 10, 10), False), ("person", (12, 0, 19, 7), False),
                                               ("chair", (0, 12, 3, 15), True)])  # difficult: still present
    _palette_png(om, voc / "SegmentationObject" / f"{TRAIN[0]}.png")  # only TRAIN[0] has instances
    _xml(voc / "Annotations" / f"{MAIN_ONLY}.xml", [("person", (0, 0, 4, 4), False), ("dog", (2, 2, 15, 12), False)])
    aug = voc / "SegmentationClassAug"
    aug.mkdir(parents=True)
    dog = np.zeros((H, W), np.uint8)
    dog[4:12, 4:16] = DOG
    Image.fromarray(dog).save(aug / f"{AUG_ONLY}.png")  # SBD masks are mode L, no void
    sets = voc / "ImageSets"
    for d, files in (("Segmentation", {"train": TRAIN, "val": VAL, "trainval": TRAIN + VAL}),
                     ("Main", {"train": TRAIN + [MAIN_ONLY]})):
        (sets / d).mkdir(parents=True)
        for k, v in files.items():
            (sets / d / f"{k}.txt").write_text("\n".join(v) + "\n")
    (sets / "SegmentationAug").mkdir()
    (sets / "SegmentationAug" / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png\n" for s in TRAIN + [AUG_ONLY]))
    return voc


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("data")
    write_voc(r)
    return r


def build(root: Path, role: str = "val", image_size: int = 32, **kw):
    return DATASETS["voc"](BuildContext(dataset="voc", root=Path(root), role=role, image_size=image_size), **kw)


def test_sample_contract_values_and_void(root):
    ds = build(root, split="train")
    assert ds.names == TRAIN and ds.num_classes == 20 and ds.class_names == VOC_CLASSES
    s = ds[1]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
    assert s["mask"].shape == (1, 32, 32) and s["mask"].dtype == torch.float32
    assert s["class_mask"].shape == (32, 32) and s["class_mask"].dtype == torch.int64
    assert set(torch.unique(s["class_mask"]).tolist()) == {0, HORSE, PERSON, 255}  # nearest: no blended values
    cmk = s["class_mask"]
    assert torch.equal(s["mask"][0] > 0, (cmk > 0) & (cmk != 255))  # void is not salient
    assert s["labels"].dtype == torch.float32 and s["labels"].shape == (20,)
    assert s["labels"].nonzero().ravel().tolist() == [CHAIR - 1, HORSE - 1, PERSON - 1]  # difficult chair counts
    assert s["label"].dtype == torch.int64 and s["has_mask"] is True
    gt, gtc = s["gt"], s["gt_class"]
    cm, _ = _class_and_object_maps()
    assert gt.dtype == torch.uint8 and gt.shape == (H, W) and torch.equal(gtc, torch.from_numpy(cm))
    assert torch.equal(gt, torch.from_numpy(((cm > 0) & (cm != 255)).astype(np.uint8) * 255))
    assert "gt" not in build(root, role="train", split="train")[0]


def test_largest_object_label_sources(root):
    ds = build(root, split="train")
    assert int(ds[0]["label"]) == HORSE - 1  # SegmentationObject: the horse is the largest instance
    assert int(ds[1]["label"]) == PERSON - 1  # class pixels: the two persons together outnumber the horse
    cm, om = _class_and_object_maps()
    assert largest_object_label(cm, om) == HORSE - 1 and largest_object_label(cm) == PERSON - 1
    assert largest_object_label(None, None, [(3, 10.0, False), (11, 99.0, True)]) == 11  # XML boxes
    assert largest_object_label(np.zeros((2, 2), np.uint8)) == -1


def test_read_index_mask_keeps_indices(root):
    m = read_index_mask(root / "VOCdevkit/VOC2012/SegmentationClass" / f"{TRAIN[0]}.png")
    assert set(np.unique(m).tolist()) == {0, HORSE, PERSON, 255}


def test_splits_and_root_variants(root):
    assert build(root, split="val").names == VAL
    assert build(root, split="trainval").names == TRAIN + VAL
    assert build(root, split="all").names == sorted(TRAIN + VAL)
    assert build(root / "VOCdevkit" / "VOC2012", split="train").names == TRAIN  # root at VOC2012 itself
    assert build(root.parent, split="train", folder=root.name).names == TRAIN  # folder key
    aug = build(root, split="train_aug")
    assert aug.names == TRAIN + [AUG_ONLY]
    s = aug[3]
    assert int(s["label"]) == DOG - 1 and set(torch.unique(s["class_mask"]).tolist()) == {0, DOG}
    assert s["labels"].nonzero().ravel().tolist() == [DOG - 1]  # no XML: labels from the mask
    with pytest.raises(ValueError, match="unknown split"):
        build(root, split="test")


def test_classification_only_images(root):
    with pytest.raises(UnpairedFileError, match=rf"{MAIN_ONLY}\.jpg.*require_masks"):
        build(root, split="train", image_set="Main", require_masks=True)
    ds = build(root, split="train", image_set="Main")  # Main lists default to require_masks: false
    s = ds[ds.names.index(MAIN_ONLY)]
    assert s["has_mask"] is False and float(s["mask"].sum()) == 0 and bool((s["class_mask"] == 255).all())
    assert int(s["label"]) == DOG - 1  # the largest XML box
    assert s["labels"].nonzero().ravel().tolist() == [DOG - 1, PERSON - 1]


def test_paper_001_training_set_excludes_the_segmentation_val_images(root):
    # Main train lists TRAIN + MAIN_ONLY; removing Segmentation/train.txt leaves the classification-only image
    ds = build(root, split="train", image_set="Main", exclude_list_file="ImageSets/Segmentation/train.txt")
    assert ds.names == [MAIN_ONLY]
    absolute = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    assert build(root, split="trainval", exclude_list_file=str(absolute)).names == VAL


def test_five_fold_protocol(root):
    parts = [build(root, split="test", fold=k, folds=5).names for k in range(5)]
    assert sorted(n for p in parts for n in p) == VAL  # disjoint and covering val
    assert all(len(p) in (1, 2) for p in parts)
    for k in range(5):
        train = build(root, split="train", fold=k, folds=5).names
        assert set(train) == set(TRAIN) | (set(VAL) - set(parts[k])) and len(train) == len(set(train))
        assert build(root, split="val", fold=k).names == parts[k]
    assert parts == [build(root, split="test", fold=k).names for k in range(5)]  # deterministic
    other = [build(root, split="test", fold=k, split_seed=1).names for k in range(5)]
    assert other != parts and sorted(n for p in other for n in p) == VAL
    aug = build(root, split="train_aug", fold=0).names
    assert set(aug) == set(TRAIN + [AUG_ONLY]) | (set(VAL) - set(parts[0]))
    with pytest.raises(ValueError, match="fold"):
        build(root, split="test", fold=5)


def test_masked_images(root):
    ds = build(root, split="train", masked=True, fill=[0.0, 1.0, 0.0])
    s = ds[0]
    obj = s["class_mask"] != 0  # objects and void are masked
    assert torch.equal(s["image"][:, obj], torch.tensor([0.0, 1.0, 0.0])[:, None].expand(3, int(obj.sum())))
    assert torch.equal(s["image"][:, ~obj], s["original"][:, ~obj])
    mean = build(root, split="train", masked=True).fill  # default: the dataset mean colour
    assert mean.shape == (3,) and 0.3 < float(mean.mean()) < 0.7


def test_missing_root_and_mask_errors(tmp_path, root):
    with pytest.raises(MissingDataError, match=r"VOCdevkit/VOC2012.*\n.*expected layout.*SegmentationClass"):
        build(tmp_path, split="train")
    voc = write_voc(tmp_path / "broken")
    (voc / "SegmentationClass" / f"{VAL[2]}.png").unlink()
    with pytest.raises(UnpairedFileError, match=rf"{VAL[2]}\.jpg has no mask .*SegmentationClass/{VAL[2]}\.png"):
        build(tmp_path / "broken", split="val")


def test_datamodule_spec(root):
    dm = SaliencyDataModule(root=str(root), train={"dataset": "voc", "split": "train", "fold": 1},
                            test={"voc": {"dataset": "voc", "split": "test", "fold": 1}},
                            image_size=24, batch_size=2, num_workers=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and batch["class_mask"].shape == (2, 24, 24)
    tb = next(iter(dm.test_dataloader()[0]))
    assert isinstance(tb["gt"], list) and tb["labels"].shape[1] == 20


@pytest.mark.skipif(not (SHARED / "voc2012_sample").is_dir(), reason="../shared/data/voc2012_sample not available")
def test_real_voc_sample():
    ds = build(SHARED, split="all", folder="voc2012_sample", image_size=64)
    assert ds.names == ["2007_000032"]
    s = ds[0]
    assert s["gt"].shape == (281, 500) and set(torch.unique(s["gt_class"]).tolist()) == {0, 1, 15, 255}
    assert set(torch.unique(s["class_mask"]).tolist()) == {0, 1, 15, 255}
    assert s["labels"].nonzero().ravel().tolist() == [0, 14]  # no Annotations: from the mask
    assert int(s["label"]) == 0  # the aeroplanes (4734 px) dwarf the persons (866 px)
    assert int((s["gt"] > 0).sum()) == 4734 + 866  # void (5355 px) is not salient


@pytest.mark.skipif(not (SHARED / "voc2012_sample").is_dir(), reason="../shared/data/voc2012_sample not available")
def test_real_voc_sample_masked_images_hide_the_void_outline():
    from salseg.methods.gd_saliency.classifier import cnn_inputs

    fill = torch.tensor([0.123, 0.456, 0.789])
    s = build(SHARED, split="all", folder="voc2012_sample", image_size=64)[0]
    batch = {k: (v[None] if isinstance(v, torch.Tensor) else torch.tensor([v])) for k, v in s.items()
             if k in ("image", "mask", "class_mask", "label", "has_mask")}
    void = s["class_mask"] == 255
    assert int(void.sum()) > 100  # the sample's void band (5,355 px at full size) outlines the aeroplanes
    masked, _ = cnn_inputs("CNN2", batch, fill, 20)  # the GD method's on-the-fly masking
    on_disk = build(SHARED, split="all", folder="voc2012_sample", image_size=64, masked=True, fill=fill.tolist())[0]
    for img in (masked[0], on_disk["image"]):
        hidden = s["class_mask"] != 0
        assert torch.equal(img[:, hidden], fill[:, None].expand(3, int(hidden.sum())))  # no void pixel survives
        assert torch.equal(img[:, ~hidden], s["image"][:, ~hidden])  # background untouched
