"""Training through the runner when things go wrong or get big: SIGKILL + RESUME=1, NaN losses, DDP on 2 CPUs.

All on a very narrow, shallow MEnet (depth 3, width 4: the paper's block structure, ~10k parameters) on tiny
shapes sets at 32 px, so each run takes seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from salseg.config import compose
from salseg.runner import run

ROOT = Path(__file__).resolve().parents[1]


def tiny(train_size: int, epochs: int, batch: int = 8, test_size: int = 4) -> list[str]:
    return [
        "logger=csv", "model.depth=3", "model.width=4", "model.max_width=16", "data.image_size=32",
        "data.num_workers=0", "data.val=null", f"data.batch_size={batch}",
        f"data.train={{dataset: shapes, split: train, size: {train_size}, image_size: 32}}",
        f"data.test={{shapes: {{dataset: shapes, split: test, size: {test_size}}}}}", "data.eval_batch_size=4",
        f"trainer.max_epochs={epochs}", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    ]


def _salseg(*args, **kw) -> subprocess.Popen:
    # One thread per process: on a 2-core box two processes with 2 threads each spin against each other.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "salseg", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def test_sigkill_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    overrides = tiny(train_size=64, epochs=6)  # 8 steps per epoch: the kill lands after epoch 0, well before 5
    straight = run(compose("menet_shapes", overrides + [f"runs_dir={tmp_path / 'straight'}"]))
    expected = _ckpt(straight.run_dir)
    assert expected["global_step"] == 6 * 8

    runs = tmp_path / "killed"
    proc = _salseg("run", "menet_shapes", *overrides, f"runs_dir={runs}")
    deadline = time.time() + 240
    while not list(runs.glob("menet_shapes/*/checkpoints/last.ckpt")):  # written atomically at each epoch end
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (run_dir,) = (runs / "menet_shapes").iterdir()
    killed_at = _ckpt(run_dir)
    assert killed_at["global_step"] < expected["global_step"]  # it really stopped mid-training ...
    assert not (run_dir / "metrics.json").exists()  # ... and says nothing about success

    resumed = _salseg("run", "menet_shapes", *overrides, f"runs_dir={runs}", "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in out
    assert [p.name for p in (runs / "menet_shapes").iterdir()] == [run_dir.name]  # same run directory
    final = _ckpt(run_dir)
    assert (final["global_step"], final["epoch"]) == (expected["global_step"], expected["epoch"])
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and set(doc["maps"]) == {"ce", "metric"}


def test_a_nan_loss_stops_the_run_naming_the_step(tmp_path, monkeypatch):
    from salseg.methods.menet.loss import MEnetLoss

    real = MEnetLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, f, mask):
        out = real(self, logits, f, mask)
        calls["n"] += 1
        if calls["n"] == 3:  # the third training step
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(MEnetLoss, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at global step 2 \(epoch 0, batch 2\)"):
        run(compose("menet_shapes", tiny(train_size=40, epochs=1) + [f"runs_dir={tmp_path}"]))
    assert not list(tmp_path.rglob("metrics.json"))


def test_ddp_training_on_two_cpu_processes(tmp_path):
    proc = _salseg("run", "menet_shapes", *tiny(train_size=32, epochs=1, batch=4, test_size=5),
                   "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"runs_dir={tmp_path}")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    (run_dir,) = (tmp_path / "menet_shapes").iterdir()
    ckpt = _ckpt(run_dir)
    assert ckpt["global_step"] == 4  # 32 images over 2 processes x batch 4: each process takes 4 steps
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and doc["n_images"] == {"shapes": 5}  # no test image lost or repeated
    assert all(0 <= doc["maps"][m]["shapes"]["MAE"] <= 1 for m in ("ce", "metric"))
