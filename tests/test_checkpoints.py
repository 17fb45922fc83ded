"""salseg.checkpoints: every checkpoint a user names is read with ``weights_only=True`` (a crafted pickle is refused
and its code never runs), bad files are one line naming the path, and the method built from a run's checkpoint
makes the run's own test maps."""

import io
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from salseg import cli
from salseg.checkpoints import CheckpointError, build_from_checkpoint, read_checkpoint
from salseg.config import compose
from salseg.errors import SalsegError
from salseg.runner import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMON = ["logger=csv", "data.num_workers=0", "trainer.enable_progress_bar=false", "cost=false", "save_maps=true"]
TINY_MENET = COMMON + [
    "model.depth=3", "model.width=4", "model.max_width=16", "data.image_size=32", "data.val=null", "data.batch_size=8",
    "data.eval_batch_size=4", "data.train={dataset: shapes, split: train, size: 16, image_size: 32}",
    "data.test={shapes: {dataset: shapes, split: test, size: 3}}", "trainer.max_epochs=1"]
TINY_RC = COMMON + ["data.test={shapes: {dataset: shapes, split: test, size: 2}}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """experiment -> (its overrides, a finished run): MEnet trained a few steps, Region Contrast (hparams only)."""
    root = tmp_path_factory.mktemp("runs")
    return {name: (ovr, run(compose(name, ovr + [f"runs_dir={root}"])))
            for name, ovr in (("menet_shapes", TINY_MENET), ("rc_shapes", TINY_RC))}


def _maps(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir / "maps")): p.read_bytes() for p in sorted((run_dir / "maps").rglob("*.png"))}


@pytest.mark.parametrize("name", ["menet_shapes", "rc_shapes"])
def test_testing_a_runs_checkpoint_again_writes_the_runs_own_maps(runs, name, tmp_path):
    overrides, first = runs[name]
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    again = run(compose(name, overrides + ["test_only=true", f"ckpt_path={ckpt}", f"runs_dir={tmp_path}"]))
    maps, maps_again = _maps(first.run_dir), _maps(again.run_dir)
    assert maps and maps_again.keys() == maps.keys()
    # The same weights give the same maps up to float reassociation: oneDNN may pick another convolution kernel for
    # another memory layout, and a map that lands on a rounding edge moves one 8-bit level. Pixels are compared, not
    # bytes: at most one level apart, and all but a few identical.
    for key, data in maps.items():
        a, b = (np.asarray(Image.open(io.BytesIO(x)), dtype=np.int16) for x in (data, maps_again[key]))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01, key
    for map_name, per_set in first.metrics.items():
        for dataset, scores in per_set.items():
            assert again.metrics[map_name][dataset] == pytest.approx(scores, abs=2e-3), (map_name, dataset)


def test_the_built_model_holds_the_checkpoints_weights(runs):
    from salseg.methods.menet.module import MEnet

    ckpt_path = runs["menet_shapes"][1].run_dir / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(ckpt_path)
    assert ckpt["salseg_model"] == "menet" and ckpt["hyper_parameters"]["depth"] == 3
    model = build_from_checkpoint(MEnet, ckpt_path)
    assert model.hparams.width == 4 and model.hparams.max_width == 16
    state = model.state_dict()
    assert state.keys() == ckpt["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in ckpt["state_dict"].items())


class Tiny(pl.LightningModule):
    test_time_hparams = ("scale",)

    def __init__(self, width: int = 2, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(width, 1)


def test_only_test_time_hparams_are_overridden_and_stale_hparams_are_dropped(tmp_path):
    saved = Tiny(width=3, scale=1.0)
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": saved.state_dict(), "hyper_parameters": {**saved.hparams, "gone": 1}}, path)
    model = build_from_checkpoint(Tiny, path, {"width": 7, "scale": 2.5, "other": 0})
    assert (model.hparams.width, model.hparams.scale) == (3, 2.5)  # width is the checkpoint's: the weights fit
    assert torch.equal(model.layer.weight, saved.layer.weight)


class _RunsCode:
    """Unpickling this calls ``os.system``: stands for any code a crafted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "salseg_model": "region_contrast", "hyper_parameters": _RunsCode(marker)}, bad)
    return bad, marker


def _one_line(err: Exception, path: Path) -> str:
    message = str(err)
    assert isinstance(err, SalsegError) and isinstance(err, ValueError)
    assert "\n" not in message and str(path) in message
    return message


def test_a_checkpoint_with_pickled_code_is_refused_and_its_code_never_runs(crafted):
    bad, marker = crafted
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(bad, "ckpt_path")
    message = _one_line(info.value, bad)
    assert message.startswith(f"ckpt_path {bad} is not a readable PyTorch checkpoint of weights only (")
    assert "system" in message and message.endswith("expected a salseg checkpoint, e.g. runs/<NAME>/<timestamp>/"
                                                    "checkpoints/last.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("name, overrides", [("rc_shapes", TINY_RC), ("menet_shapes", TINY_MENET)],
                         ids=["test_only", "fit"])
def test_a_crafted_ckpt_path_is_refused_before_anything_runs(crafted, name, overrides, tmp_path):
    bad, marker = crafted
    extra = ["test_only=true"] if name == "rc_shapes" else []  # MEnet trains: the path would reach trainer.fit
    with pytest.raises(CheckpointError, match=r"^ckpt_path .*last.ckpt is not a readable PyTorch checkpoint"):
        run(compose(name, overrides + extra + [f"ckpt_path={bad}", f"runs_dir={tmp_path / 'runs'}"]))
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


def test_predict_and_the_cli_refuse_it_in_one_line(crafted, tmp_path, capsys):
    from salseg.predict import load_method

    bad, marker = crafted
    with pytest.raises(CheckpointError, match=r"^checkpoint .*last.ckpt is not a readable PyTorch checkpoint"):
        load_method(str(bad))
    assert cli.main(["run", "rc_shapes", *TINY_RC, "test_only=true", f"ckpt_path={bad}",
                     f"runs_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"salseg: error: ckpt_path {bad} is not a readable PyTorch checkpoint")
    assert err.count("\n") == 1
    assert not marker.exists()


def test_missing_and_non_checkpoint_files_are_one_line(tmp_path):
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(missing, "ckpt_path")
    assert _one_line(info.value, missing) == (f"ckpt_path: no file {missing} (expected a salseg checkpoint, e.g. "
                                              f"runs/<NAME>/<timestamp>/checkpoints/last.ckpt)")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\nsecond line")
    with pytest.raises(CheckpointError, match=r"^checkpoint .*notes.ckpt is not a readable PyTorch checkpoint") as info:
        read_checkpoint(text)
    _one_line(info.value, text)
    plain = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2)}, plain)  # a bare state dict: readable, but not a Lightning checkpoint
    with pytest.raises(CheckpointError, match=r"weights.pt is not a Lightning checkpoint \(no state_dict\): expected "
                                              r"a salseg checkpoint") as info:
        read_checkpoint(plain)
    _one_line(info.value, plain)
