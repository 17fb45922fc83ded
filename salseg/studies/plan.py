"""The plan language of studies: which runs a comparison or an ablation file asks for (README "Running experiments").

A comparison file (``experiments/comparisons/<NAME>.yaml``) runs several experiments under one name::

    description: ...
    compare: [rc_shapes, menet_shapes]      # experiments, each an ordinary run
    overrides: {data.test.shapes.size: 120} # optional, applied to every entry (so they test the same images)

An entry may carry its own overrides: ``compare: [rc_shapes, {gd_shapes: {trainer.max_epochs: 4}}]``, and
``use_checkpoint_of``. An ablation file (``experiments/ablations/<NAME>.yaml``) names a ``base`` experiment and
``variants`` (name -> overrides) and/or a ``grid`` (key -> list of values, a cartesian product); see
:func:`ablation_plan` for the keys a variant may carry besides overrides (``experiment``, ``map``,
``checkpoint_of``, ``use_checkpoint_of``). Both become a list of :class:`Variant`.

Files are looked up through :mod:`salseg.config` at call time (the user's folders, then the shipped ones; see
:mod:`salseg.config_paths`), one place for them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from salseg import config
from salseg.config import ConfigError, load_yaml, unknown_name

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


# ------------------------------------------------------------------------------------------ comparisons
def is_comparison(name: str) -> bool:
    """Whether ``name`` is a comparison file (has a ``compare`` list); not validated here."""
    path = config.experiment_path(name)
    return path.is_file() and "compare" in load_yaml(path)


def load_comparison(name: str) -> DictConfig | None:
    """The comparison file ``experiments/comparisons/<name>.yaml`` when ``name`` is one, else None (see the module
    docstring for the format)."""
    path = config.experiment_path(name)
    if not path.is_file():
        return None
    exp = load_yaml(path)
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
        entry_path = config.experiment_path(str(entry))
        if entry == name or not entry_path.is_file():
            raise unknown_name("experiment", str(entry), [e for e in config.list_experiments() if e != name])
        if "compare" in load_yaml(entry_path):
            raise ConfigError(f"{path}: {entry!r} is itself a comparison; compare plain experiments only")
    return exp


def comparison_entries(cmp: DictConfig, overrides: Iterable[str] = ()) -> dict[str, list[str]]:
    """``{experiment: [dotlist overrides]}``: the file's common overrides, the entry's own (an entry written
    ``name: {key: value}``, e.g. a shorter schedule for the quickstart), then the caller's. An entry's
    ``use_checkpoint_of`` is not an override (see :func:`comparison_plan`)."""
    common = [f"{k}={to_override(v)}" for k, v in (cmp.get("overrides") or {}).items()]
    out: dict[str, list[str]] = {}
    for e in cmp.compare:
        if isinstance(e, str):
            out[e] = common + list(overrides)
        else:
            (name, own), = e.items()
            own = {k: v for k, v in (own or {}).items() if k != "use_checkpoint_of"}
            out[str(name)] = common + [f"{k}={to_override(v)}" for k, v in own.items()] + list(overrides)
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


# ------------------------------------------------------------------------------------------ ablations
def load_ablation(name: str) -> DictConfig:
    path = config.find_yaml(config.ablation_dirs(), name)
    if path is None:
        raise unknown_name("ablation", name, config.list_ablations())
    abl = load_yaml(path)
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


def ablation_plan(abl: DictConfig) -> list[Variant]:
    """The variants of an ablation, in file order, grid variants as a cartesian product.

    A variant is a mapping of dotted overrides, plus optional keys (not config keys):
    ``experiment`` (run this experiment instead of ``base``, e.g. a baseline), ``map`` (the row is this map of
    the run, not its primary one: several rows can then share ONE run, as gd_models does), ``checkpoint_of``
    (an earlier variant: test its trained checkpoint with this variant's test-time overrides instead of training
    again, as gd_steps does), ``use_checkpoint_of`` (``{config.key: earlier variant}``: set the key to that
    variant's ``last.ckpt``, e.g. DCSP's ``model.saliency_checkpoint`` from a MEnet variant trained before it).
    """
    common = [f"{k}={to_override(v)}" for k, v in (abl.get("overrides") or {}).items()]
    plan: list[Variant] = []
    for vname, ovr in (abl.get("variants") or {}).items():
        ovr = dict(ovr or {})
        special = {k: ovr.pop(k) for k in VARIANT_KEYS if k in ovr}
        experiment = str(special.get("experiment", abl.base))
        if experiment != str(abl.base) and config.find_yaml(config.experiment_dirs(), experiment) is None:
            raise unknown_name("experiment", experiment, config.list_experiments())
        plan.append(Variant(str(vname), experiment, tuple(common + [f"{k}={to_override(v)}" for k, v in ovr.items()]),
                            None if special.get("map") is None else str(special["map"]),
                            None if special.get("checkpoint_of") is None else str(special["checkpoint_of"]),
                            _checkpoint_links(f"ablation variant {vname!r}", special.get("use_checkpoint_of"))))
    grid = abl.get("grid") or {}
    if grid:
        keys = list(grid.keys())
        for combo in itertools.product(*[list(grid[k]) for k in keys]):
            vname = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, combo))
            plan.append(Variant(vname, str(abl.base),
                                tuple(common + [f"{k}={to_override(v)}" for k, v in zip(keys, combo)])))
    check_checkpoint_links("ablation variant", plan)
    return plan


def ablation_variants(abl: DictConfig) -> dict[str, list[str]]:
    """``{variant_name: [dotlist overrides]}`` (see :func:`ablation_plan` for the full description)."""
    return {v.name: list(v.overrides) for v in ablation_plan(abl)}


# ------------------------------------------------------------------------------------------ checkpoints, values
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


def to_override(value) -> str:
    """A YAML value as the right-hand side of a dotlist override (mappings and lists as JSON)."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)
