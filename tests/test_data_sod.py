"""SOD folder datasets: every standard layout on tiny trees written here, splits, errors, image/mask decoding,
and the real SOD-300 files from ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.data import (
    DATASETS,
    BuildContext,
    CorruptFileError,
    DataError,
    MissingDataError,
    SaliencyDataModule,
    SizeMismatchError,
    UnpairedFileError,
    list_pairs,
    read_image,
    read_list_file,
    read_mask,
    seeded_split,
)

SHARED = Path(os.environ.get("SALSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# name -> (image folder, image ext, mask folder, mask ext), relative to the data root
TREES = {
    "msra10k": ("MSRA10K/MSRA10K_Imgs_GT/Imgs", ".jpg", "MSRA10K/MSRA10K_Imgs_GT/Imgs", ".png"),
    "msra1k": ("MSRA1K/images", ".jpg", "MSRA1K/masks", ".png"),
    "hkuis": ("HKU-IS/imgs", ".png", "HKU-IS/gt", ".png"),
    "dutomron": ("DUT-OMRON/DUT-OMRON-image", ".jpg", "DUT-OMRON/pixelwiseGT-new-PNG", ".png"),
    "ecssd": ("ECSSD/images", ".jpg", "ECSSD/ground_truth_mask", ".png"),
    "sod": ("SOD/images", ".jpg", "SOD/gt", ".png"),
    "duts_tr": ("DUTS/DUTS-TR/DUTS-TR-Image", ".jpg", "DUTS/DUTS-TR/DUTS-TR-Mask", ".png"),
    "duts_te": ("DUTS/DUTS-TE/DUTS-TE-Image", ".jpg", "DUTS/DUTS-TE/DUTS-TE-Mask", ".png"),
}
SIZES = {"msra10k": 20, "msra1k": 5, "hkuis": 20, "dutomron": 4, "ecssd": 4, "sod": 3, "duts_tr": 6, "duts_te": 4}


def _mask_array(h: int, w: int, k: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[2:7, 2 + k % 3 : 9] = 200  # object: raw value 200 (> 128)
    m[8:, 0:3] = 100  # a grey region below the metrics' threshold
    return m


def write_pair(img_path: Path, mask_path: Path, k: int = 0, size: tuple[int, int] = (13, 11)) -> None:
    """A (W, H) = size image / mask pair."""
    w, h = size
    img_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(k)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(img_path, quality=95)
    Image.fromarray(_mask_array(h, w, k)).save(mask_path)


def write_tree(root: Path, name: str, n: int | None = None, prefix: str = "") -> list[str]:
    img_dir, iext, msk_dir, mext = TREES[name]
    stems = [f"{prefix}{name}_{i:03d}" for i in range(n if n is not None else SIZES[name])]
    for i, s in enumerate(stems):
        write_pair(root / img_dir / f"{s}{iext}", root / msk_dir / f"{s}{mext}", k=i, size=(13 + i % 2, 11))
    return stems


def build(root: Path, dataset: str, role: str = "test", image_size: int = 16, **kw):
    ctx = BuildContext(dataset=dataset, root=Path(root), role=role, image_size=image_size)
    return DATASETS[dataset](ctx, **kw)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("data")
    stems = {name: write_tree(root, name) for name in TREES}
    return root, stems


# ---------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name,split", [("msra10k", "all"), ("msra1k", "test"), ("msra1k", "all"),
                                        ("hkuis", "all"), ("dutomron", "all"), ("ecssd", "test"), ("sod", "all"),
                                        ("duts", "train"), ("duts", "test")])
def test_every_layout_pairs_by_stem(tree, name, split):
    root, stems = tree
    key = {"duts": f"duts_{'tr' if split == 'train' else 'te'}"}.get(name, name)
    ds = build(root, name, role="train" if split == "train" else "test", split=split)
    assert ds.stems == sorted(stems[key])
    s = ds[1]
    assert s["name"] == sorted(stems[key])[1] and s["dataset"] == name
    assert s["image"].shape == (3, 16, 16) and s["image"].dtype == torch.float32
    assert float(s["image"].min()) >= 0 and float(s["image"].max()) <= 1
    assert s["mask"].shape == (1, 16, 16) and set(torch.unique(s["mask"]).tolist()) == {0.0, 1.0}
    if split == "train":
        assert "gt" not in s
    else:  # original resolution, raw values: the grey 100 region is kept, not binarised
        assert s["gt"].dtype == torch.uint8 and s["gt"].shape == (11, 14)
        assert set(torch.unique(s["gt"]).tolist()) == {0, 100, 200}


def test_msra1k_alternative_layout_and_folder_override(tmp_path):
    for i in range(3):
        write_pair(tmp_path / "ASD" / "Imgs" / f"{i}.jpg", tmp_path / "ASD" / "GT" / f"{i}.png", k=i)
    ds = build(tmp_path, "msra1k", folder="ASD")
    assert ds.stems == ["0", "1", "2"]
    with pytest.raises(ValueError, match="test set"):
        build(tmp_path, "msra1k", folder="ASD", split="train")


def test_msra10k_seeded_split(tree):
    root, stems = tree
    kw = dict(train_size=12, val_size=3)
    parts = {sp: build(root, "msra10k", split=sp, **kw).stems for sp in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [12, 3, 5]
    assert set(parts["train"]).isdisjoint(parts["val"]) and set(parts["train"]).isdisjoint(parts["test"])
    assert set(parts["val"]).isdisjoint(parts["test"])
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(stems["msra10k"])
    assert build(root, "msra10k", split="train", **kw).stems == parts["train"]  # deterministic
    assert build(root, "msra10k", split="train", split_seed=1, **kw).stems != parts["train"]
    # MEnet's 8500/500 counts on a partial copy fall back to the same proportions, with a warning
    with pytest.warns(UserWarning, match="fewer than train_size"):
        tr = build(root, "msra10k", split="train")
    assert len(tr) == 17
    with pytest.warns(UserWarning):
        te = build(root, "msra10k", split="test")
    assert set(tr.stems).isdisjoint(te.stems) and len(te) == 2


def test_hkuis_seeded_and_list_files(tmp_path):
    stems = write_tree(tmp_path, "hkuis")
    parts = {sp: build(tmp_path, "hkuis", split=sp).stems for sp in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [16, 1, 3]
    assert len(set().union(*parts.values())) == 20
    base = tmp_path / "HKU-IS"
    (base / "train.txt").write_text("\n".join(stems[:10]) + "\n")
    (base / "test.txt").write_text("# comment\n" + "\n".join(f"imgs/{s}.png" for s in stems[15:]) + "\n\n")
    assert build(tmp_path, "hkuis", split="train").stems == stems[:10]
    assert build(tmp_path, "hkuis", split="test").stems == stems[15:]
    with pytest.raises(MissingDataError, match="val.txt"):
        build(tmp_path, "hkuis", split="val")
    # an explicit list_file works for any dataset, relative to its folder or absolute
    lf = tmp_path / "mine.txt"
    lf.write_text(f"{stems[3]}\n{stems[1]}.png extra\n")
    assert build(tmp_path, "hkuis", split="val", list_file=str(lf)).stems == sorted([stems[1], stems[3]])
    lf.write_text("missing_stem\n")
    with pytest.raises(UnpairedFileError, match="missing_stem"):
        build(tmp_path, "hkuis", list_file=str(lf))


def test_duts_val_is_carved_from_train(tree):
    root, stems = tree
    tr = build(root, "duts", role="train", split="train", val_size=2)
    va = build(root, "duts", role="val", split="val", val_size=2)
    assert len(tr) == 4 and len(va) == 2 and set(tr.stems).isdisjoint(va.stems)
    assert sorted(tr.stems + va.stems) == sorted(stems["duts_tr"])
    with pytest.raises(ValueError, match="val_size"):
        build(root, "duts", split="val")


def test_seeded_split_helper():
    stems = [f"s{i}" for i in range(10)]
    a = seeded_split(stems, "train", train_size=0.6, val_size=0.2, seed=3)
    assert a == seeded_split(list(reversed(stems)), "train", train_size=0.6, val_size=0.2, seed=3)
    assert len(a) == 6 and seeded_split(stems, "all", train_size=1, val_size=1) == sorted(stems)
    with pytest.raises(ValueError, match="unknown split"):
        seeded_split(stems, "dev", train_size=1, val_size=1)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_root_names_path_and_layout(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(MissingDataError) as e:
        build(nowhere, "ecssd")
    msg = str(e.value)
    assert str(nowhere / "ECSSD") in msg and "ECSSD/images/*.jpg" in msg and "ground_truth_mask" in msg
    (tmp_path / "DUT-OMRON" / "DUT-OMRON-image").mkdir(parents=True)
    with pytest.raises(MissingDataError, match="pixelwiseGT-new-PNG"):
        build(tmp_path, "dutomron")
    with pytest.raises(FileNotFoundError, match="MSRA10K_Imgs_GT/Imgs"):
        build(nowhere, "msra10k")
    with pytest.raises(FileNotFoundError, match="DUTS-TE-Mask"):
        build(nowhere, "duts", split="test")


def test_unpaired_files_are_named_or_skipped(tmp_path):
    write_tree(tmp_path, "ecssd")
    write_pair(tmp_path / "ECSSD/images/lonely.jpg", tmp_path / "elsewhere/lonely.png")
    with pytest.raises(UnpairedFileError, match=r"lonely\.jpg"):
        build(tmp_path, "ecssd")
    with pytest.warns(UserWarning, match="skipped 1 unpaired"):
        assert len(build(tmp_path, "ecssd", skip_unpaired=True)) == 4
    (tmp_path / "ECSSD/images/lonely.jpg").unlink()
    write_pair(tmp_path / "elsewhere/orphan.jpg", tmp_path / "ECSSD/ground_truth_mask/orphan.png")
    with pytest.raises(UnpairedFileError, match=r"orphan\.png"):
        build(tmp_path, "ecssd")


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    write_tree(tmp_path, "sod")
    write_pair(tmp_path / "SOD/images/big.jpg", tmp_path / "x/big.png", size=(20, 10))
    write_pair(tmp_path / "y/big.jpg", tmp_path / "SOD/gt/big.png", size=(13, 11))
    ds = build(tmp_path, "sod")
    idx = ds.stems.index("big")
    with pytest.raises(SizeMismatchError) as e:
        ds[idx]
    msg = str(e.value)
    assert "big.jpg" in msg and "big.png" in msg and "20x10" in msg and "13x11" in msg
    with pytest.raises(SizeMismatchError, match="big.png"):
        build(tmp_path, "sod", verify=True)


@pytest.mark.parametrize("which", ["image", "mask"])
def test_truncated_file_is_named(tmp_path, which):
    write_tree(tmp_path, "ecssd")
    victim = tmp_path / ("ECSSD/images/ecssd_002.jpg" if which == "image" else "ECSSD/ground_truth_mask/ecssd_002.png")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    ds = build(tmp_path, "ecssd")
    ds[1]  # the others load
    with pytest.raises(CorruptFileError, match=victim.name):
        ds[2]


def test_duplicate_stems_and_test_set_splits(tmp_path):
    write_tree(tmp_path, "ecssd")
    write_pair(tmp_path / "ECSSD/images/ecssd_000.png", tmp_path / "z/ecssd_000.png")
    with pytest.raises(DataError, match="share the stem"):
        build(tmp_path, "ecssd")
    with pytest.raises(ValueError, match="test set"):
        build(tmp_path, "ecssd", split="train")


# ---------------------------------------------------------------------------------------------- decoding


def test_read_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([rgb, np.full((7, 9), 50, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "i16.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (7, 9, 3) and g.dtype == np.uint8 and np.array_equal(g[..., 2], gray)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped, colour kept
    assert np.array_equal(read_image(tmp_path / "i16.png")[..., 1], gray)  # 16-bit scaled to 8-bit
    p = read_image(tmp_path / "p.png")
    assert p.shape == (7, 9, 3) and np.abs(p.astype(int) - rgb).mean() < 40
    assert np.array_equal(read_image(tmp_path / "rgb.bmp"), rgb)
    assert read_image(tmp_path / "g.png").flags.writeable


def test_read_mask_modes(tmp_path):
    m = _mask_array(11, 13, 0)  # {0, 100, 200}
    binary = m == 200
    Image.fromarray(m).save(tmp_path / "l.png")
    Image.fromarray(binary).save(tmp_path / "one.png")  # 1-bit
    assert Image.open(tmp_path / "one.png").mode == "1"
    Image.fromarray(m.astype(np.uint16) * 257).save(tmp_path / "i16.png")
    Image.fromarray(np.dstack([m, m, m])).save(tmp_path / "rgb.png")
    pal = Image.fromarray(binary.astype(np.uint8), mode="L").convert("P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    Image.fromarray(binary.astype(np.uint8)).save(tmp_path / "zero_one.png")  # 0/1-coded
    Image.fromarray(np.dstack([np.zeros_like(m)] * 3 + [m])).save(tmp_path / "matte.png")  # alpha matte
    Image.fromarray(np.dstack([m, np.full_like(m, 255)]), mode="LA").save(tmp_path / "la.png")

    assert np.array_equal(read_mask(tmp_path / "l.png"), m)
    assert np.array_equal(read_mask(tmp_path / "i16.png"), m)
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), m)
    assert np.array_equal(read_mask(tmp_path / "matte.png"), m)
    assert np.array_equal(read_mask(tmp_path / "la.png"), m)
    for f in ("one.png", "pal.png", "zero_one.png"):
        out = read_mask(tmp_path / f)
        assert out.dtype == np.uint8 and out.shape == (11, 13), f
        assert np.array_equal(out, binary.astype(np.uint8) * 255), f
    assert Image.open(tmp_path / "pal.png").mode == "P"
    with pytest.raises(MissingDataError):
        read_mask(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match="junk.png"):
        read_mask(tmp_path / "junk.png")


def test_list_pairs_and_list_file(tmp_path):
    for s in ("b", "a", "c"):
        write_pair(tmp_path / "i" / f"{s}.jpg", tmp_path / "m" / f"{s}.png")
    (tmp_path / "i" / "notes.txt").write_text("ignored")
    (tmp_path / "i" / ".hidden.jpg").write_text("ignored")
    pairs = list_pairs(tmp_path / "i", tmp_path / "m")
    assert [p.stem for p in pairs] == ["a", "b", "c"] and pairs[0].mask.name == "a.png"
    lf = tmp_path / "l.txt"
    lf.write_text("c.jpg c.png\n  # nothing\nb\n")
    assert read_list_file(lf) == ["c", "b"]
    assert [p.stem for p in list_pairs(tmp_path / "i", tmp_path / "m", stems=read_list_file(lf))] == ["b", "c"]


# ---------------------------------------------------------------------------------------------- data module


def test_datamodule_on_sod_folders(tree):
    root, stems = tree
    dm = SaliencyDataModule(
        root=str(root),
        train={"dataset": "msra10k", "split": "train", "train_size": 12, "val_size": 3},
        val={"dataset": "msra10k", "split": "val", "train_size": 12, "val_size": 3},
        test={"ECSSD": {"dataset": "ecssd", "split": "all"}, "DUT-O": {"dataset": "dutomron"},
              "ecssd_jpeg": {"dataset": "ecssd", "distortion": {"kind": "jpeg", "quality": [10, 30]}}},
        image_size=24, batch_size=4, eval_batch_size=3, num_workers=0,
        augment={"crop_scale": [0.9, 1.0], "hflip": True},
    )
    assert dm.test_names == ["ECSSD", "DUT-O", "ecssd_jpeg"]
    dm.setup("fit")
    dm.setup("test")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 3, 24, 24) and "gt" not in b
    assert len(dm.train_dataset) == 12 and len(dm.val_datasets[0]) == 3
    loaders = dm.test_dataloader()
    got = [n for batch in loaders[0] for n in batch["name"]]
    assert got == sorted(stems["ecssd"])
    batch = next(iter(loaders[0]))
    assert [tuple(g.shape) for g in batch["gt"]] == [(11, 13), (11, 14), (11, 13)]
    jb = next(iter(loaders[2]))
    assert not torch.equal(jb["image"], batch["image"]) and all(
        torch.equal(a, c) for a, c in zip(jb["gt"], batch["gt"], strict=True))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['folders'\].*accepts.*'folder'"):
        SaliencyDataModule(root=str(root), train=None, val=None, test={"x": {"dataset": "sod", "folders": "a"}})
    bad = SaliencyDataModule(root=str(root / "nope"), train=None, val=None, test={"x": {"dataset": "ecssd"}})
    with pytest.raises(MissingDataError, match="nope"):
        bad.setup("test")


def test_datamodule_accepts_omegaconf():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"root": "/x", "train": None, "val": [{"dataset": "shapes", "split": "val", "size": 2}],
                            "test": {"s": {"dataset": "shapes", "split": "test", "size": 2}},
                            "image_size": 32, "num_workers": 0})
    dm = SaliencyDataModule(**cfg)
    assert dm.val_names == ["shapes"] and dm.test_names == ["s"]
    assert len(dm.test_dataloader()[0].dataset) == 2


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED / "sod300").is_dir(), reason="../shared/data/sod300 not available")
def test_real_sod300_with_sod_layout():
    root = SHARED
    n_images = len(list((root / "sod300" / "images").glob("*.jpg")))
    n_masks = len(list((root / "sod300" / "gt").glob("*.png")))
    assert n_masks > n_images > 0
    with pytest.raises(UnpairedFileError, match=r"mask\(s\) without an image, e\.g\. .*sod300/gt/\w+\.png"):
        build(root, "sod", folder="sod300")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = build(root, "sod", folder="sod300", skip_unpaired=True, image_size=64)
    assert any(f"skipped {n_masks - n_images} unpaired" in str(x.message) for x in w)
    assert len(ds) == n_images
    for i in range(len(ds)):
        s = ds[i]
        img = read_image(ds.pairs[i].image)
        assert s["gt"].shape == img.shape[:2] and s["gt"].dtype == torch.uint8
        assert set(torch.unique(s["gt"]).tolist()) <= {0, 255} and int(s["gt"].max()) == 255  # 1-bit -> {0,255}
        assert s["image"].shape == (3, 64, 64) and 0 < float(s["mask"].mean()) < 1
