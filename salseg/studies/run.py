"""The one run-and-collect loop of studies: run each planned entry (or reuse a run an earlier entry made), collect
its metrics and PR curves (README "Running experiments")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from salseg.config import ConfigError, compose
from salseg.studies.plan import Variant

R = TypeVar("R")


@dataclass
class Collected:
    """What a study's runs measured, keyed by the row labels of its table."""

    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # label -> dataset -> metric -> value
    curves: dict[str, dict] = field(default_factory=dict)  # "label (dataset)" -> pr curve
    run_dirs: dict[str, str] = field(default_factory=dict)  # entry -> its run folder


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def run_each(plan: list[Variant], execute: Callable[[Variant, dict[str, str]], R],
             announce: Callable[[int, Variant, bool], None],
             collect: Callable[[Variant, R], None] | None = None) -> tuple[list[tuple[Variant, R]], dict[str, str]]:
    """Run the entries of ``plan`` in order: ``announce(i, variant, reused)``, then ``execute(variant, run_dirs)``
    (``run_dirs``: the run folder of every earlier entry, for ``checkpoint_of`` / ``use_checkpoint_of``) unless an
    earlier entry asked for the same run (same experiment, overrides and checkpoints: it is reused), then
    ``collect(variant, result)`` (before the next entry runs, so a bad row stops the study there). Returns
    ``[(variant, result)]`` and ``{entry: run folder}``; a result has a ``run_dir``."""
    done: dict[tuple, R] = {}
    results: list[tuple[Variant, R]] = []
    run_dirs: dict[str, str] = {}
    for i, v in enumerate(plan, 1):
        key = (v.experiment, v.overrides, v.checkpoint_of, v.use_checkpoint_of)
        announce(i, v, key in done)
        if key not in done:
            done[key] = execute(v, run_dirs)
        results.append((v, done[key]))
        if collect is not None:
            collect(v, done[key])
        run_dirs[v.name] = str(done[key].run_dir)
    return results, run_dirs


def run_plan(kind: str, name: str, plan: list[Variant], extra_overrides: list[str], runs_dir: str | None,
             resume: bool = False) -> Collected:
    """Run each variant of ``plan`` (W&B group = ``name``) and collect its rows. Variants that differ only in
    ``map`` share one run; a ``checkpoint_of`` variant tests that variant's checkpoint (``test_only``)."""
    from salseg.runner import run

    def announce(i: int, v: Variant, reused: bool) -> None:
        shown = " ".join(v.overrides) if kind == "ablation" else v.experiment
        if v.experiment != plan[0].experiment and kind == "ablation":
            shown = f"experiment {v.experiment} {shown}".strip()
        if v.checkpoint_of:
            shown += f" (testing the checkpoint of {v.checkpoint_of!r})"
        print(f"\n[salseg] {kind} {name}: {i}/{len(plan)} {v.name!r}: {shown or '(base)'}"
              + (f", map {v.map}" if v.map else "") + (" (same run as above)" if reused else ""))

    def execute(v: Variant, run_dirs: dict[str, str]):
        ovr = list(v.overrides) + [f"group={name}", f"tags=[{kind},{name},{v.name}]",
                                   f'notes="{kind} {name}: {v.name}"',  # quoted: unquoted "a: b" is a mapping
                                   *extra_overrides]
        if v.checkpoint_of:
            ovr += ["test_only=true", f"ckpt_path={last_checkpoint(run_dirs[v.checkpoint_of])}"]
        ovr += [f"{k}={last_checkpoint(run_dirs[ref])}" for k, ref in v.use_checkpoint_of]
        if runs_dir:
            ovr.append(f"runs_dir={runs_dir}")
        return run(compose(v.experiment, ovr), resume=resume)

    got = Collected()

    def collect(v: Variant, result) -> None:
        map_name = v.map or next(iter(result.metrics))
        if map_name not in result.metrics:
            raise ConfigError(f"{kind} {name}, variant {v.name!r}: the run made no map {map_name!r}; it made "
                              f"{list(result.metrics)}")
        # an ablation row is one map of its run; a comparison shows every map an entry made (GD's CNN2+3, CNN1
        # and gradient maps; raw / smoothed / refined), as rows "<entry>: <map>" after the primary one
        shown = [map_name] if kind == "ablation" else list(result.metrics)
        for m in shown:
            label = v.name if m == map_name else f"{v.name}: {m}"
            got.rows[label] = result.metrics[m]
            for dataset, c in result.curves.get(m, {}).items():
                got.curves[f"{label} ({dataset})" if len(result.curves.get(m, {})) > 1 else label] = c["pr"]

    got.run_dirs = run_each(plan, execute, announce, collect)[1]
    return got
