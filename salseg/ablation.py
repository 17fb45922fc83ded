"""Run the variants of an ablation file, then write one comparison table (markdown + CSV) and one PR plot.

An ablation file (``experiments/ablations/<NAME>.yaml``) names a ``base`` experiment and either ``variants``
(name -> overrides) or a ``grid`` (key -> list of values, expanded as a cartesian product); ``overrides`` apply
to every variant. Each variant is an ordinary run (``runs/<base>/...``) whose W&B group is the ablation name,
so the runs sit together in the W&B UI.

A comparison file (``experiments/comparisons/<NAME>.yaml`` with a ``compare`` list, e.g. ``quickstart``) runs
several experiments the same way, each under its own name, and compares them in ``runs/<NAME>/<timestamp>/``.
The plan is read by :mod:`salseg.studies.plan`, run by :mod:`salseg.studies.run`, written by
:mod:`salseg.studies.report`.
"""

from __future__ import annotations

import time
from pathlib import Path

from salseg import tracking
from salseg.config import ConfigError, compose
from salseg.studies.plan import Variant, ablation_plan, comparison_plan, load_ablation, load_comparison
from salseg.studies.report import write_outputs
from salseg.studies.run import run_plan


def run_ablation(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None) -> Path:
    abl = load_ablation(name)
    plan = ablation_plan(abl)
    return _run_and_compare("ablation", name, plan, list(extra_overrides), runs_dir, Path("ablations") / name,
                            summary=list(abl.get("summary") or []))


def run_comparison(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None,
                   resume: bool = False) -> Path:
    """Run every experiment of the comparison file ``experiments/comparisons/<name>.yaml``; one table + PR plot.

    Each entry is an ordinary run of its own experiment (``runs/<entry>/<timestamp>/``, resumable on its own);
    the comparison goes to ``runs/<name>/<timestamp>/`` (table.md, table.csv, pr_curves.png, metrics.png).
    """
    cmp = load_comparison(name)
    if cmp is None:
        raise ConfigError(f"experiment {name!r} is not a comparison (it has no 'compare' list)")
    plan = comparison_plan(cmp)
    return _run_and_compare("comparison", name, plan, list(extra_overrides), runs_dir, Path(name), resume)


def _run_and_compare(kind: str, name: str, plan: list[Variant], extra_overrides: list[str], runs_dir: str | None,
                     out_subdir: Path, resume: bool = False, summary: list[str] = ()) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    got = run_plan(kind, name, plan, extra_overrides, runs_dir, resume)
    out = Path(runs_dir or compose(plan[0].experiment, list(extra_overrides)).runs_dir) / out_subdir / stamp
    if tracking.env_global_rank() == 0:  # under DDP every process runs the loop; one writes the comparison
        write_outputs(out, name, got.rows, got.curves, got.run_dirs, kind=kind, summary=summary)
    return out
