"""Compose ONE experiment from ``configs/<group>/<name>.yaml`` + ``experiments/<NAME>.yaml`` + overrides.

Order (README "Configuration"): each group default -> the experiment's own keys -> command-line dotlist overrides.
The result is in struct mode, so a misspelt key (``trainer.max_epoch=3``) is an error naming the key instead
of a silently ignored setting. YAML here is data: nothing in it executes code (OmegaConf resolvers are limited
to the built-in ``oc.env``), and only registered classes are built from it (see ``salseg.registry``).
Studies of several runs (comparisons in ``experiments/comparisons/``, ablations in ``experiments/ablations/``) are
planned in :mod:`salseg.studies.plan`. Every file is looked up along one search path, the user's folders
(``--config-dir``, ``SALSEG_CONFIG_PATH``) before the shipped ones: see :mod:`salseg.config_paths`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from salseg.config_paths import shipped_dirs, user_dirs
from salseg.errors import SalsegError

# The shipped folders, searched after the user's (read at call time, so tests may point them elsewhere).
CONFIG_DIR, EXPERIMENT_DIR = shipped_dirs()
ABLATION_DIR = EXPERIMENT_DIR / "ablations"
COMPARISONS = "comparisons"  # experiments/comparisons/<NAME>.yaml: files with a ``compare`` list
GROUPS = ("data", "model", "trainer", "logger")

# Keys every composed experiment has, so overrides of them are never "unknown".
BASE = {
    "name": "???",
    "callbacks": {},  # name -> {kind: EarlyStopping, ...}: salseg/callbacks/from_config.py (README "Configuration")
    "seed": 0,
    "tags": [],
    "group": None,
    "notes": "",
    "runs_dir": "runs",
    "save_maps": False,
    "test_only": False,
    "ckpt_path": None,
    "cost": True,  # metrics.json's cost block (salseg.cost: params, FLOPs, images/s); false skips measuring it
}


class ConfigError(SalsegError, ValueError):
    """A configuration problem, phrased for the person who wrote the YAML or the override."""


def group_dirs(group: str) -> list[Path]:
    """Where ``configs/<group>/*.yaml`` are looked up, first match wins."""
    return [d / "configs" / group for d in user_dirs()] + [CONFIG_DIR / group]


def experiment_dirs() -> list[Path]:
    return [d / "experiments" for d in user_dirs()] + [EXPERIMENT_DIR]


def comparison_dirs() -> list[Path]:
    return [d / "experiments" / COMPARISONS for d in user_dirs()] + [EXPERIMENT_DIR / COMPARISONS]


def ablation_dirs() -> list[Path]:
    return [d / "experiments" / "ablations" for d in user_dirs()] + [ABLATION_DIR]


def find_yaml(folders: list[Path], name: str) -> Path | None:
    """``<folder>/<name>.yaml`` in the first folder that has it."""
    return next((f / f"{name}.yaml" for f in folders if (f / f"{name}.yaml").is_file()), None)


def _names(folders: list[Path]) -> list[str]:
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


def experiment_path(name: str) -> Path:
    """``experiments/<name>.yaml``, or ``experiments/comparisons/<name>.yaml`` for a comparison, from the first
    folder of the search path that has either (a path that does not exist when none has)."""
    for plain, compared in zip(experiment_dirs(), comparison_dirs()):
        for path in (plain / f"{name}.yaml", compared / f"{name}.yaml"):
            if path.is_file():
                return path
    return EXPERIMENT_DIR / f"{name}.yaml"


def list_experiments() -> list[str]:
    """Plain experiments and comparisons: both are run by ``salseg run NAME``."""
    return _names(experiment_dirs() + comparison_dirs())


def list_ablations() -> list[str]:
    return _names(ablation_dirs())


def load_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: say which file
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def unknown_name(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or '(none)'}")


def load_group(group: str, name: str) -> DictConfig:
    path = find_yaml(group_dirs(group), name)
    if path is None:
        raise unknown_name(f"{group} config", name, _names(group_dirs(group)))
    return load_yaml(path)


def _apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. trainer.max_epochs=3)")
        key, value = item.split("=", 1)
        try:
            parsed = OmegaConf.from_dotlist([f"x={value}"]).x
            if key.startswith("trainer."):
                check_trainer_keys([key.split(".")[1]], f"override {item}")
            _check_scalar_type(key, OmegaConf.select(cfg, key, default=None), parsed, value)
            # A mapping given on the command line REPLACES the node (data.test={sod: {...}} tests on sod only).
            OmegaConf.update(cfg, key, parsed, merge=False, force_add=False)
            _open_dataset_maps(cfg)
            if key.split(".")[0] == "callbacks":
                _check_callbacks(cfg, f"override {item}")
        except (ConfigAttributeError, ConfigKeyError) as err:
            # Report against the deepest part of the dotted key that does exist.
            parts = key.split(".")
            depth = len(parts) - 1
            while depth > 0 and not isinstance(OmegaConf.select(cfg, ".".join(parts[:depth])), DictConfig):
                depth -= 1
            parent = ".".join(parts[:depth])
            node = OmegaConf.select(cfg, parent) if parent else cfg
            known = sorted(node.keys())
            leaf = parts[depth]
            close = difflib.get_close_matches(leaf, [str(k) for k in known], n=3)
            dotted = [f"{parent}.{c}" if parent else c for c in close]
            hint = f" Did you mean {', '.join(dotted)}?" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}.{hint} "
                f"Keys under {parent or 'the top level'}: {', '.join(map(str, known))}"
            ) from err


def _check_scalar_type(key: str, current, parsed, text: str) -> None:
    """Refuse an override whose value cannot have the type of the value it replaces, naming key, value and type.

    YAML configs are untyped to OmegaConf, so ``data.batch_size=lots`` would otherwise reach a constructor's
    ``int()`` and fail there without the key's name. Only clear mismatches are refused: a word or a list where a
    number or a boolean stood, a boolean where a number stood. Numbers stay interchangeable (Lightning's
    ``limit_val_batches`` is a fraction as 1.0 and a count as 10), ``null`` is always allowed (the constructor
    decides), and interpolations (``${oc.env:...}``) are left alone: their type is only known once resolved.
    """
    if current is None or parsed is None or not isinstance(current, (bool, int, float)):
        return
    if "${" in text:
        return
    expected = "a boolean (true or false)" if isinstance(current, bool) else (
        "an integer" if isinstance(current, int) else "a number")
    fits = isinstance(parsed, bool) if isinstance(current, bool) else (
        isinstance(parsed, (int, float)) and not isinstance(parsed, bool))
    if not fits:
        raise ConfigError(f"override {key}={text}: expected {expected} (the current value is {current!r})")


def compose(name: str, overrides: Iterable[str] = (), experiment: DictConfig | None = None) -> DictConfig:
    """Return the frozen-in-struct config of experiment ``name`` with ``overrides`` applied.

    ``experiment`` may be given directly (tests, ablation variants); otherwise it is read from
    ``experiments/<name>.yaml``. Group defaults may also be switched on the command line with
    ``data=ecssd`` style overrides (a bare group name as the key).
    """
    overrides = list(overrides)
    if experiment is None:
        path = experiment_path(name)
        if not path.is_file():
            raise unknown_name("experiment", name, list_experiments())
        experiment = load_yaml(path)
        if "compare" in experiment:
            names = [e if isinstance(e, str) else next(iter(e)) for e in experiment.compare]
            raise ConfigError(f"experiment {name!r} is a comparison of {names}: "
                              f"`salseg run {name}` runs each; compose one of them instead")
    experiment = experiment.copy()
    defaults = dict(experiment.pop("defaults", {}) or {})
    # `data=ecssd` switches the group file; every other override is a dotted key.
    rest = []
    for item in overrides:
        key = item.split("=", 1)[0].removeprefix("defaults.")
        if key in GROUPS and "=" in item:
            defaults[key] = item.split("=", 1)[1]
        else:
            rest.append(item)
    missing = [g for g in GROUPS if g not in defaults]
    if missing:
        raise ConfigError(f"experiment {name!r}: 'defaults' must name a config for groups {missing} (have {defaults})")
    unknown_groups = sorted(set(defaults) - set(GROUPS))
    if unknown_groups:
        raise ConfigError(f"experiment {name!r}: unknown config groups {unknown_groups}; known: {list(GROUPS)}")

    cfg = OmegaConf.create(dict(BASE))
    for group in GROUPS:
        cfg[group] = load_group(group, str(defaults[group]))
    trainer_file = find_yaml(group_dirs("trainer"), str(defaults["trainer"]))
    check_trainer_keys(cfg.trainer.keys(), str(trainer_file or f"configs/trainer/{defaults['trainer']}.yaml"))
    cfg.defaults = {g: str(defaults[g]) for g in GROUPS}
    cfg.name = name
    OmegaConf.set_struct(cfg, True)
    _open_dataset_maps(cfg)
    try:
        cfg = OmegaConf.merge(cfg, experiment)
    except (ConfigAttributeError, ConfigKeyError) as err:
        raise ConfigError(f"experiment {name!r}: {err.msg if hasattr(err, 'msg') else err}") from err
    _open_dataset_maps(cfg)
    where = f"experiment {name!r}"
    if isinstance(experiment.get("trainer"), DictConfig):
        check_trainer_keys(experiment.trainer.keys(), where)
    _check_callbacks(cfg, where)
    _apply_overrides(cfg, rest)
    return cfg


# Trainer arguments salseg sets itself for every run (salseg/runner.py), and what to use instead.
RESERVED_TRAINER_ARGS = {
    "logger": "salseg sets the loggers: choose the logger group (logger=csv or logger=wandb)",
    "callbacks": "salseg adds the run's own callbacks: add yours in the top-level callbacks mapping "
                 "(callbacks.<name>={kind: EarlyStopping, monitor: val/loss})",
    "default_root_dir": "every run writes under <runs_dir>/<name>/<timestamp>: set runs_dir",
    "enable_checkpointing": "every trained run writes checkpoints/last.ckpt (resume relies on it): for more, add "
                            "a ModelCheckpoint in the callbacks mapping",
}


def trainer_arguments() -> list[str]:
    """Every argument of ``lightning.pytorch.Trainer``: the keys a trainer block may hold (less the reserved)."""
    from lightning.pytorch import Trainer

    return sorted(set(inspect.signature(Trainer.__init__).parameters) - {"self"})


def check_trainer_keys(keys: Iterable, where: str) -> None:
    """One line for a trainer key that salseg sets itself or that ``lightning.pytorch.Trainer`` does not take."""
    accepted = trainer_arguments()
    for key in map(str, keys):
        if key in RESERVED_TRAINER_ARGS:
            raise ConfigError(f"{where}: trainer.{key} is not set from the config: {RESERVED_TRAINER_ARGS[key]}")
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=3)
            hint = (f" Did you mean {', '.join('trainer.' + c for c in close)}?" if close
                    else " (see the arguments of lightning.pytorch.Trainer)")
            raise ConfigError(f"{where}: unknown Trainer argument 'trainer.{key}'.{hint}")


def _check_callbacks(cfg: DictConfig, where: str) -> None:
    from salseg.callbacks.from_config import check_callbacks

    node = cfg.get("callbacks")
    if node is not None and not isinstance(node, DictConfig):
        raise ConfigError(f"{where}: callbacks must be a mapping of name -> {{kind: ..., ...}}, got {node!r}")
    check_callbacks(OmegaConf.to_container(node) if node is not None else None, where)


# Maps whose keys are free names (test-set display names, dataset-builder keywords), not a fixed schema:
# experiments may add entries. The DataModule validates each entry and names any unknown keyword.
# The trainer block and the callbacks mapping are open too: their keys are checked against lightning.pytorch.Trainer
# (check_trainer_keys) and the callbacks' allow-list (salseg/callbacks/from_config.py) instead of a fixed schema.
OPEN_NODES = ("data.train", "data.val", "data.test", "data.augment", "data.distortion", "trainer", "callbacks")


def _open_dataset_maps(cfg: DictConfig) -> None:
    for key in OPEN_NODES:
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig):
            OmegaConf.set_struct(node, False)


def resolve(cfg: DictConfig) -> dict:
    """Plain container with interpolations (``${oc.env:SALSEG_DATA,data}``) resolved."""
    return OmegaConf.to_container(cfg, resolve=True)
