"""One base class for the user's errors (salseg.errors.SalsegError): each keeps its builtin base, and the CLI prints
every one as one line on stderr with exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from salseg import cli
from salseg.backbones.weights import WeightsNotFound
from salseg.callbacks.guards import NonFiniteLossError
from salseg.config import ConfigError
from salseg.data.datamodule import SpecError
from salseg.data.io import CorruptFileError, DataError, MissingDataError, SizeMismatchError, UnpairedFileError
from salseg.data.overlap import TestOverlapError
from salseg.errors import SalsegError
from salseg.evaluate import ImageReadError
from salseg.methods.dcsp.cache import StaleCueCache
from salseg.methods.dcsp.saliency_source import SaliencyCheckpointError
from salseg.registry import BuildError

ROOT = Path(__file__).resolve().parents[1]

# Each user error with the builtin base that callers (and the tests) catch it by.
USER_ERRORS = [
    (ConfigError, ValueError),
    (BuildError, ValueError),
    (SpecError, ValueError),
    (DataError, ValueError),
    (CorruptFileError, ValueError),
    (SizeMismatchError, ValueError),
    (UnpairedFileError, ValueError),
    (MissingDataError, FileNotFoundError),
    (TestOverlapError, ValueError),
    (ImageReadError, ValueError),
    (SaliencyCheckpointError, ValueError),
    (StaleCueCache, RuntimeError),
    (WeightsNotFound, FileNotFoundError),
    (NonFiniteLossError, FloatingPointError),
]


@pytest.mark.parametrize("cls, builtin", USER_ERRORS, ids=[c.__name__ for c, _ in USER_ERRORS])
def test_every_user_error_is_a_salseg_error_and_keeps_its_builtin_base(cls, builtin):
    err = cls("bad input")
    assert isinstance(err, SalsegError) and isinstance(err, builtin)
    with pytest.raises(builtin, match="bad input"):
        raise err


@pytest.mark.parametrize("cls", [c for c, _ in USER_ERRORS], ids=[c.__name__ for c, _ in USER_ERRORS])
def test_cli_prints_a_salseg_error_as_one_line_with_status_2(cls, monkeypatch, capsys):
    def fail(args):
        raise cls("model.weights: no file x.pth")

    monkeypatch.setattr(cli, "_cmd_list", fail)
    assert cli.main(["list"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "salseg: error: model.weights: no file x.pth\n" and captured.out == ""


def test_cli_lets_a_programming_error_through(monkeypatch):
    def fail(args):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr(cli, "_cmd_list", fail)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["list"])


def test_eval_of_a_corrupt_map_is_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gt" / "a.png")
    (tmp_path / "pred" / "a.png").write_bytes(b"not a png")
    proc = subprocess.run([sys.executable, "-m", "salseg", "eval", "--pred", str(tmp_path / "pred"), "--gt",
                           str(tmp_path / "gt"), "--workers", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("salseg: error: cannot read image ") and "a.png" in proc.stderr


@pytest.mark.parametrize("argv", [["--debug", "run", "no_such_experiment"], ["run", "no_such_experiment", "--debug"]],
                         ids=["before-the-command", "after-the-command"])
def test_debug_flag_reraises_a_user_error_with_its_traceback(argv, capsys):
    with pytest.raises(ConfigError, match="unknown experiment 'no_such_experiment'"):
        cli.main(argv)
    assert capsys.readouterr().err == ""


def test_without_debug_the_same_error_is_one_line(capsys):
    assert cli.main(["run", "no_such_experiment"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("salseg: error: unknown experiment 'no_such_experiment'") and err.count("\n") == 1


def test_help_documents_the_debug_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("override, expected", [
    ("data.batch_size=lots", "override data.batch_size=lots: expected an integer (the current value is 16)"),
    ("trainer.max_epochs=abc", "override trainer.max_epochs=abc: expected an integer (the current value is 1)"),
    ("trainer.deterministic=maybe", "override trainer.deterministic=maybe: expected a boolean (true or false)"),
])
def test_a_badly_typed_override_is_one_line_naming_key_value_and_type(override, expected, capsys):
    assert cli.main(["run", "rc_shapes", override, "logger=csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"salseg: error: {expected}") and err.count("\n") == 1 and "Traceback" not in err


def test_overrides_of_the_right_type_still_compose():
    from salseg.config import compose

    cfg = compose("rc_shapes", ["data.batch_size=4", "data.image_size=null",
                                "trainer.deterministic=true", "seed=${oc.env:SALSEG_SEED,3}", "trainer.max_epochs=2.0"])
    assert (cfg.data.batch_size, cfg.data.image_size, cfg.trainer.deterministic) == (4, None, True)
    assert (str(cfg.seed), cfg.trainer.max_epochs) == ("3", 2.0)


# A very small MEnet on a few 32 px shapes: builds and trains in seconds (as in tests/test_training_faults.py).
TINY_MENET = ["logger=csv", "model.depth=3", "model.width=4", "model.max_width=16", "data.image_size=32",
              "data.num_workers=0", "data.val=null", "data.batch_size=8", "data.eval_batch_size=4",
              "data.train={dataset: shapes, split: train, size: 24, image_size: 32}",
              "data.test={shapes: {dataset: shapes, split: test, size: 4}}", "trainer.max_epochs=1",
              "trainer.enable_progress_bar=false"]


def _error_lines(err: str) -> list[str]:
    # Lightning's own start-up notes ("GPU available: ...") may share stderr; the error is the line salseg prints.
    return [line for line in err.splitlines() if line.startswith("salseg:") or "Traceback" in line]


@pytest.mark.parametrize("override, expected", [
    ("model.variant=bogus", "model.variant must be one of ('menet', 'ce_only', 'ce_plain'), got 'bogus'"),
    ("model.optimizer=bogus", "model.optimizer must be one of ('sgd', 'adam', 'adamw'), got 'bogus'"),
])
def test_a_bad_model_value_is_one_line_naming_it(override, expected, tmp_path, capsys):
    assert cli.main(["run", "menet_shapes", *TINY_MENET, override, f"runs_dir={tmp_path}"]) == 2
    assert _error_lines(capsys.readouterr().err) == [f"salseg: error: {expected}"]


def test_a_diverging_run_is_one_line_naming_the_step(tmp_path, monkeypatch, capsys):
    from salseg.methods.menet.loss import MEnetLoss

    real = MEnetLoss.forward

    def diverged(self, logits, f, mask):
        out = real(self, logits, f, mask)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(MEnetLoss, "forward", diverged)
    assert cli.main(["run", "menet_shapes", *TINY_MENET, f"runs_dir={tmp_path}"]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        "salseg: error: training loss is nan at global step 0 (epoch 0, batch 0); stopping the run"]
    with pytest.raises(NonFiniteLossError, match="training loss is nan at global step 0"):
        cli.main(["--debug", "run", "menet_shapes", *TINY_MENET, f"runs_dir={tmp_path / 'debug'}"])


def test_an_error_in_a_dataloader_worker_is_the_original_one_line(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("img", "gt"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(tmp_path / "img" / f"a{i}.png")
        Image.fromarray(rng.integers(0, 2, (20, 20), np.uint8) * 255).save(tmp_path / "gt" / f"a{i}.png")
    truncated = tmp_path / "img" / "a1.png"
    truncated.write_bytes(truncated.read_bytes()[:100])
    test_set = f"data.test={{bad: {{dataset: folder, images: {tmp_path / 'img'}, masks: {tmp_path / 'gt'}}}}}"
    argv = ["run", "rc_shapes", "logger=csv", "data.num_workers=1", "trainer.enable_progress_bar=false",
            f"runs_dir={tmp_path / 'runs'}", test_set]
    assert cli.main(argv) == 2  # torch re-raises it in the main process with the worker's traceback as its text
    assert _error_lines(capsys.readouterr().err) == [
        f"salseg: error: cannot decode {truncated}: OSError: image file is truncated"]


def test_an_error_under_a_progress_bar_starts_its_own_line(tmp_path):
    """Lightning's test bar is live when a worker fails: the CLI closes it first, so the error is a line of its own
    (not glued to the bar's text, which a terminal shows as '...0/? [00:00<?, ?it/s]salseg: error: ...')."""
    import numpy as np
    from PIL import Image

    for folder in ("img", "gt"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "gt" / "a.png")  # another size than its image
    test_set = f"data.test={{bad: {{dataset: folder, images: {tmp_path / 'img'}, masks: {tmp_path / 'gt'}}}}}"
    proc = subprocess.run([sys.executable, "-m", "salseg", "run", "rc_shapes", "logger=csv", "data.num_workers=0",
                           "trainer.enable_progress_bar=true", f"runs_dir={tmp_path / 'runs'}", test_set],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 2  # stdout and stderr merged, as a terminal shows them (the bar writes to stdout)
    lines = proc.stdout.replace("\r", "\n").splitlines()
    errors = [line for line in lines if "salseg: error:" in line]
    assert errors == [f"salseg: error: image {tmp_path / 'img' / 'a.png'} is 20x20 (WxH) but its mask "
                      f"{tmp_path / 'gt' / 'a.png'} is 30x30"], proc.stdout[-2000:]
