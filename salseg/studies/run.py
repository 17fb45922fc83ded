"""Run a study: the one run-and-collect loop (run each planned entry, or reuse a run an earlier entry made, and
collect its metrics and PR curves), and the two studies built on it (README "Running experiments").

* :func:`run_ablation`: the variants of ``experiments/ablations/<NAME>.yaml``; each variant is an ordinary run
  (``runs/<base>/...``) whose W&B group is the ablation name, so the runs sit together in the W&B UI; one table
  and PR plot in ``runs/ablations/<NAME>/<timestamp>/``.
* :func:`run_comparison`: the experiments of ``experiments/comparisons/<NAME>.yaml`` (e.g. ``quickstart``), each
  under its own name, compared in ``runs/<NAME>/<timestamp>/``.

The robustness study (:mod:`salseg.robustness`) runs a comparison's entries through :func:`run_each` too.

Resuming a study (``--resume``, ``RESUME=1``): the study folder records, as the loop goes, the run folder and the
resolved config of each entry (:class:`StudyState`, ``plan_state.json``); a resumed study reuses its newest folder,
collects every entry whose recorded run is complete with the same config without running it again, and runs the
rest (continuing an interrupted training from its ``checkpoints/last.ckpt`` when the config is unchanged).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from salseg import tracking
from salseg.atomic import json_default, write_json
from salseg.config import ConfigError, compose, resolve
from salseg.studies.plan import Variant, ablation_plan, comparison_plan, load_ablation, load_comparison
from salseg.studies.report import write_outputs

R = TypeVar("R")


@dataclass
class Collected:
    """What a study's runs measured, keyed by the row labels of its table."""

    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # label -> dataset -> metric -> value
    curves: dict[str, dict] = field(default_factory=dict)  # "label (dataset)" -> pr curve
    run_dirs: dict[str, str] = field(default_factory=dict)  # entry -> its run folder


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


