"""Step schedules under DDP: milestones are iterations of one process (the authors'), converted to this run's
optimiser steps, so trainer.devices does not change the schedule in images seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from salseg.schedules import steps_for_run

ROOT = Path(__file__).resolve().parents[1]


def test_authors_iterations_become_steps_of_the_same_images():
    m = [60000, 90000, 100000]  # MEnet: iterations of 5 images
    assert steps_for_run(m, world_size=1, batch_size=5, schedule_batch=5) == m
    assert steps_for_run(m, world_size=4, batch_size=5, schedule_batch=5) == [15000, 22500, 25000]
    assert steps_for_run(m, world_size=1, batch_size=8, schedule_batch=5) == [37500, 56250, 62500]
    assert steps_for_run(m, world_size=2, batch_size=5, accumulate=2, schedule_batch=5) == [15000, 22500, 25000]
    # schedule_batch null: iterations of this run's own batch, on one process
    assert steps_for_run([1000], world_size=4, batch_size=32) == [250]
    assert steps_for_run([], world_size=8) == []


def test_a_schedule_that_cannot_be_kept_names_the_keys():
    with pytest.raises(ValueError, match=r"model.milestones \[3, 4\].*trainer.devices x num_nodes = 8"):
        steps_for_run([3, 4], world_size=8, batch_size=5)
    with pytest.raises(ValueError, match="model.schedule_batch=null"):
        steps_for_run([10], world_size=2, schedule_batch=5)


def test_gd_classifier_milestones_follow_the_world_size():
    from salseg.optim import optimizer_with_milestones

    hp = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "milestones": [100, 300],
          "gamma": 0.1}
    hp = SimpleNamespace(**hp, get=hp.get)
    module = SimpleNamespace(_trainer=SimpleNamespace(world_size=4, accumulate_grad_batches=1,
                                                     datamodule=SimpleNamespace(batch_size=32)))
    out = optimizer_with_milestones([{"params": [torch.nn.Parameter(torch.zeros(1))]}], hp, module)
    assert sorted(out["lr_scheduler"]["scheduler"].milestones) == [25, 75]


def _menet(tmp_path, *extra):
    cmd = [sys.executable, "-m", "salseg", "run", "menet_shapes", "logger=csv", f"runs_dir={tmp_path}",
           "data.num_workers=0", "data.train={dataset: shapes, split: train, size: 16}", "data.val=null",
           "data.test.shapes.size=2", "data.image_size=32", "data.batch_size=2", "data.eval_batch_size=2",
           "trainer.max_epochs=1", "model.lr=0.1", "model.milestones=[4,6]", "model.schedule=multistep",
           "trainer.enable_progress_bar=false", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "menet_shapes").iterdir()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "complete"
    return ckpt["global_step"], ckpt["optimizer_states"][0]["param_groups"][0]["lr"]


def test_two_processes_end_with_the_learning_rate_of_one(tmp_path):
    """16 images, batch 2: one process takes 8 steps and passes milestones 4 and 6 (lr 0.1 -> 0.001); two
    processes take 4 steps each, and the converted milestones (2, 3) bring them to the same 0.001."""
    steps1, lr1 = _menet(tmp_path / "one")
    steps2, lr2 = _menet(tmp_path / "two", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert (steps1, steps2) == (8, 4)
    assert lr1 == pytest.approx(0.001) and lr2 == pytest.approx(lr1)
