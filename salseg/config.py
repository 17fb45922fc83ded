"""Compose an experiment from ``configs/<group>/<name>.yaml`` + ``experiments/<NAME>.yaml`` + overrides.

Order (README "Configuration"): each group default -> the experiment's own keys -> command-line dotlist overrides.
The result is in struct mode, so a misspelt key (``trainer.max_epoch=3``) is an error naming the key instead
of a silently ignored setting. YAML here is data: nothing in it executes code (OmegaConf resolvers are limited
to the built-in ``oc.env``), and only registered classes are built from it (see ``salseg.registry``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from salseg.errors import SalsegError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
EXPERIMENT_DIR = ROOT / "experiments"
ABLATION_DIR = EXPERIMENT_DIR / "ablations"
GROUPS = ("data", "model", "trainer", "logger")

# Keys every composed experiment has, so overrides of them are never "unknown".
BASE = {
    "name": "???",
    "seed": 0,
    "tags": [],
    "group": None,
    "notes": "",
    "runs_dir": "runs",
    "save_maps": False,
    "test_only": False,
    "ckpt_path": None,
}


class ConfigError(SalsegError, ValueError):
    """A configuration problem, phrased for the person who wrote the YAML or the override."""


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def list_experiments() -> list[str]:
    return _names(EXPERIMENT_DIR)


def list_ablations() -> list[str]:
    return _names(ABLATION_DIR)


def _load_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: say which file
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or '(none)'}")


def load_group(group: str, name: str) -> DictConfig:
    folder = CONFIG_DIR / group
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise _unknown(f"{group} config", name, _names(folder))
    return _load_yaml(path)


def _apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. trainer.max_epochs=3)")
        key, value = item.split("=", 1)
        try:
            parsed = OmegaConf.from_dotlist([f"x={value}"]).x
            # A mapping given on the command line REPLACES the node (data.test={sod: {...}} tests on sod only).
            OmegaConf.update(cfg, key, parsed, merge=False, force_add=False)
            _open_dataset_maps(cfg)
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


def is_comparison(name: str) -> bool:
    """Whether ``experiments/<name>.yaml`` is a comparison file (has a ``compare`` list); not validated here."""
    path = EXPERIMENT_DIR / f"{name}.yaml"
    return path.is_file() and "compare" in _load_yaml(path)


def load_comparison(name: str) -> DictConfig | None:
    """The ``compare`` block of ``experiments/<name>.yaml`` when that file is a comparison, else None.

    A comparison file runs several experiments under one name and puts them in one table::

        description: ...
        compare: [rc_shapes, menet_shapes]      # experiments, each an ordinary run
        overrides: {data.test.shapes.size: 120} # optional, applied to every entry (so they test the same images)

    An entry may carry its own overrides: ``compare: [rc_shapes, {gd_shapes: {trainer.max_epochs: 4}}]``.
    """
    path = EXPERIMENT_DIR / f"{name}.yaml"
    if not path.is_file():
        return None
    exp = _load_yaml(path)
    if "compare" not in exp:
        return None
    extra = set(exp.keys()) - {"compare", "overrides", "description"}
    if extra:
        raise ConfigError(f"{path}: a comparison file takes compare, overrides, description; "
                          f"unknown keys {sorted(extra)}")
    entries = exp.compare
    if not isinstance(entries, ListConfig) or not entries or not all(
            isinstance(e, str) or (isinstance(e, DictConfig) and len(e) == 1) for e in entries):
        raise ConfigError(f"{path}: 'compare' must be a non-empty list of experiment names (or one-key mappings "
                          f"name: {{overrides}}), got {entries!r}")
    for entry in (e if isinstance(e, str) else next(iter(e)) for e in entries):
        if entry == name or not (EXPERIMENT_DIR / f"{entry}.yaml").is_file():
            raise _unknown("experiment", str(entry), [e for e in list_experiments() if e != name])
        if "compare" in _load_yaml(EXPERIMENT_DIR / f"{entry}.yaml"):
            raise ConfigError(f"{path}: {entry!r} is itself a comparison; compare plain experiments only")
    return exp


def comparison_entries(cmp: DictConfig, overrides: Iterable[str] = ()) -> dict[str, list[str]]:
    """``{experiment: [dotlist overrides]}``: the file's common overrides, the entry's own (an entry written
    ``name: {key: value}``, e.g. a shorter schedule for the quickstart), then the caller's. An entry's
    ``use_checkpoint_of`` is not an override (see :func:`comparison_plan`)."""
    common = [f"{k}={_to_override(v)}" for k, v in (cmp.get("overrides") or {}).items()]
    out: dict[str, list[str]] = {}
    for e in cmp.compare:
        if isinstance(e, str):
            out[e] = common + list(overrides)
        else:
            (name, own), = e.items()
            own = {k: v for k, v in (own or {}).items() if k != "use_checkpoint_of"}
            out[str(name)] = common + [f"{k}={_to_override(v)}" for k, v in own.items()] + list(overrides)
    return out


def comparison_plan(cmp: DictConfig) -> list[Variant]:
    """The entries of a comparison as variants (name = experiment), with their ``use_checkpoint_of`` links."""
    links = {}
    for e in cmp.compare:
        if not isinstance(e, str):
            (name, own), = e.items()
            links[str(name)] = _checkpoint_links(f"comparison entry {name!r}", (own or {}).get("use_checkpoint_of"))
    plan = [Variant(entry, entry, tuple(ovr), use_checkpoint_of=links.get(entry, ()))
            for entry, ovr in comparison_entries(cmp).items()]
    check_checkpoint_links("comparison entry", plan)
    return plan


def compose(name: str, overrides: Iterable[str] = (), experiment: DictConfig | None = None) -> DictConfig:
    """Return the frozen-in-struct config of experiment ``name`` with ``overrides`` applied.

    ``experiment`` may be given directly (tests, ablation variants); otherwise it is read from
    ``experiments/<name>.yaml``. Group defaults may also be switched on the command line with
    ``data=ecssd`` style overrides (a bare group name as the key).
    """
    overrides = list(overrides)
    if experiment is None:
        path = EXPERIMENT_DIR / f"{name}.yaml"
        if not path.is_file():
            raise _unknown("experiment", name, list_experiments())
        experiment = _load_yaml(path)
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
    cfg.defaults = {g: str(defaults[g]) for g in GROUPS}
    cfg.name = name
    OmegaConf.set_struct(cfg, True)
    _open_dataset_maps(cfg)
    try:
        cfg = OmegaConf.merge(cfg, experiment)
    except (ConfigAttributeError, ConfigKeyError) as err:
        raise ConfigError(f"experiment {name!r}: {err.msg if hasattr(err, 'msg') else err}") from err
    _open_dataset_maps(cfg)
    _apply_overrides(cfg, rest)
    return cfg


# Maps whose keys are free names (test-set display names, dataset-builder keywords), not a fixed schema:
# experiments may add entries. The DataModule validates each entry and names any unknown keyword.
OPEN_NODES = ("data.train", "data.val", "data.test", "data.augment", "data.distortion")


def _open_dataset_maps(cfg: DictConfig) -> None:
    for key in OPEN_NODES:
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig):
            OmegaConf.set_struct(node, False)


def resolve(cfg: DictConfig) -> dict:
    """Plain container with interpolations (``${oc.env:SALSEG_DATA,data}``) resolved."""
    return OmegaConf.to_container(cfg, resolve=True)


def load_ablation(name: str) -> DictConfig:
    path = ABLATION_DIR / f"{name}.yaml"
    if not path.is_file():
        raise _unknown("ablation", name, list_ablations())
    abl = _load_yaml(path)
    for key in ("base",):
        if key not in abl:
            raise ConfigError(f"{path}: missing key {key!r} (the experiment the variants modify)")
    if "variants" not in abl and "grid" not in abl:
        raise ConfigError(f"{path}: needs 'variants' (name -> overrides) or 'grid' (key -> list of values)")
    extra = set(abl.keys()) - {"base", "variants", "grid", "overrides", "description", "datasets", "metrics",
                               "summary"}
    if extra:
        raise ConfigError(f"{path}: unknown keys {sorted(extra)}")
    bad = sorted(set(abl.get("summary") or []) - set(SUMMARY_ROWS))
    if bad:
        raise ConfigError(f"{path}: summary: unknown row(s) {bad}; known: {list(SUMMARY_ROWS)}")
    return abl


# Rows an ablation may add below its variants, over every variant's value (e.g. the mean of paper 002's 5 folds).
SUMMARY_ROWS = ("mean", "std")


VARIANT_KEYS = ("experiment", "map", "checkpoint_of", "use_checkpoint_of")


@dataclass(frozen=True)
class Variant:
    """One row of an ablation: run ``experiment`` with ``overrides`` (or, with ``checkpoint_of``, test the trained
    checkpoint of that earlier variant with them), and report its map ``map`` (None: the primary map)."""

    name: str
    experiment: str
    overrides: tuple[str, ...]
    map: str | None = None
    checkpoint_of: str | None = None
    # (config key, earlier variant): set the key to that variant's last.ckpt, e.g. DCSP's saliency model
    use_checkpoint_of: tuple[tuple[str, str], ...] = ()


def _checkpoint_links(where: str, spec) -> tuple[tuple[str, str], ...]:
    """``use_checkpoint_of: {config.key: earlier_variant}`` -> ((key, variant), ...)."""
    if spec is None:
        return ()
    if isinstance(spec, (DictConfig, ListConfig)):
        spec = OmegaConf.to_container(spec)
    if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
        raise ConfigError(f"{where}: use_checkpoint_of must map config keys to earlier entries, e.g. "
                          f"{{model.saliency_checkpoint: menet_shapes}}, got {spec!r}")
    return tuple((str(k), str(v)) for k, v in spec.items())


def check_checkpoint_links(kind: str, plan: list[Variant]) -> None:
    names = [v.name for v in plan]
    for i, v in enumerate(plan):
        refs = ([v.checkpoint_of] if v.checkpoint_of is not None else []) + [r for _, r in v.use_checkpoint_of]
        for ref in refs:
            if ref not in names[:i]:
                raise ConfigError(f"{kind} {v.name!r}: {ref!r} (checkpoint_of / use_checkpoint_of) must name an "
                                  f"earlier entry (earlier: {names[:i]})")


def ablation_plan(abl: DictConfig) -> list[Variant]:
    """The variants of an ablation, in file order, grid variants as a cartesian product.

    A variant is a mapping of dotted overrides, plus optional keys (not config keys):
    ``experiment`` (run this experiment instead of ``base``, e.g. a baseline), ``map`` (the row is this map of
    the run, not its primary one: several rows can then share ONE run, as gd_models does), ``checkpoint_of``
    (an earlier variant: test its trained checkpoint with this variant's test-time overrides instead of training
    again, as gd_steps does), ``use_checkpoint_of`` (``{config.key: earlier variant}``: set the key to that
    variant's ``last.ckpt``, e.g. DCSP's ``model.saliency_checkpoint`` from a MEnet variant trained before it).
    """
    import itertools

    common = [f"{k}={_to_override(v)}" for k, v in (abl.get("overrides") or {}).items()]
    plan: list[Variant] = []
    for vname, ovr in (abl.get("variants") or {}).items():
        ovr = dict(ovr or {})
        special = {k: ovr.pop(k) for k in VARIANT_KEYS if k in ovr}
        experiment = str(special.get("experiment", abl.base))
        if experiment != str(abl.base) and not (EXPERIMENT_DIR / f"{experiment}.yaml").is_file():
            raise _unknown("experiment", experiment, list_experiments())
        plan.append(Variant(str(vname), experiment, tuple(common + [f"{k}={_to_override(v)}" for k, v in ovr.items()]),
                            None if special.get("map") is None else str(special["map"]),
                            None if special.get("checkpoint_of") is None else str(special["checkpoint_of"]),
                            _checkpoint_links(f"ablation variant {vname!r}", special.get("use_checkpoint_of"))))
    grid = abl.get("grid") or {}
    if grid:
        keys = list(grid.keys())
        for combo in itertools.product(*[list(grid[k]) for k in keys]):
            vname = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, combo))
            plan.append(Variant(vname, str(abl.base),
                                tuple(common + [f"{k}={_to_override(v)}" for k, v in zip(keys, combo)])))
    check_checkpoint_links("ablation variant", plan)
    return plan


def ablation_variants(abl: DictConfig) -> dict[str, list[str]]:
    """``{variant_name: [dotlist overrides]}`` (see :func:`ablation_plan` for the full description)."""
    return {v.name: list(v.overrides) for v in ablation_plan(abl)}


def _to_override(value) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)
