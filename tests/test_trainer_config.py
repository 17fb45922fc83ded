"""Open Trainer and callback config (issue 15 item 2): any Trainer argument from YAML or the command line, checked
against lightning.pytorch.Trainer; callbacks by name from an allow-list; menet_msra10k's step count."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch import nn

from salseg import registry
from salseg.callbacks.from_config import build_callbacks
from salseg.config import ConfigError, compose
from salseg.methods.base import SalsegMethod
from salseg.runner import run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEN = {}  # what the Trainer of the last tiny run was built with (recorded by the model at train start)


class TinyValNet(SalsegMethod):
    """A small trainable saliency model that logs ``val/loss`` (for EarlyStopping / ModelCheckpoint monitors)."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, image):
        return self.net(image)

    def _loss(self, batch):
        return nn.functional.binary_cross_entropy_with_logits(self(batch["image"]), batch["mask"])

    def on_train_start(self):
        SEEN.update(max_steps=self.trainer.max_steps, gradient_clip_val=self.trainer.gradient_clip_val,
                    accumulate_grad_batches=self.trainer.accumulate_grad_batches)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), batch_size=len(batch["image"]))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return {"saliency": torch.sigmoid(self(batch["image"]))}

    def predict_step(self, batch, batch_idx=0, dataloader_idx=0):
        return self.test_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "tinyval", f"{__name__}:TinyValNet")
    SEEN.clear()


def _tiny(tmp_path, *overrides):
    """16 training images of 32 px in batches of 4 (4 steps an epoch), 8 validation images, 4 test images."""
    experiment = OmegaConf.create({"defaults": {"data": "shapes", "model": "region_contrast", "trainer": "cpu",
                                                "logger": "csv"}})
    small = ["logger=csv", f"runs_dir={tmp_path}", "data.num_workers=0", "data.image_size=32",
             "data.train.size=16", "data.batch_size=4", "data.val.size=8", "data.test.shapes.size=4",
             "trainer.enable_progress_bar=false"]
    cfg = compose("tiny", small + list(overrides), experiment=experiment)
    with open_dict(cfg):  # region_contrast's keys are not TinyValNet's: keep only its own
        cfg.model = {"kind": "tinyval", "lr": 0.05}
    return cfg


def _global_step(path: Path) -> int:
    return torch.load(path, weights_only=False)["global_step"]


def test_max_steps_clip_and_accumulation_reach_the_trainer(tmp_path, tiny):
    result = run(_tiny(tmp_path, "trainer.max_epochs=-1", "trainer.max_steps=3", "trainer.gradient_clip_val=0.5",
                       "trainer.accumulate_grad_batches=2"))
    assert SEEN == {"max_steps": 3, "gradient_clip_val": 0.5, "accumulate_grad_batches": 2}
    assert _global_step(result.run_dir / "checkpoints" / "last.ckpt") == 3  # steps decide, not the 1 epoch


def test_experiment_yaml_sets_trainer_arguments():
    cfg = compose("rc_shapes", experiment=OmegaConf.create({
        "defaults": {"data": "shapes", "model": "region_contrast", "trainer": "cpu", "logger": "csv"},
        "trainer": {"max_steps": 7, "gradient_clip_val": 1.0}}))
    assert cfg.trainer.max_steps == 7 and cfg.trainer.gradient_clip_val == 1.0


def test_menet_msra10k_trains_the_authors_110k_iterations():
    cfg = compose("menet_msra10k")
    assert cfg.trainer.max_steps == 110000 and cfg.trainer.max_epochs == -1


@pytest.mark.parametrize("block", ["cpu", "gpu", "ddp"])
def test_deterministic_is_on_every_trainer_block(block):
    cfg = compose("rc_shapes", [f"trainer={block}", "trainer.deterministic=true"])
    assert cfg.trainer.deterministic is True
    with pytest.raises(ConfigError, match=r"trainer\.deterministic=lots: expected a boolean"):
        compose("rc_shapes", [f"trainer={block}", "trainer.deterministic=lots"])


def test_unknown_trainer_argument_gets_a_close_match():
    with pytest.raises(ConfigError, match=r"^override trainer\.max_step=3: unknown Trainer argument "
                                          r"'trainer\.max_step'\. Did you mean trainer\.max_steps"):
        compose("rc_shapes", ["trainer.max_step=3"])
    experiment = OmegaConf.create({"defaults": {"data": "shapes", "model": "region_contrast", "trainer": "cpu",
                                                "logger": "csv"}, "trainer": {"gradient_clip": 1}})
    with pytest.raises(ConfigError, match=r"experiment 'x': unknown Trainer argument 'trainer\.gradient_clip'\. "
                                          r"Did you mean trainer\.gradient_clip_val"):
        compose("x", experiment=experiment)


