"""`salseg predict`: maps for a folder of images, at each image's native size, equal to the test loop's maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from salseg import registry
from salseg.callbacks.scorers import SaliencyScorer
from salseg.cli import main
from salseg.config import compose, resolve
from salseg.data import SaliencyDataModule
from salseg.predict import Predictor, load_method, predict_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = {"a": (40, 60), "b": (50, 30), "c": (64, 64)}  # stem -> (height, width): every image its own size
TINY_MENET = ["logger=csv", "model.depth=3", "model.width=4", "model.max_width=16", "data.image_size=32",
              "data.num_workers=0", "data.val=null", "data.batch_size=8", "data.eval_batch_size=4",
              "data.train={dataset: shapes, split: train, size: 16, image_size: 32}",
              "data.test={shapes: {dataset: shapes, split: test, size: 2}}", "trainer.max_epochs=1",
              "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Images of different sizes and formats (a bright square on a dark ground) + masks for the test loop."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k, (stem, (h, w)) in enumerate(SIZES.items()):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        img[h // 4: h // 2, w // 4: w // 2] = (220, 40, 30)
        Image.fromarray(img).save(root / "images" / f"{stem}.{('png', 'bmp', 'tif')[k]}")
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "masks" / f"{stem}.png")
    return root


def _read(folder) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            assert im.mode == "L"
            out[p.name] = np.asarray(im)
    return out


def _test_loop_maps(model, root, image_size) -> dict[str, np.ndarray]:
    """What the evaluation callback scores (and save_maps writes) for the same images: the test loop's path."""
    dm = SaliencyDataModule(root=str(root), test={"x": {"dataset": "folder", "images": "images", "masks": "masks"}},
                            image_size=image_size, eval_batch_size=2, num_workers=0)
    dm.setup("test")
    scorer = SaliencyScorer("saliency", ["x"], "cpu")
    out = {}
    with torch.inference_mode():
        for i, batch in enumerate(dm.test_dataloader()[0]):
            maps = next(iter(model.test_step(batch, i).values()))
            preds, _ = scorer.prepare(maps, batch, "x", "cpu")
            out.update({f"{n}.png": p.numpy() for n, p in zip(batch["name"], preds)})
    return out


@pytest.mark.parametrize("image_size", ["128", "null"])  # rc_shapes' 128 px input, and native size (list batches)
def test_rc_maps_have_native_sizes_and_equal_the_test_loop(photos, tmp_path, image_size):
    out = tmp_path / "maps"
    assert main(["predict", "rc_shapes", f"data.image_size={image_size}", "--images", str(photos / "images"),
                 "--out", str(out), "--device", "cpu", "--batch-size", "2"]) == 0
    maps = _read(out)
    assert list(maps) == ["a.png", "b.png", "c.png"]
    assert {k[0]: m.shape for k, m in maps.items()} == SIZES
    assert all(m.dtype == np.uint8 and m.max() > m.min() for m in maps.values())
    model = registry.build_model(resolve(compose("rc_shapes"))["model"])
    want = _test_loop_maps(model, photos, None if image_size == "null" else int(image_size))
    for name, m in maps.items():
        np.testing.assert_array_equal(m, want[name])


def test_batched_equals_one_at_a_time_and_recursive_keeps_subfolders(photos, tmp_path):
    predictor = load_method("rc_shapes", ["data.image_size=null"])
    one = predict_folder(predictor, photos / "images", tmp_path / "one", batch_size=1, progress=False)
    three = predict_folder(predictor, photos / "images", tmp_path / "three", batch_size=3, progress=False)
    assert [p.name for p in one] == [p.name for p in three]
    for name, m in _read(tmp_path / "one").items():
        np.testing.assert_array_equal(m, _read(tmp_path / "three")[name])
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    Image.open(photos / "images" / "a.png").save(nested / "sub" / "a.jpg")
    (nested / "notes.txt").write_text("not an image")
    written = predict_folder(predictor, nested, tmp_path / "rec", recursive=True, progress=False)
    assert written == [tmp_path / "rec" / "sub" / "a.png"]
    with Image.open(written[0]) as im:
        assert im.size == (60, 40)


@pytest.fixture(scope="module")
def menet_run(tmp_path_factory):
    from salseg.runner import run

    runs = tmp_path_factory.mktemp("runs")
    return run(compose("menet_shapes", TINY_MENET + [f"runs_dir={runs}"])).run_dir


