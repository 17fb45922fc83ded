"""The one reader of salseg checkpoints whose path a user gives (config ``ckpt_path``, ``model.saliency_checkpoint``,
``salseg predict``'s source), and the method built from one.

:func:`read_checkpoint` reads with ``torch.load(weights_only=True)``: tensors, containers and primitives only, so a
crafted pickle is refused before any of its code runs (``torch.load``'s default was ``weights_only=False`` before
torch 2.6, and Lightning's ``load_from_checkpoint`` uses that default). A salseg Lightning checkpoint holds nothing
else: ``state_dict`` (an ``OrderedDict`` of tensors), ``hyper_parameters`` (the method's resolved config values),
``salseg_model`` (:func:`salseg.runner.model_kind_stamp`), ``optimizer_states`` / ``lr_schedulers`` (tensors,
numbers, MultiStepLR's ``collections.Counter``), ``loops`` and ``callbacks`` (ModelCheckpoint / EarlyStopping
states: numbers, strings, tensors) and DCSP's ``dcsp_run_scores`` (floats); ``OrderedDict`` and ``Counter`` are on
torch's own allow-list, so no ``add_safe_globals`` is needed. A missing file, a file torch cannot read, a refused
pickle or a file without a ``state_dict`` is one :class:`CheckpointError` line naming the path and what was expected.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from salseg.errors import SalsegError

EXPECTED = "a salseg checkpoint, e.g. runs/<NAME>/<timestamp>/checkpoints/last.ckpt"


class CheckpointError(SalsegError, ValueError):
    pass


def _reason(exc: Exception) -> str:
    """torch's error in one line: for a refused pickle, the line naming the global it refused (its wording changes
    between torch versions: "Unsupported global: GLOBAL os.system", "unsupported GLOBAL posix.system ...")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    picked = next((line for line in lines if "GLOBAL" in line or "WeightsUnpickler error" in line),
                  lines[0] if lines else "")
    return f"{type(exc).__name__}: {picked[:200]}"


def read_checkpoint(path: str | Path, key: str = "checkpoint", expected: str = EXPECTED) -> dict:
    """The checkpoint at ``path``, read on the CPU with ``weights_only=True``; ``key`` names where the path came from
    (``ckpt_path``, ``model.saliency_checkpoint``) in the error, ``expected`` what it should have been."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{key}: no file {path} (expected {expected})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{key} {path} is not a readable PyTorch checkpoint of weights only ({_reason(exc)}); "
                              f"expected {expected}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{key} {path} is not a Lightning checkpoint (no state_dict): expected {expected}")
    return ckpt


def checkpoint_kind(path: str | Path, ckpt: dict, key: str = "checkpoint") -> str:
    """The model kind of a salseg checkpoint: its ``salseg_model`` stamp, or (an older checkpoint) ``model.kind`` of
    its run's ``config.yaml`` (``<run>/checkpoints/last.ckpt`` -> ``<run>/config.yaml``)."""
    kind = ckpt.get("salseg_model")
    config = Path(str(path)).expanduser().parent.parent / "config.yaml"
    if kind is None and config.is_file():
        from omegaconf import OmegaConf

        kind = OmegaConf.select(OmegaConf.load(config), "model.kind")
    if kind is None:
        raise CheckpointError(f"{key} {path}: cannot tell which model it holds (no salseg_model entry and no run "
                              f"config.yaml beside it)")
    return str(kind)


def build_from_checkpoint(cls, path: str | Path, overrides: dict | None = None, *, key: str = "checkpoint",
                          ckpt: dict | None = None):
    """``cls`` built from the checkpoint's hyper-parameters, with ``overrides``' values for the keys the method lists
    in ``test_time_hparams`` (settings that only change how it is tested, e.g. GD saliency's number of steps T;
    every other value is the checkpoint's own, so the weights always fit), and its state dict loaded (strictly).
    ``ckpt``: the checkpoint already read by :func:`read_checkpoint`. As Lightning's ``load_from_checkpoint`` does:
    hyper-parameters the constructor no longer takes are dropped, ``on_load_checkpoint`` runs before the weights."""
    if ckpt is None:
        ckpt = read_checkpoint(path, key)
    test_time = set(getattr(cls, "test_time_hparams", ()))
    hparams = {**ckpt.get("hyper_parameters", {}), **{k: v for k, v in (overrides or {}).items() if k in test_time}}
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        hparams = {k: v for k, v in hparams.items() if k in params}
    model = cls(**hparams)
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    return model
