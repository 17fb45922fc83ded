"""MS COCO: a tiny COCO tree written here (polygon, compressed RLE and crowd uncompressed RLE annotations), the
class mapping, largest-object label, the single-category subset, masked images and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402

from salseg.data import DATASETS, BuildContext, MissingDataError, SaliencyDataModule, ann_to_mask  # noqa: E402

H, W = 16, 20
CATS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]  # ids with gaps


def _rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def _uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.astype(np.uint8).ravel(order="F")  # column-major runs, starting with a run of zeros
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return {"size": [H, W], "counts": runs}


def _box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def write_coco(base: Path, split: str = "val", year: int = 2017) -> None:
    img_dir = base / f"{split}{year}"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(4):
        name = f"{10 + i:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(img_dir / name)
        images.append({"id": 10 + i, "file_name": name, "height": H, "width": W})
    dog = _box(2, 12, 8, 18)  # 100 px
    anns = [
        # image 10: a person polygon (6 x 4 = 24 px, on top of the dog) and a compressed-RLE dog: two categories
        {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0, "area": 24.0,
         "segmentation": [[10, 4, 16, 4, 16, 8, 10, 8]]},
        {"id": 2, "image_id": 10, "category_id": 18, "iscrowd": 0, "area": 100.0, "segmentation": _rle(dog)},
        # image 11: two car polygons and a crowd of cars (uncompressed RLE, larger than both): one category
        {"id": 3, "image_id": 11, "category_id": 3, "iscrowd": 0, "area": 16.0,
         "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        {"id": 4, "image_id": 11, "category_id": 3, "iscrowd": 0, "area": 30.0,
         "segmentation": [[5, 10, 11, 10, 11, 15, 5, 15]]},
        {"id": 5, "image_id": 11, "category_id": 3, "iscrowd": 1, "area": 40.0,
         "segmentation": _uncompressed_rle(_box(0, 4, 10, 20))},
        # image 12: no annotation (left out); image 13: one dog (compressed RLE)
        {"id": 6, "image_id": 13, "category_id": 18, "iscrowd": 0, "area": 100.0, "segmentation": _rle(dog)},
    ]
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": CATS}
    (base / "annotations" / f"instances_{split}{year}.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("data")
    write_coco(r)
    return r


def build(root: Path, role: str = "val", image_size: int = 32, **kw):
    return DATASETS["coco"](BuildContext(dataset="coco", root=Path(root), role=role, image_size=image_size),
                            split=kw.pop("split", "val"), **kw)


def test_mapping_and_sample_contract(root):
    ds = build(root)
    assert ds.names == ["000000000010", "000000000011", "000000000013"]  # image 12 has no annotation
    assert ds.class_names == ("person", "car", "dog") and ds.cat_id_to_class == {1: 0, 3: 1, 18: 2}
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (1, 32, 32) and s["class_mask"].shape == (32, 32)
    assert s["class_mask"].dtype == torch.int64 and s["labels"].dtype == torch.float32
    assert s["labels"].tolist() == [1.0, 0.0, 1.0] and int(s["label"]) == 2  # the dog is the largest
    gtc = s["gt_class"].numpy()
    assert gtc.shape == (H, W) and set(np.unique(gtc).tolist()) == {0, 1, 3}
    assert (gtc[4:8, 10:16] == 1).all()  # the small person is painted over the large dog
    assert int((gtc == 3).sum()) == 100 - 24 and torch.equal(s["gt"] > 0, s["gt_class"] > 0)
    assert torch.equal(s["mask"][0] > 0, s["class_mask"] > 0)


def test_ann_to_mask_formats():
    poly = {"segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]}
    assert ann_to_mask(poly, H, W)[0:4, 0:4].all()
    m = _box(3, 9, 2, 7)
    assert np.array_equal(ann_to_mask({"segmentation": _rle(m)}, H, W), m)
    assert np.array_equal(ann_to_mask({"segmentation": _uncompressed_rle(m)}, H, W), m)


def test_crowd_and_label(root):
    s = build(root)[1]
    gtc = s["gt_class"].numpy()
    assert (gtc[0:4, 10:20] == 2).all() and int(s["label"]) == 1  # crowd = car object; label = car
    s2 = build(root, crowd_ignore=True)[1]
    gtc2 = s2["gt_class"].numpy()
    assert (gtc2[0:4, 12:20] == 255).all() and not bool(s2["gt"][0:4, 12:20].any())


def test_single_category_and_categories(root):
    assert build(root, single_category=True).names == ["000000000011", "000000000013"]
    assert build(root, categories=["dog", 1]).names == ["000000000010", "000000000013"]
    assert build(root, single_category=True, categories=["car"]).names == ["000000000011"]
    with pytest.raises(ValueError, match="unknown category 'cat'"):
        build(root, categories=["cat"])


def test_masked_images(root):
    s = build(root, masked=True, fill=[1.0, 0.0, 0.0])[2]
    obj = s["class_mask"] != 0
    assert obj.any() and bool((s["image"][:, obj] == torch.tensor([1.0, 0.0, 0.0])[:, None]).all())
    assert torch.equal(s["image"][:, ~obj], s["original"][:, ~obj])
    assert build(root, masked=True).fill.shape == (3,)


def test_errors_and_layout_variants(tmp_path, root):
    with pytest.raises(MissingDataError, match=r"instances_train2014\.json.*\n.*expected layout"):
        build(root, split="train", year=2014)
    with pytest.raises(MissingDataError, match="folder not found"):
        build(tmp_path / "nope")
    write_coco(tmp_path / "coco", split="train", year=2014)
    assert len(build(tmp_path, split="train", year=2014)) == 3  # <root>/coco/... is found too
    (tmp_path / "coco" / "train2014" / "000000000013.jpg").unlink()
    with pytest.raises(Exception, match=r"000000000013\.jpg"):
        build(tmp_path, split="train", year=2014)[2]


def test_datamodule_spec(root):
    dm = SaliencyDataModule(root=str(root), train={"dataset": "coco", "split": "val", "single_category": True},
                            image_size=24, batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and batch["labels"].shape == (2, 3)
