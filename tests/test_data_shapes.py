"""The embedded ``shapes`` dataset and the data module on it (no files needed)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from salseg.data import DATASETS, SaliencyDataModule, ShapesDataset, collate_samples, render_shapes
from salseg.data.shapes import SHAPE_NAMES


def test_determinism_same_seed_index_identical_and_different_index_differs():
    a = ShapesDataset("test", size=10, seed=3, with_gt=True)
    b = ShapesDataset("test", size=10, seed=3, with_gt=True)
    for i in (0, 7):
        sa, sb = a[i], b[i]
        for k in ("image", "mask", "class_mask", "label", "labels", "gt"):
            assert torch.equal(sa[k], sb[k]), k
        assert sa["name"] == sb["name"]
    assert not torch.equal(a[0]["image"], a[1]["image"])
    c = ShapesDataset("test", size=10, seed=4)
    assert not torch.equal(a[0]["image"], c[0]["image"])
    # pure function of (seed, index): the order of access does not matter
    r1 = render_shapes(5, 123)
    render_shapes(5, 9)
    r2 = render_shapes(5, 123)
    assert np.array_equal(r1["image"], r2["image"]) and np.array_equal(r1["class_mask"], r2["class_mask"])


def test_sample_contract_and_invariants():
    k = 4
    ds = ShapesDataset("val", size=40, num_classes=k, image_size=96, with_gt=True)
    assert len(ds) == 40
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 96, 96) and s["image"].dtype == torch.float32
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        assert s["mask"].shape == (1, 96, 96) and s["mask"].dtype == torch.float32
        assert set(torch.unique(s["mask"]).tolist()) <= {0.0, 1.0}
        assert s["class_mask"].shape == (96, 96) and s["class_mask"].dtype == torch.int64
        assert int(s["class_mask"].min()) >= 0 and int(s["class_mask"].max()) <= k
        assert torch.equal(s["mask"][0] > 0, s["class_mask"] > 0)
        assert s["label"].dtype == torch.int64 and s["label"].ndim == 0
        assert s["labels"].shape == (k,) and s["labels"].dtype == torch.float32
        present = torch.zeros(k)
        for c in torch.unique(s["class_mask"]).tolist():
            if c > 0:
                present[c - 1] = 1
        assert torch.equal(s["labels"], present)
        objs = ds.objects(i)
        assert 1 <= len(objs) <= 3
        areas = [o["area"] for o in objs]
        assert s["label"].item() == objs[int(np.argmax(areas))]["class"]
        assert s["labels"][s["label"]] == 1
        assert sum(areas) == int(s["mask"].sum())  # every object pixel belongs to exactly one object
        assert s["gt"].dtype == torch.uint8 and s["gt"].shape == (96, 96)
        assert torch.equal(s["gt"], (s["mask"][0] * 255).to(torch.uint8))
        assert s["name"].startswith("shapes_") and s["dataset"] == "shapes"


def test_splits_are_disjoint_and_names_unique():
    tr, va, te = (ShapesDataset(sp, size=20) for sp in ("train", "val", "test"))
    names = [d[i]["name"] for d in (tr, va, te) for i in range(0, 20, 5)]
    assert len(set(names)) == len(names)
    assert tr[0]["name"] == "shapes_000000"
    assert not torch.equal(tr[0]["image"], va[0]["image"])
    assert not torch.equal(tr[0]["image"], te[0]["image"])
    with pytest.raises(IndexError):
        tr[20]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("holdout")


def test_options_classes_objects_and_sizes():
    ds = ShapesDataset("train", size=120, num_classes=8, image_size=64, max_objects=1)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert len(ds.objects(i)) == 1 and s["labels"].sum() == 1
        seen.add(int(s["label"]))
    assert seen == set(range(8)), f"classes seen: {sorted(seen)} of {SHAPE_NAMES}"
    multi = ShapesDataset("train", size=60, max_objects=3, min_objects=3)
    assert any(multi[i]["labels"].sum() >= 2 for i in range(len(multi)))
    # small objects exist (a few % of the image or less)
    fg = [float(ShapesDataset("test", size=80)[i]["mask"].mean()) for i in range(80)]
    assert min(fg) < 0.02 and max(fg) > 0.15
    with pytest.raises(ValueError, match="num_classes"):
        ShapesDataset(num_classes=9)


def _otsu(x: np.ndarray) -> float:
    hist, edges = np.histogram(x, bins=256, range=(0.0, 1.0))
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        sb = (mu[-1] * w - mu) ** 2 / (w * (1 - w))
    return float(edges[int(np.nanargmax(sb)) + 1])


def test_not_trivially_thresholdable():
    """A global intensity threshold must NOT solve the task (clutter, camouflage, textures)."""
    errs, ious, oracle = [], [], []
    for i in range(60):
        r = render_shapes(0, 2_000_000 + i)
        g = r["image"].astype(np.float32).mean(axis=2) / 255.0
        m = r["class_mask"] > 0
        p = g > _otsu(g)
        if p.mean() > 0.5:  # objects are the minority: take the smaller side
            p = ~p
        errs.append(float((p != m).mean()))
        ious.append((p & m).sum() / max((p | m).sum(), 1))
        # oracle: the best threshold and polarity for this very image, chosen with the ground truth
        best = 0.0
        for t in np.quantile(g, np.linspace(0.02, 0.98, 33)):
            for q in (g > t, g <= t):
                best = max(best, (q & m).sum() / max((q | m).sum(), 1))
        oracle.append(best)
    assert np.mean(errs) > 0.15, np.mean(errs)  # mean pixel error of Otsu thresholding is substantial
    assert np.mean(ious) < 0.4, np.mean(ious)
    assert np.mean(oracle) < 0.6, np.mean(oracle)  # even the per-image best threshold is far from perfect


def test_generation_speed():
    render_shapes(0, 0)
    n = 60
    t = time.perf_counter()
    for i in range(n):
        render_shapes(0, i)
    per_image = (time.perf_counter() - t) / n
    assert per_image < 0.03, f"{per_image * 1e3:.1f} ms per 128 px image"


def test_train_augmentation_keeps_targets_aligned():
    from salseg.data.transforms import build_transform

    torch.manual_seed(0)
    ds = ShapesDataset("train", size=8, image_size=128,
                       transform=build_transform(112, True, {"crop_scale": [0.5, 1.0], "hflip": True}))
    for i in range(8):
        s = ds[i]
        assert s["image"].shape == (3, 112, 112)
        assert torch.equal(s["mask"][0] > 0, s["class_mask"] > 0)
        assert "gt" not in s


def test_cache_gives_identical_samples_and_renders_once(monkeypatch):
    from salseg.data import shapes as shapes_module

    plain = ShapesDataset("val", size=4, image_size=64, with_gt=True)
    cached = ShapesDataset("val", size=4, image_size=64, with_gt=True, cache=True)
    calls = []
    real = shapes_module.render_shapes
    monkeypatch.setattr(shapes_module, "render_shapes", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    for _ in range(2):  # second pass: served from the cache
        for i in range(4):
            a, b = plain[i], cached[i]
            for key in ("image", "mask", "class_mask", "label", "labels", "gt"):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    # the plain dataset rendered each index on both passes, the cached one only on the first
    assert len(calls) == 12 and all(calls.count(plain._index(i)) == 3 for i in range(4))
    assert len(cached._cache) == 4


# ---------------------------------------------------------------------------------------------- data module


def _dm(**kw):
    args = dict(
        root="/nonexistent",
        train={"dataset": "shapes", "split": "train", "size": 12, "image_size": 64},
        val={"dataset": "shapes", "split": "val", "size": 5, "image_size": 64},
        test={"easy": {"dataset": "shapes", "split": "test", "size": 5, "image_size": 64, "clutter": 0.0},
              "full": {"dataset": "shapes", "split": "test", "size": 7, "image_size": 64}},
        image_size=48, batch_size=4, num_workers=0,
    )
    args.update(kw)
    return SaliencyDataModule(**args)


def test_datamodule_loaders_names_and_batches():
    dm = _dm(augment={"crop_scale": [0.9, 1.0], "hflip": True})
    dm.setup("fit")
    dm.setup("test")
    assert dm.test_names == ["easy", "full"] and dm.val_names == ["shapes"]
    loaders = dm.test_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 2
    names = [n for b in loaders[1] for n in b["name"]]
    assert names == [f"shapes_{2_000_000 + i:06d}" for i in range(7)]  # never shuffled
    b = next(iter(loaders[0]))
    assert b["image"].shape == (4, 3, 48, 48) and b["mask"].shape == (4, 1, 48, 48)
    assert isinstance(b["gt"], list) and b["gt"][0].shape == (64, 64) and b["gt"][0].dtype == torch.uint8
    assert b["labels"].shape == (4, 4) and b["class_mask"].shape == (4, 48, 48)
    val = dm.val_dataloader()
    assert len(val) == 1 and "gt" in next(iter(val[0]))
    # training: shuffled with a seeded generator (same seed -> same order), drop_last, no gt
    order1 = [n for b in dm.train_dataloader() for n in b["name"]]
    order2 = [n for b in _dm(augment=None).train_dataloader() for n in b["name"]]
    assert order1 == order2 and len(order1) == 12 and order1 != sorted(order1)
    order3 = [n for b in _dm(seed=1).train_dataloader() for n in b["name"]]
    assert order3 != order1
    assert "gt" not in next(iter(dm.train_dataloader()))
    assert dm.num_classes == 4
    # a test set mapped to null is dropped (how a comparison entry removes one its experiment names)
    assert _dm(test={"easy": None, "full": {"dataset": "shapes", "split": "test", "size": 3}}).test_names == ["full"]


def test_datamodule_config_errors():
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*known datasets: .*msra10k.*shapes"):
        _dm(train={"dataset": "nope"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\].*accepts.*num_classes"):
        _dm(test={"x": {"dataset": "shapes", "colour": 1}})
    with pytest.raises(ValueError, match="augment: unknown key"):
        _dm(augment={"rotate": 10})
    with pytest.raises(ValueError, match="distortion"):
        _dm(distortion={"kind": "blur", "sigma": 1})
    with pytest.raises(ValueError, match="test sets only"):
        _dm(val={"dataset": "shapes", "split": "val", "distortion": {"kind": "jpeg", "quality": 10}})
    assert "shapes" in DATASETS and "ecssd" in DATASETS


def test_datamodule_distortion_applies_to_test_only():
    spec = {"dataset": "shapes", "split": "test", "size": 3, "image_size": 64}
    clean = _dm(test={"t": spec})
    noisy = _dm(test={"t": spec, "off": dict(spec, distortion=None)},
                val=dict(spec, split="test"), distortion={"kind": "awgn", "variance": 0.02})
    for dm in (clean, noisy):
        dm.setup("fit")
        dm.setup("test")
    a, b, off = clean.test_datasets[0][1], noisy.test_datasets[0][1], noisy.test_datasets[1][1]
    assert not torch.equal(a["image"], b["image"])
    assert torch.equal(a["image"], off["image"])  # an explicit null switches it off for one set
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["mask"], b["mask"])
    assert torch.equal(noisy.val_datasets[0][1]["image"], a["image"])  # val is never distorted
    # reproducible per (seed, index)
    assert torch.equal(b["image"], _dm(test={"t": spec}, distortion={"kind": "awgn", "variance": 0.02})
                       .test_dataloader()[0].dataset[1]["image"])


def test_eval_loaders_use_unpadded_distributed_sampler(tmp_path):
    import torch.distributed as dist

    from salseg.data.datamodule import UnpaddedDistributedSampler

    # how the sampler splits a set over 2 processes: every index exactly once, none repeated
    ds = ShapesDataset("test", size=7, image_size=32)
    parts = [list(UnpaddedDistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == list(range(7))
    # a set smaller than the number of processes: the extra process gets nothing (no error, no repeat)
    one = ShapesDataset("test", size=1, image_size=32)
    parts = [list(UnpaddedDistributedSampler(one, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert parts == [[0], []]

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        dm = _dm()
        test_loader = dm.test_dataloader()[0]
        assert isinstance(test_loader.sampler, UnpaddedDistributedSampler)
        assert isinstance(dm.val_dataloader()[0].sampler, UnpaddedDistributedSampler)
        assert [n for b in test_loader for n in b["name"]] == [f"shapes_{2_000_000 + i:06d}" for i in range(5)]
    finally:
        dist.destroy_process_group()


def test_train_order_depends_on_the_epoch_only():
    """A resumed run at epoch e shuffles like an uninterrupted one: the order is a function of (seed, epoch)."""
    from salseg.data.datamodule import EpochSeededRandomSampler

    ds = ShapesDataset("train", size=20, image_size=32)
    a, b = EpochSeededRandomSampler(ds, seed=3), EpochSeededRandomSampler(ds, seed=3)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch0 != epoch1 and sorted(epoch1) == list(range(20))
    b.set_epoch(1)  # a fresh sampler (a resumed run) jumping straight to epoch 1
    assert list(b) == epoch1


def test_collate_mixed_sizes():
    a = ShapesDataset("test", size=2, image_size=32, with_gt=True)[0]
    b = ShapesDataset("test", size=2, image_size=40, with_gt=True)[1]
    batch = collate_samples([a, b])
    assert isinstance(batch["gt"], list) and batch["gt"][1].shape == (40, 40)
    assert isinstance(batch["image"], list)  # different input sizes cannot be stacked
    assert batch["label"].shape == (2,) and batch["name"] == [a["name"], b["name"]]