def test_unknown_key_in_a_trainer_block_names_its_file(tmp_path, monkeypatch):
    block = tmp_path / "configs" / "trainer" / "mine.yaml"
    block.parent.mkdir(parents=True)
    block.write_text("accelerator: cpu\nmax_epoch: 2\n")
    monkeypatch.setenv("SALSEG_CONFIG_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=rf"^{block}: unknown Trainer argument 'trainer\.max_epoch'\. "
                                          r"Did you mean trainer\.max_epochs"):
        compose("rc_shapes", ["trainer=mine"])
    block.write_text("accelerator: cpu\nmax_steps: 2\ngradient_clip_val: 0.5\n")
    assert compose("rc_shapes", ["trainer=mine"]).trainer.max_steps == 2


@pytest.mark.parametrize("key, instead", [("logger", "logger=csv or logger=wandb"),
                                          ("callbacks", "top-level callbacks mapping"),
                                          ("default_root_dir", "set runs_dir"),
                                          ("enable_checkpointing", "checkpoints/last.ckpt")])
def test_arguments_salseg_sets_itself_are_refused_with_what_to_use(key, instead):
    with pytest.raises(ConfigError, match=rf"trainer\.{key} is not set from the config: .*{instead}"):
        compose("rc_shapes", [f"trainer.{key}=x"])


def test_bad_override_is_one_line_from_the_cli():
    proc = subprocess.run([sys.executable, "-m", "salseg", "run", "rc_shapes", "trainer.max_step=3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Did you mean trainer.max_steps" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_callback_config_errors_name_callback_and_argument():
    with pytest.raises(ConfigError, match=r"callbacks\.stop: unknown callback kind 'EarlyStop'; allowed: "
                                          r"EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar"):
        compose("rc_shapes", ["callbacks.stop={kind: EarlyStop, monitor: val/loss}"])
    with pytest.raises(ConfigError, match=r"callbacks\.stop: EarlyStopping has no argument 'patients'; "
                                          r"accepted: monitor, min_delta, patience"):
        compose("rc_shapes", ["callbacks.stop={kind: EarlyStopping, monitor: val/loss, patients: 3}"])
    with pytest.raises(ConfigError, match=r"callbacks\.stop: EarlyStopping needs monitor"):
        compose("rc_shapes", ["callbacks.stop={kind: EarlyStopping}"])


def test_callbacks_are_kept_by_name_so_an_override_changes_or_drops_one(tmp_path):
    base = ["callbacks.stop={kind: EarlyStopping, monitor: val/loss}", "callbacks.lr={kind: LearningRateMonitor}"]
    cfg = compose("rc_shapes", base + ["callbacks.stop.patience=7"])
    built = build_callbacks(OmegaConf.to_container(cfg.callbacks), tmp_path)
    assert [type(c).__name__ for c in built] == ["EarlyStopping", "LearningRateMonitor"]
    assert built[0].patience == 7 and built[0].monitor == "val/loss"
    cfg = compose("rc_shapes", base + ["callbacks.stop=null"])
    built = build_callbacks(OmegaConf.to_container(cfg.callbacks), tmp_path)
    assert [type(c).__name__ for c in built] == ["LearningRateMonitor"]


def test_early_stopping_from_config_stops_training(tmp_path, tiny):
    # min_delta 100: no epoch after the first improves enough, patience 0 -> stops after the second epoch
    result = run(_tiny(tmp_path, "trainer.max_epochs=6",
                       "callbacks.stop={kind: EarlyStopping, monitor: val/loss, patience: 0, min_delta: 100}"))
    assert _global_step(result.run_dir / "checkpoints" / "last.ckpt") == 8  # 2 epochs of 4 steps, not 6


@pytest.mark.parametrize("kind", ["EarlyStopping", "ModelCheckpoint"])
def test_a_monitor_the_method_does_not_log_is_one_line_naming_the_callback(tmp_path, tiny, kind):
    with pytest.raises(ConfigError, match=rf"^callbacks\.watch: {kind} monitors 'val/los', which this run "
                                          r"does not log; logged: .*val/loss"):
        run(_tiny(tmp_path, "trainer.max_epochs=2", f"callbacks.watch={{kind: {kind}, monitor: val/los}}"))


def test_model_checkpoint_from_config_writes_best_and_last_beside_the_runs_own(tmp_path, tiny):
    result = run(_tiny(tmp_path, "trainer.max_epochs=2", "callbacks.best={kind: ModelCheckpoint, "
                       "monitor: val/loss, mode: min, save_top_k: 1, save_last: true}"))
    checkpoints = result.run_dir / "checkpoints"
    written = sorted(p.name for p in (checkpoints / "best").iterdir())
    assert len(written) == 2 and "last.ckpt" in written, written
    (best,) = [n for n in written if n != "last.ckpt"]
    assert best.startswith("epoch=") and _global_step(checkpoints / "best" / best) in (4, 8)
    assert _global_step(checkpoints / "best" / "last.ckpt") == 8
    assert _global_step(checkpoints / "last.ckpt") == 8  # the run's own last.ckpt is still there, for resume


def test_model_checkpoint_may_not_write_into_the_runs_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match=r"callbacks\.best\.dirpath: the run's checkpoints/ holds its own last"):
        build_callbacks({"best": {"kind": "ModelCheckpoint", "monitor": "val/loss", "dirpath": "checkpoints"}},
                        tmp_path)
