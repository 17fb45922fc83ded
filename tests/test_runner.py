"""End to end through the runner: outputs on disk, offline W&B, failure leaves no metrics, resume, DDP == 1 process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from salseg import registry
from salseg.config import compose
from salseg.methods.base import SalsegMethod
from salseg.runner import run

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.test.shapes.size=10", "data.eval_batch_size=4", "data.num_workers=0"]


def _read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_run_writes_config_metrics_plots_and_csv(tmp_path):
    cfg = compose("rc_shapes", SMALL + ["logger=csv", f"runs_dir={tmp_path}"])
    result = run(cfg)
    d = result.run_dir
    assert d.parent == tmp_path / "rc_shapes"
    assert (d / "config.yaml").is_file() and "region_contrast" in (d / "config.yaml").read_text()
    doc = _read_metrics(d)
    assert doc["status"] == "complete" and doc["n_images"] == {"shapes": 10}
    m = doc["datasets"]["shapes"]
    assert set(m) >= {"maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "meanEm", "adpEm", "wF"}
    assert all(0.0 <= v <= 1.0 for v in m.values())
    assert m["meanF"] <= m["maxF"] and m["meanEm"] <= m["maxEm"]
    assert (d / "plots" / "pr_curve.png").stat().st_size > 5000
    assert (d / "plots" / "grid_shapes.png").is_file()
    assert "test/shapes/maxF" in (d / "csv" / "version_0" / "metrics.csv").read_text()
    # a method that trains nothing still leaves last.ckpt with its hyper-parameters
    ckpt = torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["sigma_s2"] == 0.4
    curves = json.loads((d / "curves.json").read_text())
    assert len(curves[doc["primary_map"]]["shapes"]["pr"]["precision"]) == 256


def test_saved_maps_score_the_same_through_eval(tmp_path):
    """The numbers a run logs equal `salseg eval` on the maps it saved (both quantise to 8 bits)."""
    from PIL import Image

    from salseg.evaluate import evaluate_folders

    cfg = compose("rc_shapes", SMALL + ["logger=csv", f"runs_dir={tmp_path}", "save_maps=true"])
    result = run(cfg)
    primary = next(iter(result.metrics))
    maps = result.run_dir / "maps" / primary / "shapes"
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    from salseg.data.datamodule import SaliencyDataModule

    dm = SaliencyDataModule(**{k: v for k, v in cfg.data.items() if k != "kind"})
    dm.setup("test")
    for sample in dm.test_dataloader()[0].dataset:
        Image.fromarray(sample["gt"].numpy()).save(gt_dir / f"{sample['name']}.png")
    scored = evaluate_folders(maps, gt_dir, num_workers=0)["metrics"]
    for key, value in result.metrics[primary]["shapes"].items():
        assert scored[key] == pytest.approx(value, abs=1e-9), key


def test_wandb_runs_offline_into_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose("rc_shapes", SMALL + ["logger=wandb", f"runs_dir={tmp_path}"])
    result = run(cfg)
    offline = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))


def test_wandb_mode_decision(monkeypatch):
    from salseg.tracking import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert wandb_mode("auto")[0] == "offline"
    monkeypatch.delenv("CI")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.netrc
    assert wandb_mode("auto") == ("offline", "no W&B credentials (wandb login or WANDB_API_KEY)")
    assert wandb_mode("disabled")[0] == "disabled"
    with pytest.raises(ValueError, match="logger.mode"):
        wandb_mode("sometimes")


def test_a_crashed_run_leaves_no_metrics_file(tmp_path, monkeypatch):
    from salseg.methods.baselines.module import RegionContrast

    def broken(self, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 1:
            raise RuntimeError("simulated crash in the middle of testing")
        return {"saliency": torch.rand(batch["image"].shape[0], 1, *batch["image"].shape[-2:])}

    monkeypatch.setattr(RegionContrast, "test_step", broken)
    cfg = compose("rc_shapes", SMALL + ["logger=csv", f"runs_dir={tmp_path}"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg)
    (run_dir,) = (tmp_path / "rc_shapes").iterdir()
    assert (run_dir / "config.yaml").is_file()
    assert not (run_dir / "metrics.json").exists()


def test_missing_dataset_root_names_the_path_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SALSEG_DATA", str(tmp_path / "nowhere"))
    cfg = compose("rc_ecssd", ["logger=csv", f"runs_dir={tmp_path / 'runs'}"])
    with pytest.raises(Exception) as err:
        run(cfg)
    assert "nowhere" in str(err.value) and "ground_truth_mask" in str(err.value)
    assert not list((tmp_path / "runs").rglob("metrics.json"))


class TinySaliencyNet(SalsegMethod):
    """A small trainable saliency model used to exercise fit / checkpoint / resume through the runner."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def training_step(self, batch, batch_idx):
        return nn.functional.binary_cross_entropy_with_logits(self.net(batch["image"]), batch["mask"])

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return {"saliency": torch.sigmoid(self.net(batch["image"]))}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _tiny_experiment():
    from omegaconf import OmegaConf

    return OmegaConf.create({"defaults": {"data": "shapes", "model": "tiny", "trainer": "cpu", "logger": "csv"}})


