"""cfg -> DataModule, LightningModule, Trainer, callbacks; fit (when the method trains), test, write outputs.

Outputs of a run (README "Outputs and tracking"), all under ``runs/<NAME>/<timestamp>/``:
``config.yaml`` (resolved), ``metrics.json`` (written LAST and atomically, so a crashed run never leaves one),
``curves.json`` (PR curves for ablation plots), ``checkpoints/last.ckpt``, ``plots/``, ``csv/``, ``wandb/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from salseg import registry, tracking
from salseg.atomic import write_json
from salseg.checkpoints import build_from_checkpoint, read_checkpoint
from salseg.config import ConfigError, check_trainer_keys, resolve


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict  # map -> dataset -> metric -> value (primary map first)
    curves: dict
    seconds: float
    n_images: dict = field(default_factory=dict)  # dataset -> images scored (metrics.json's n_images)


def _trainer_kwargs(trainer_cfg: dict) -> dict:
    """The trainer block as Trainer arguments; compose() checked it already, a config built by hand is checked here."""
    check_trainer_keys(trainer_cfg, "trainer")
    return dict(trainer_cfg)


def run(cfg: DictConfig, resume: bool = False) -> RunResult:
    """Train (if the method is trainable) and test one experiment; return where it wrote and what it scored."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from salseg.callbacks.evaluation import MapEvaluation
    from salseg.callbacks.from_config import build_callbacks
    from salseg.callbacks.guards import NonFiniteLossGuard
    from salseg.studies.preemption import SaveOnSigterm

    start = time.time()
    container = resolve(cfg)  # also raises early on a missing interpolation
    # Build (and so validate) data and model before anything is written: a bad config leaves no run directory.
    pl.seed_everything(container["seed"], workers=True, verbose=False)
    datamodule = registry.build_datamodule(container["data"])
    if not getattr(datamodule, "test_names", None):
        raise ConfigError("data.test names no test dataset: every run ends by testing (e.g. data.test="
                          "{shapes: {dataset: shapes, split: test}})")
    model = registry.build_model(container["model"])
    trainable = bool(model.trainable) and not container["test_only"]
    # A test set smaller than the number of processes leaves some process without a batch: the evaluation
    # callback copes (metric states are reduced over all processes), so let Lightning allow it.
    model.allow_zero_length_dataloader_with_multiple_devices = True
    # A checkpoint named by config is read now, with weights_only=True (salseg.checkpoints): a missing, unreadable
    # or crafted file is refused before anything is written, and before Lightning's fit unpickles it (its
    # torch.load default was weights_only=False before torch 2.6). Kept only when testing it: training reads it anew.
    config_ckpt = read_checkpoint(container["ckpt_path"], "ckpt_path") if container.get("ckpt_path") else None
    if trainable:
        config_ckpt = None

    if trainable and hasattr(datamodule, "check_overlap"):
        datamodule.check_overlap()  # no test image reaches training: refused (or recorded) before anything runs
    if resume and not trainable:
        print(f"[salseg] RESUME ignored: {container['model']['kind']} trains nothing; testing into a new run")
    run_dir = tracking.prepare_run_dir(container["runs_dir"], container["name"], resume=resume and trainable)
    if tracking.env_global_rank() == 0:
        (run_dir / "metrics.json").unlink(missing_ok=True)  # a resumed run is not complete until it says so
        OmegaConf.save(OmegaConf.create(container), run_dir / "config.yaml")
        print(f"[salseg] run {container['name']} -> {run_dir}")

    loggers = tracking.make_loggers(container, run_dir)
    evaluation = MapEvaluation(run_dir, save_maps=container["save_maps"],
                               log_images=container["logger"].get("log_images", True))
    callbacks = [evaluation, model_kind_stamp(container["model"]["kind"])]
    if trainable:
        callbacks += [
            # checkpoints/last.ckpt, rewritten (atomically) at every epoch end, so a killed run loses at most one
            # epoch. (save_last=True with save_top_k=0 only writes it when training ends: Lightning 2.6 saves
            # "last" only in a step where a top-k checkpoint was saved.)
            ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, save_last=False,
                            every_n_epochs=1, enable_version_counter=False),
            NonFiniteLossGuard(),
            SaveOnSigterm(run_dir / "checkpoints" / "last.ckpt"),  # preemption: last.ckpt at the current step
        ]
    # The user's own (config `callbacks`, from an allow-list), after the run's: their ModelCheckpoints write under
    # checkpoints/<name>/, never the run's last.ckpt; those that act in training only are left out of a test run.
    callbacks += build_callbacks(container.get("callbacks"), run_dir, trainable)
    trainer = pl.Trainer(
        **_trainer_kwargs(container["trainer"]),
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        enable_checkpointing=trainable,
    )
    ckpt_path = None
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and trainable and last.is_file():
        ckpt_path = str(last)
        print(f"[salseg] resuming from {last}")
    elif container.get("ckpt_path"):
        ckpt_path = container["ckpt_path"]

    if trainable:
        if ckpt_path == str(last):  # our own run's file, read as safely as one from config before Lightning's load
            read_checkpoint(last, "RESUME")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        trainer.test(model, datamodule=datamodule, verbose=False)
    else:
        if ckpt_path and container["test_only"]:
            model = load_for_test(type(model), ckpt_path, container["model"], config_ckpt)
        trainer.test(model, datamodule=datamodule, verbose=False)
        # A method that trains nothing still leaves last.ckpt (its hyper-parameters), so every run can be
        # re-tested the same way: `test_only=true ckpt_path=.../last.ckpt`.
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)

    result = RunResult(run_dir=run_dir, metrics=evaluation.results, curves=evaluation.curves,
                       seconds=time.time() - start, n_images=dict(evaluation.counts))
    if trainer.is_global_zero:
        write_json(run_dir / "curves.json", evaluation.curves)
        cost = _measure_cost(model, datamodule, trainer) if container.get("cost", True) else None
        write_json(run_dir / "metrics.json", _metrics_document(container, evaluation, result, datamodule, cost))
        _print_summary(container["name"], evaluation)
    tracking.finish_loggers(loggers)
    return result


