"""No test image reaches training: the overlap check (same dataset + stem, or the same pixels, re-encoded copies
included), the refusal naming the count and the files, the recorded override, and MSRA1K excluded from MSRA10K
before MEnet's 8500 / 500 split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_runner import _tiny_experiment, tiny_model_registered  # noqa: F401 (a fixture)

from salseg import registry
from salseg.config import compose
from salseg.data import SaliencyDataModule
from salseg.data import overlap as overlap_mod
from salseg.data.overlap import IdentityIndex, TestOverlapError, identities

ROOT = Path(__file__).resolve().parents[1]


def _photo(k: int, size=(40, 32)) -> np.ndarray:
    """A (W, H) = size smooth random 'photo' (JPEG-friendly, so a re-encoded copy stays close to the original)."""
    rng = np.random.default_rng(1000 + k)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


def _save_jpeg(arr: np.ndarray, path: Path, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=quality)


def _mask(path: Path, shape) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(shape[:2], np.uint8)
    m[5:20, 8:25] = 255
    Image.fromarray(m).save(path)


@pytest.fixture
def msra_tree(tmp_path):
    """MSRA10K with 20 photos (stems 100..119); MSRA1K = 5 of them under other names: 3 byte-identical copies and
    2 re-encoded at another JPEG quality (same photo, other bytes and pixels)."""
    root = tmp_path / "data"
    imgs = root / "MSRA10K/MSRA10K_Imgs_GT/Imgs"
    for k in range(20):
        arr = _photo(k)
        _save_jpeg(arr, imgs / f"{100 + k}.jpg")
        _mask(imgs / f"{100 + k}.png", arr.shape)
    for j, k in enumerate([0, 3, 7, 11, 18]):
        dst = root / f"MSRA1K/images/0_{j}_{k}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if j < 3:
            dst.write_bytes((imgs / f"{100 + k}.jpg").read_bytes())
        else:  # decode and re-encode at quality 80
            _save_jpeg(np.asarray(Image.open(imgs / f"{100 + k}.jpg").convert("RGB")), dst, quality=80)
        _mask(root / f"MSRA1K/masks/0_{j}_{k}.png", (32, 40))
    return root


def _dm(root, sizes=(12, 3), **kw):
    spec = {"dataset": "msra10k", "train_size": sizes[0], "val_size": sizes[1]}
    return SaliencyDataModule(root=str(root), train={**spec, "split": "train", **kw.pop("train_extra", {})},
                              val={**spec, "split": "val", **kw.pop("val_extra", {})},
                              test={"msra1k": {"dataset": "msra1k", "split": "all"}},
                              image_size=16, num_workers=0, **kw)


def test_overlap_is_refused_naming_count_and_files(msra_tree):
    dm = _dm(msra_tree)
    with pytest.raises(TestOverlapError) as err:
        dm.check_overlap()
    msg = str(err.value)
    assert "test images would reach training" in msg and "in the test set msra1k" in msg
    # with train + val = all 20, every one of the 5 copies is in one of the two pools
    dm2 = _dm(msra_tree, sizes=(15, 5), allow_overlap=True)
    proto = dm2.check_overlap()
    assert sum(o["count"] for o in proto["overlap"]) == 5
    assert proto["allow_overlap"] is True
    first = proto["overlap"][0]["first"][0]
    assert first[0].endswith(".jpg") and "MSRA1K/images/0_" in first[1]
    assert "data.allow_overlap=true" in msg


def test_reencoded_copies_are_found_by_their_pixels(msra_tree):
    a = identities("msra1k", [(p.stem, p) for p in sorted((msra_tree / "MSRA1K/images").glob("*.jpg"))])
    b = identities("msra10k", [(p.stem, p) for p in sorted((msra_tree / "MSRA10K/MSRA10K_Imgs_GT/Imgs").glob("*.jpg"))])
    idx = IdentityIndex(b)
    hits = [idx.find(x) for x in a]
    assert [h.stem for h in hits] == ["100", "103", "107", "111", "118"]
    assert a[3].digest != hits[3].digest  # re-encoded: another exact digest, found by the thumbnail
    assert a[0].digest == hits[0].digest


def test_same_stem_in_another_dataset_is_not_an_overlap(tmp_path):
    root = tmp_path
    for ds, folder, k in (("ECSSD", "ground_truth_mask", 1), ("SOD", "gt", 2)):
        _save_jpeg(_photo(k), root / ds / "images" / "0001.jpg")
        _mask(root / ds / folder / "0001.png", (32, 40))
    a = identities("ecssd", [("0001", root / "ECSSD/images/0001.jpg")])
    b = identities("sod", [("0001", root / "SOD/images/0001.jpg")])
    assert IdentityIndex(b).find(a[0]) is None
    assert IdentityIndex(identities("ecssd", [("0001", root / "SOD/images/0001.jpg")])).find(a[0]) is not None


def test_exclude_removes_the_test_images_before_the_split(msra_tree, capsys):
    dm = _dm(msra_tree, train_extra={"exclude": ["msra1k"]}, val_extra={"exclude": ["msra1k"]})
    proto = dm.check_overlap()  # no error: nothing overlaps any more
    assert proto["overlap"] == []
    assert proto["excluded"]["train msra10k"]["count"] == 5 and proto["excluded"]["val msra10k"]["count"] == 5
    assert len(dm.train_dataset) == 12 and len(dm.val_datasets[0]) == 3  # 15 = 20 - 5 split 12 / 3
    kept = set(dm.train_dataset.stems) | set(dm.val_datasets[0].stems)
    assert kept.isdisjoint({"100", "103", "107", "111", "118"})
    assert "excluded 5 image(s) found in msra1k before the split; 12 remain" in capsys.readouterr().out


def test_exclude_names_a_test_set_of_the_run(msra_tree):
    dm = _dm(msra_tree, train_extra={"exclude": ["msra_1k"]})
    with pytest.raises(ValueError, match="exclude names 'msra_1k', which is not a test set of this run"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="'exclude' applies to train / val sets only"):
        SaliencyDataModule(root=str(msra_tree), test={"t": {"dataset": "msra1k", "exclude": ["x"]}})


def test_pixel_hashes_are_cached_per_folder_and_refreshed_when_a_file_changes(msra_tree, monkeypatch):
    files = sorted((msra_tree / "MSRA1K/images").glob("*.jpg"))
    first = identities("msra1k", [(p.stem, p) for p in files])
    calls = []
    real = overlap_mod._pixel_record
    monkeypatch.setattr(overlap_mod, "_pixel_record", lambda p: calls.append(p) or real(p))
    assert identities("msra1k", [(p.stem, p) for p in files]) == first and calls == []
    _save_jpeg(_photo(99), files[0])  # a changed file is hashed again
    again = identities("msra1k", [(p.stem, p) for p in files])
    assert calls == [files[0]] and again[0].digest != first[0].digest and again[1:] == first[1:]


def test_menet_msra10k_excludes_msra1k_and_says_how_many(msra_tree):
    cfg = compose("menet_msra10k", [f"data.root={msra_tree}", "data.num_workers=0", "data.test.dutomron=null",
                                    "data.test.hkuis=null", "data.test.ecssd=null", "data.test.sod=null",
                                    "data.train.train_size=12", "data.train.val_size=3",
                                    "data.val.train_size=12", "data.val.val_size=3"])
    from salseg.config import resolve

    dm = registry.build_datamodule(resolve(cfg)["data"])
    proto = dm.check_overlap()
    assert proto["overlap"] == [] and proto["excluded"]["train msra10k"]["count"] == 5


def test_a_leaking_run_is_one_line_and_leaves_nothing(tmp_path):
    """menet_shapes trained on the very images it tests on: refused before training, one line, no run folder."""
    proc = subprocess.run([sys.executable, "-m", "salseg", "run", "menet_shapes", "logger=csv", f"runs_dir={tmp_path}",
                           "data.num_workers=0", "data.train={dataset: shapes, split: test, size: 8}",
                           "data.val=null", "data.test.shapes.size=4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "4 image(s) of train shapes are in the test set shapes" in proc.stderr
    assert not (tmp_path / "menet_shapes").exists()


@pytest.mark.usefixtures("tiny_model_registered")
def test_the_override_is_recorded_in_metrics_json(tmp_path):
    from salseg.runner import run

    result = run(compose("tiny", ["logger=csv", f"runs_dir={tmp_path}", "data.num_workers=0", "data.val=null",
                                  "data.train={dataset: shapes, split: test, size: 8}", "data.test.shapes.size=4",
                                  "data.batch_size=4", "trainer.max_epochs=1", "data.allow_overlap=true"],
                         experiment=_tiny_experiment()))
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and doc["protocol"]["allow_overlap"] is True
    (ov,) = doc["protocol"]["overlap"]
    assert (ov["pool"], ov["test"], ov["count"]) == ("train shapes", "shapes", 4)