@pytest.fixture
def tiny_model_registered(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.MODELS, "tiny", f"{__name__}:TinySaliencyNet")
    model_dir = tmp_path / "configs" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "tiny.yaml").write_text("kind: tiny\nlr: 0.05\n")
    import salseg.config as config

    real = config.load_group

    def load_group(group, name):
        if group == "model" and name == "tiny":
            from omegaconf import OmegaConf

            return OmegaConf.load(model_dir / "tiny.yaml")
        return real(group, name)

    monkeypatch.setattr(config, "load_group", load_group)


def test_resume_continues_from_last_checkpoint(tmp_path, tiny_model_registered):
    first = run(compose("tiny", ["logger=csv", f"runs_dir={tmp_path}", "data.num_workers=0", "data.train.size=16",
                                 "data.batch_size=4", "data.val=null", "data.test.shapes.size=4",
                                 "trainer.max_epochs=1"], experiment=_tiny_experiment()))
    ckpt = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # 16 images / batch 4, one epoch
    first_epoch = ckpt["epoch"]
    second = run(compose("tiny", ["logger=csv", f"runs_dir={tmp_path}", "data.num_workers=0", "data.train.size=16",
                                  "data.batch_size=4", "data.val=null", "data.test.shapes.size=4",
                                  "trainer.max_epochs=3"], experiment=_tiny_experiment()), resume=True)
    assert second.run_dir == first.run_dir  # same run directory, continued
    ckpt = torch.load(second.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 12 and ckpt["epoch"] == first_epoch + 2  # two more epochs, not three
    assert _read_metrics(second.run_dir)["status"] == "complete"
    # the resumed run logs next to the first one instead of erasing it
    logs = sorted((second.run_dir / "csv").glob("version_*/metrics.csv"))
    assert len(logs) == 2


def _cli_run(tmp_path, *overrides, env=None):
    cmd = [sys.executable, "-m", "salseg", "run", "rc_shapes", "logger=csv", f"runs_dir={tmp_path}",
           "data.test={shapes: {dataset: shapes, split: test, size: 11}, "
           "single: {dataset: shapes, split: test, size: 1, seed: 5}}",
           "data.eval_batch_size=3", "data.num_workers=0", "save_maps=true", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "rc_shapes").iterdir()
    return run_dir, _read_metrics(run_dir)


def test_ddp_two_cpu_processes_give_the_metrics_of_one(tmp_path):
    """11 images (odd) and a 1-image set (fewer images than processes): no sample repeated, none lost."""
    _, one = _cli_run(tmp_path / "one")
    run_dir, two = _cli_run(tmp_path / "two", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert two["n_images"] == one["n_images"] == {"shapes": 11, "single": 1}
    for dataset in ("shapes", "single"):
        for key, value in one["datasets"][dataset].items():
            assert two["datasets"][dataset][key] == pytest.approx(value, abs=1e-12), (dataset, key)
    # both processes saved their share of the maps into rank 0's run directory
    assert len(list((run_dir / "maps" / "saliency" / "shapes").glob("*.png"))) == 11
    assert [p.name for p in (tmp_path / "two" / "rc_shapes").iterdir()] == [run_dir.name]


def test_a_run_without_test_sets_is_refused_before_writing(tmp_path):
    from salseg.config import ConfigError

    with pytest.raises(ConfigError, match="data.test names no test dataset"):
        run(compose("rc_shapes", ["data.test=null", "logger=csv", f"runs_dir={tmp_path}"]))
    assert not (tmp_path / "rc_shapes").exists()