class StudyState:
    """``<study folder>/plan_state.json``: entry -> {run_dir, config (resolved, as planned)}, rewritten atomically
    after each entry runs or fails, so a resumed study knows which runs it can collect instead of rerunning.

    A SLURM study (:mod:`salseg.studies.launch`) adds per entry the job id and log paths, and a ``study`` block
    (kind, name, overrides) that ``salseg collect`` reads; its variants' jobs record their runs concurrently, so a
    record re-reads the file under a lock and changes only its own entry."""

    FILE = "plan_state.json"

    def __init__(self, folder: Path, resume: bool):
        self.path = Path(folder) / self.FILE
        doc = json.loads(self.path.read_text()) if resume and self.path.is_file() else {}
        self.entries: dict[str, dict] = doc.get("entries", {})
        self.study: dict = doc.get("study", {})

    def record(self, entry: str, run_dir: str | Path | None = None, config: dict | None = None, **extra) -> None:
        """Set ``entry``'s run (and config), and any ``extra`` fields (job_id, stdout, ...), keeping its others."""
        got = {**({"run_dir": str(run_dir)} if run_dir is not None else {}),
               **({"config": config} if config is not None else {}), **extra}
        if tracking.env_global_rank() != 0:  # under DDP every process runs the loop; one writes
            self.entries.setdefault(entry, {}).update(got)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_suffix(".lock")):
            if self.path.is_file():
                doc = json.loads(self.path.read_text())
                self.entries = {**doc.get("entries", {}), **{k: v for k, v in self.entries.items()
                                                             if k not in doc.get("entries", {})}}
                self.study = doc.get("study", self.study)
            self.entries.setdefault(entry, {}).update(got)
            write_json(self.path, {"entries": self.entries, **({"study": self.study} if self.study else {})})

    def describe(self, **study) -> None:
        """Record what the study is (kind, name, overrides...): ``salseg collect`` plans it again from this."""
        self.study = study
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_suffix(".lock")):
            entries = json.loads(self.path.read_text()).get("entries", {}) if self.path.is_file() else {}
            self.entries = {**self.entries, **entries}
            write_json(self.path, {"entries": self.entries, "study": self.study})

    def recorded_run(self, entry: str, config: dict) -> Path | None:
        """The run folder recorded for ``entry`` if it ran with this same config, else None."""
        got = self.entries.get(entry)
        return Path(got["run_dir"]) if got and got.get("run_dir") and got.get("config") == config else None

    def run_dirs(self) -> dict[str, str]:
        """entry -> recorded run folder (the runs a ``checkpoint_of`` job reads)."""
        return {e: got["run_dir"] for e, got in self.entries.items() if got.get("run_dir")}


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive ``flock`` on ``path`` (jobs on several nodes share the study folder over NFS, where flock
    is honoured by Linux's NFS client)."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def comparable(config: dict) -> dict:
    """A resolved config as it reads back from JSON (tuples as lists...), so a recorded one compares equal."""
    return json.loads(json.dumps(config, default=json_default))


def is_complete(run_dir: Path) -> bool:
    """Whether the run wrote its metrics.json (written last, so only a finished run has one)."""
    path = run_dir / "metrics.json"
    return path.is_file() and json.loads(path.read_text()).get("status") == "complete"


def load_result(run_dir: Path):
    """The :class:`~salseg.runner.RunResult` of a complete run, read from its metrics.json and curves.json."""
    from salseg.runner import RunResult

    doc = json.loads((run_dir / "metrics.json").read_text())
    curves = run_dir / "curves.json"
    return RunResult(run_dir=run_dir, metrics=doc["maps"], curves=json.loads(curves.read_text())
                     if curves.is_file() else {}, seconds=doc.get("seconds", 0.0), n_images=doc.get("n_images", {}))


def study_folder(parent: Path, resume: bool) -> Path:
    """A new ``<parent>/<timestamp>``, or with ``resume`` the newest one that recorded a plan state."""
    if resume:  # not a robustness study of the same comparison (salseg.studies.launch.launch_robustness)
        earlier = sorted(p.parent for p in parent.glob(f"*/{StudyState.FILE}")
                         if json.loads(p.read_text()).get("study", {}).get("kind") != "robustness")
        if earlier:
            print(f"[salseg] resuming the study in {earlier[-1]}")
            return earlier[-1]
        print(f"[salseg] RESUME=1 but no earlier study under {parent}: starting a new one")
    return parent / time.strftime("%Y%m%d-%H%M%S")


def run_key(v: Variant) -> tuple:
    """Entries with the same key ask for the same run (they differ only in the map their row shows)."""
    return v.experiment, v.overrides, v.checkpoint_of, v.use_checkpoint_of


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
        key = run_key(v)
        announce(i, v, key in done)
        if key not in done:
            done[key] = execute(v, run_dirs)
        results.append((v, done[key]))
        if collect is not None:
            collect(v, done[key])
        run_dirs[v.name] = str(done[key].run_dir)
    return results, run_dirs


def variant_overrides(kind: str, name: str, v: Variant, run_dirs: dict[str, str], extra_overrides: list[str],
                      runs_dir: str | None) -> list[str]:
    """The overrides of one planned entry: its own, the study's W&B group and tags, the caller's, and the
    checkpoints of the earlier entries it uses (``run_dirs``: entry -> run folder)."""
    ovr = list(v.overrides) + [f"group={name}", f"tags=[{kind},{name},{v.name}]",
                               f'notes="{kind} {name}: {v.name}"',  # quoted: unquoted "a: b" is a mapping
                               *extra_overrides]
    if v.checkpoint_of:
        ovr += ["test_only=true", f"ckpt_path={last_checkpoint(run_dirs[v.checkpoint_of])}"]
    ovr += [f"{k}={last_checkpoint(run_dirs[ref])}" for k, ref in v.use_checkpoint_of]
    if runs_dir:
        ovr.append(f"runs_dir={runs_dir}")
    return ovr


def run_variant(kind: str, name: str, v: Variant, run_dirs: dict[str, str], extra_overrides: list[str],
                runs_dir: str | None, state: StudyState | None = None, also: tuple[str, ...] = ()):
    """Run one entry (the local loop and a SLURM job both call this, so both make the same run folder).

    ``state``: an entry whose recorded run is complete with the same config is loaded instead of run; one whose
    recorded training was interrupted (a killed study, a preempted job) continues from its ``last.ckpt``. The run
    is recorded for ``v`` and for the entries ``also`` that share it."""
    from salseg import runner

    ovr = variant_overrides(kind, name, v, run_dirs, extra_overrides, runs_dir)
    if state is None:
        return runner.run(compose(v.experiment, ovr))
    planned = comparable(resolve(compose(v.experiment, ovr)))
    earlier = state.recorded_run(v.name, planned)
    if earlier is not None and is_complete(earlier):
        print(f"[salseg] {v.name}: complete in {earlier}, not rerun")
        return load_result(earlier)
    if earlier is not None and last_checkpoint(earlier).is_file() and not planned["test_only"]:
        # an interrupted training with the same config: continue it (Lightning restores epoch and optimizer)
        print(f"[salseg] {v.name}: continuing the interrupted run {earlier} from its last.ckpt")
        ovr.append(f"ckpt_path={last_checkpoint(earlier)}")
    before = os.environ.get(tracking.RUN_DIR_ENV)
    try:
        result = runner.run(compose(v.experiment, ovr))
    except BaseException:
        started = os.environ.get(tracking.RUN_DIR_ENV)  # the runner names its run folder here once made
        if started and started != before:
            state.record(v.name, started, planned)
        raise
    for entry in (v.name, *also):
        state.record(entry, result.run_dir, planned)
    return result


def add_rows(got: Collected, kind: str, name: str, v: Variant, result) -> None:
    """The table rows (and PR curves) of one entry's run: an ablation row is one map of its run; a comparison
    shows every map an entry made (GD's CNN2+3, CNN1 and gradient maps; raw / smoothed / refined), as rows
    "<entry>: <map>" after the primary one."""
    map_name = v.map or next(iter(result.metrics))
    if map_name not in result.metrics:
        raise ConfigError(f"{kind} {name}, variant {v.name!r}: the run made no map {map_name!r}; it made "
                          f"{list(result.metrics)}")
    shown = [map_name] if kind == "ablation" else list(result.metrics)
    for m in shown:
        label = v.name if m == map_name else f"{v.name}: {m}"
        got.rows[label] = result.metrics[m]
        for dataset, c in result.curves.get(m, {}).items():
            got.curves[f"{label} ({dataset})" if len(result.curves.get(m, {})) > 1 else label] = c["pr"]


def run_plan(kind: str, name: str, plan: list[Variant], extra_overrides: list[str], runs_dir: str | None,
             state: StudyState | None = None) -> Collected:
    """Run each variant of ``plan`` (W&B group = ``name``) and collect its rows. Variants that differ only in
    ``map`` share one run; a ``checkpoint_of`` variant tests that variant's checkpoint (``test_only``).

    ``state``: record each entry's run there; an entry whose recorded run is complete with the same config is
    collected from disk instead of run (a resumed study)."""

    def announce(i: int, v: Variant, reused: bool) -> None:
        shown = " ".join(v.overrides) if kind == "ablation" else v.experiment
        if v.experiment != plan[0].experiment and kind == "ablation":
            shown = f"experiment {v.experiment} {shown}".strip()
        if v.checkpoint_of:
            shown += f" (testing the checkpoint of {v.checkpoint_of!r})"
        print(f"\n[salseg] {kind} {name}: {i}/{len(plan)} {v.name!r}: {shown or '(base)'}"
              + (f", map {v.map}" if v.map else "") + (" (same run as above)" if reused else ""))

    def execute(v: Variant, run_dirs: dict[str, str]):
        return run_variant(kind, name, v, run_dirs, extra_overrides, runs_dir, state)

    got = Collected()
    got.run_dirs = run_each(plan, execute, announce, lambda v, result: add_rows(got, kind, name, v, result))[1]
    return got


def run_ablation(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None,
                 resume: bool = False) -> Path:
    """Run every variant of ``experiments/ablations/<name>.yaml``; one table + PR plot (and its summary rows).
    ``resume``: reuse the newest study folder and run only the variants whose run did not complete."""
    abl = load_ablation(name)
    plan = ablation_plan(abl)
    return _run_and_compare("ablation", name, plan, list(extra_overrides), runs_dir, Path("ablations") / name,
                            resume, summary=list(abl.get("summary") or []))


def run_comparison(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None,
                   resume: bool = False) -> Path:
    """Run every experiment of the comparison file ``experiments/comparisons/<name>.yaml``; one table + PR plot.

    Each entry is an ordinary run of its own experiment (``runs/<entry>/<timestamp>/``); the comparison goes to
    ``runs/<name>/<timestamp>/`` (table.md, table.csv, pr_curves.png, metrics.png). ``resume``: reuse the newest
    comparison folder and run only the entries whose run did not complete.
    """
    cmp = load_comparison(name)
    if cmp is None:
        raise ConfigError(f"experiment {name!r} is not a comparison (it has no 'compare' list)")
    plan = comparison_plan(cmp)
    return _run_and_compare("comparison", name, plan, list(extra_overrides), runs_dir, Path(name), resume)


def _run_and_compare(kind: str, name: str, plan: list[Variant], extra_overrides: list[str], runs_dir: str | None,
                     out_subdir: Path, resume: bool = False, summary: list[str] = ()) -> Path:
    out = study_folder(Path(runs_dir or compose(plan[0].experiment, list(extra_overrides)).runs_dir) / out_subdir,
                       resume)
    got = run_plan(kind, name, plan, extra_overrides, runs_dir, StudyState(out, resume))
    if tracking.env_global_rank() == 0:  # under DDP every process runs the loop; one writes the comparison
        write_outputs(out, name, got.rows, got.curves, got.run_dirs, kind=kind, summary=summary)
    return out