def test_trained_run_from_its_folder_checkpoint_and_experiment_name(menet_run, photos, tmp_path):
    images = str(photos / "images")
    ckpt = menet_run / "checkpoints" / "last.ckpt"
    sources = {"run": [str(menet_run)], "ckpt": [str(ckpt)], "runs": [str(menet_run.parent)],
               "name": ["menet_shapes", f"runs_dir={menet_run.parent.parent}"]}
    for key, source in sources.items():
        assert main(["predict", *source, "--images", images, "--out", str(tmp_path / key), "--device", "cpu"]) == 0
    got = {key: _read(tmp_path / key) for key in sources}
    assert {k[0]: m.shape for k, m in got["run"].items()} == SIZES
    for key in ("ckpt", "runs", "name"):
        for name, m in got["run"].items():
            np.testing.assert_array_equal(got[key][name], m)
    predictor = load_method(str(menet_run))
    assert predictor.image_size == 32  # the run's data.image_size
    want = _test_loop_maps(predictor.model.eval(), photos, 32)  # the primary (CE) map
    for name, m in got["run"].items():
        np.testing.assert_array_equal(m, want[name])
    assert main(["predict", str(menet_run), "--images", images, "--out", str(tmp_path / "metric"),
                 "--map", "metric", "--device", "cpu"]) == 0
    metric = _read(tmp_path / "metric")
    assert any(not np.array_equal(metric[n], got["run"][n]) for n in metric)


def test_semantic_map_is_written_as_class_indices_with_a_palette(photos, tmp_path):
    """DCSP's segmentation: one class index per pixel (0 background, c + 1 class c), shown by the VOC palette."""
    cfg = resolve(compose("dcsp_shapes", ["model.cue_source=attention", "model.saliency_checkpoint=null"]))
    model = registry.build_model(cfg["model"])
    written = predict_folder(Predictor(model, None, "dcsp"), photos / "images", tmp_path, progress=False)
    for path in written:
        with Image.open(path) as im:
            assert im.mode == "P" and im.size[::-1] == SIZES[path.stem]
            labels = np.asarray(im)
            assert im.getpalette()[3:6] == [128, 0, 0]  # VOC: class 1 dark red
        assert labels.max() <= len(model.class_names) - 1


def _error(capsys, *argv) -> str:
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # above it, at most the progress bar of the images before the bad one
    assert last.startswith("salseg: error: ")
    return last


def test_bad_inputs_are_one_line_naming_the_path(photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = ["--out", str(tmp_path / "out"), "--device", "cpu"]
    assert "--device 'bogus': not a torch device" in _error(capsys, "rc_shapes", "--images", str(empty), "--out",
                                                             str(tmp_path / "out"), "--device", "bogus")
    if not torch.cuda.is_available():
        assert "--device 'cuda': no CUDA GPU is visible" in _error(capsys, "rc_shapes", "--images", str(empty),
                                                                  "--out", str(tmp_path / "out"), "--device", "cuda")
    assert f"no images in {empty}" in _error(capsys, "rc_shapes", "--images", str(empty), *out)
    assert f"images folder not found: {tmp_path / 'nowhere'}" in _error(
        capsys, "rc_shapes", "--images", str(tmp_path / "nowhere"), *out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert f"cannot decode {broken / 'x.jpg'}" in _error(capsys, "rc_shapes", "--images", str(broken), *out)
    run_dir = tmp_path / "runs" / "x" / "2026"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")
    err = _error(capsys, str(run_dir), "--images", str(photos / "images"), *out)
    assert f"run folder {run_dir} has no checkpoint: expected {run_dir / 'checkpoints' / 'last.ckpt'}" in err
    assert f"no run folder or checkpoint at {tmp_path / 'missing.ckpt'}" in _error(
        capsys, str(tmp_path / "missing.ckpt"), "--images", str(photos / "images"), *out)
    assert "unknown experiment" in _error(capsys, "no_such_method", "--images", str(photos / "images"), *out)
    err = _error(capsys, "rc_shapes", "--map", "ce", "--images", str(photos / "images"), *out)
    assert "--map 'ce': RegionContrast makes the maps ['saliency']" in err
    err = _error(capsys, "menet_shapes", f"runs_dir={tmp_path / 'none'}", "--images", str(photos / "images"), *out)
    assert "experiment 'menet_shapes' trains a menet model and has no run with a checkpoint" in err