def model_kind_stamp(kind: str):
    """A callback that writes ``salseg_model: <kind>`` into every checkpoint, so another method can load it by
    kind (DCSP's saliency model) without guessing from its weights."""
    from lightning.pytorch import Callback

    class _Stamp(Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            checkpoint["salseg_model"] = kind

    return _Stamp()


def load_for_test(cls, ckpt_path: str, model_cfg: dict, ckpt: dict | None = None):
    """The checkpoint's model (read with ``weights_only=True``), with the config's values for the keys the method
    lists in ``test_time_hparams``; every other hyper-parameter is the checkpoint's own (:mod:`salseg.checkpoints`).
    ``ckpt``: the checkpoint already read from ``ckpt_path``."""
    return build_from_checkpoint(cls, ckpt_path, model_cfg, key="ckpt_path", ckpt=ckpt)


def _measure_cost(model, datamodule, trainer) -> dict:
    """Parameters, FLOPs and images/s of the method's test-time inference on the first test image, at its test
    size, on the run's device and threads (:mod:`salseg.cost`; README "Tests and benchmarks"). A short budget:
    one counted call (FLOPs), one warm-up call and one timed call (``make bench`` times a second of calls). A
    method whose test step cannot run on a bare ``{"image": ...}`` batch gets the reason instead: the run's scores
    stand."""
    from salseg.cost import measure

    image = datamodule.test_datasets[0][0]["image"]
    try:
        return measure(model, image, device=trainer.strategy.root_device, min_run_time=0.0)
    except Exception as err:  # a measurement beside the results must not cost the run its metrics.json
        print(f"[salseg] cost not measured ({type(err).__name__}: {err}); `cost: false` skips it")
        return {"error": f"{type(err).__name__}: {err}"}


def _metrics_document(container: dict, evaluation, result: RunResult, datamodule=None, cost=None) -> dict:
    primary = evaluation.primary_map
    document = {
        "experiment": container["name"],
        "status": "complete",
        "primary_map": primary,
        "datasets": evaluation.results.get(primary, {}),  # dataset -> metric -> value, for the primary map
        "maps": evaluation.results,  # every map the method produced
        "n_images": evaluation.counts,
        "protocol": getattr(datamodule, "protocol", {}),
        "seconds": round(result.seconds, 2),
    }
    if cost is not None:
        document["cost"] = cost  # README "Tests and benchmarks"; left out with `cost: false`
    return document


def _print_summary(name: str, evaluation) -> None:
    from salseg.evaluate import format_table

    for map_name, per_ds in evaluation.results.items():
        print(f"\n[salseg] {name}: test metrics ({map_name} map)")
        print(format_table(per_ds))
