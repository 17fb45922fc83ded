"""Lightning callbacks chosen in the config, from an allow-list (README "Configuration").

The composed config has a ``callbacks`` mapping keyed by a name the user picks, each entry
``{kind: EarlyStopping, monitor: val/loss, ...}``; keeping them by name lets an experiment or an override change
one (``callbacks.stop.patience=5``) or drop one (``callbacks.stop=null``). Only the kinds below are built, and
only with their constructor's arguments: YAML is data, it never names a class to import.
The metrics a ``monitor`` can watch are the ones the method logs (``val/loss``, ``val/MAE`` for MEnet;
``val/mIoU`` for DCSP; ``train/loss`` for every trained method).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Mapping
from pathlib import Path

from salseg.config import ConfigError

ALLOWED = ("EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "RichProgressBar")


def _class(kind: str):
    from lightning.pytorch import callbacks

    return getattr(callbacks, kind)


def check_callbacks(entries: Mapping | None, where: str = "callbacks") -> None:
    """One line naming the callback and what is wrong: not a mapping, unknown kind, unknown or missing argument."""
    for name, entry in (entries or {}).items():
        if entry is None:
            continue  # dropped (callbacks.<name>=null)
        if not isinstance(entry, Mapping) or "kind" not in entry:
            raise ConfigError(f"{where}: callbacks.{name} must be a mapping with a 'kind' "
                              f"(e.g. {{kind: EarlyStopping, monitor: val/loss}}), got {entry!r}")
        kind = entry["kind"]
        if kind not in ALLOWED:
            raise ConfigError(f"{where}: callbacks.{name}: unknown callback kind {kind!r}; "
                              f"allowed: {', '.join(ALLOWED)}")
        params = inspect.signature(_class(kind).__init__).parameters
        accepted = [p for p in params if p != "self"]
        for arg in entry:
            if arg != "kind" and arg not in accepted:
                raise ConfigError(f"{where}: callbacks.{name}: {kind} has no argument {arg!r}; "
                                  f"accepted: {', '.join(accepted)}")
        missing = [p for p, v in params.items()
                   if p != "self" and v.default is inspect.Parameter.empty and p not in entry]
        if missing:
            raise ConfigError(f"{where}: callbacks.{name}: {kind} needs {', '.join(missing)}")
        if kind == "RichProgressBar" and importlib.util.find_spec("rich") is None:
            raise ConfigError(f"{where}: callbacks.{name}: RichProgressBar needs the 'rich' package "
                              "(pip install rich), or drop it: callbacks." + f"{name}=null")


# Callbacks that only act while training: a run of a method that trains nothing leaves them out.
TRAINING_ONLY = ("EarlyStopping", "LearningRateMonitor", "ModelCheckpoint")


def build_callbacks(entries: Mapping | None, run_dir: Path, trainable: bool = True) -> list:
    """The configured callbacks, in the config's order. A ModelCheckpoint writes under ``checkpoints/<name>/`` of
    the run unless it names a ``dirpath`` (relative to the run directory): never into ``checkpoints/`` itself,
    whose ``last.ckpt`` is the run's own (resume relies on it)."""
    check_callbacks(entries)
    built = []
    for name, entry in (entries or {}).items():
        if entry is None or (not trainable and entry["kind"] in TRAINING_ONLY):
            continue
        kwargs = {k: v for k, v in entry.items() if k != "kind"}
        if entry["kind"] == "ModelCheckpoint":
            dirpath = run_dir / (kwargs.get("dirpath") or Path("checkpoints") / name)
            if dirpath.resolve() == (run_dir / "checkpoints").resolve():
                raise ConfigError(f"callbacks.{name}.dirpath: the run's checkpoints/ holds its own last.ckpt "
                                  "(resume relies on it); leave dirpath out (checkpoints/<name>/) or name another")
            kwargs["dirpath"] = str(dirpath)
        cls = _class(entry["kind"])
        built.append((_naming_monitor(cls, name) if "monitor" in kwargs else cls)(**kwargs))
    return built


# The hooks in which EarlyStopping and ModelCheckpoint look up their monitored metric.
MONITOR_HOOKS = ("on_train_batch_end", "on_train_epoch_end", "on_validation_end")


def _naming_monitor(cls, name: str):
    """``cls`` whose "monitored metric not logged" error (Lightning's RuntimeError / MisconfigurationException,
    raised mid-training) is one ConfigError naming the callback, the metric and what the run does log. Same class
    name, so the callback's checkpoint state key is unchanged."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    def wrap(hook: str):
        def method(self, trainer, *args, **kwargs):
            try:
                return getattr(super(named, self), hook)(trainer, *args, **kwargs)
            except (RuntimeError, MisconfigurationException) as err:
                if self.monitor and self.monitor in str(err) and self.monitor not in trainer.callback_metrics:
                    logged = ", ".join(sorted(trainer.callback_metrics)) or "(nothing yet)"
                    raise ConfigError(f"callbacks.{name}: {cls.__name__} monitors {self.monitor!r}, which this run "
                                      f"does not log; logged: {logged}") from err
                raise
        return method

    named = type(cls.__name__, (cls,), {hook: wrap(hook) for hook in MONITOR_HOOKS})
    named.__qualname__ = cls.__qualname__
    return named
