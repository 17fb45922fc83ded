"""``salseg collect NAME [--study DIR]``: a study's table from the runs its variants made, wherever they ran.

The collect job of a SLURM study runs it once every variant's job ended; by hand it works on any study folder,
local or SLURM. It writes the files a local study writes (table.md, table.csv, results.json, PR plot:
:func:`salseg.studies.report.write_outputs`) from every complete variant, and prints every variant's state
(complete / failed / pending / running / not run, job id, log path): the exit status is 1 when any is not complete.
"""

from __future__ import annotations

from pathlib import Path

from salseg.config import ConfigError, compose, find_yaml
from salseg.studies.plan import Variant, ablation_plan, comparison_plan, load_ablation, load_comparison
from salseg.studies.report import write_outputs
from salseg.studies.run import Collected, StudyState, add_rows, is_complete, load_result, run_key


def study_plan(kind: str, name: str) -> tuple[list[Variant], list[str]]:
    """The plan (and summary rows) of ablation or comparison ``name``."""
    if kind == "ablation":
        abl = load_ablation(name)
        return ablation_plan(abl), list(abl.get("summary") or [])
    cmp = load_comparison(name)
    if cmp is None:
        raise ConfigError(f"{name!r} is neither an ablation nor a comparison")
    return comparison_plan(cmp), []


def find_study(name: str, study: str | None = None) -> Path:
    """``--study DIR``, or the newest folder of ablation / comparison ``name`` under runs_dir."""
    if study:
        folder = Path(study)
        if not (folder / StudyState.FILE).is_file():
            raise ConfigError(f"--study {folder}: no {StudyState.FILE} there (not a study folder)")
        return folder
    from salseg import config

    ablation = find_yaml(config.ablation_dirs(), name) is not None
    if not ablation and load_comparison(name) is None:  # one experiment's SLURM robustness study (salseg robust)
        parent = Path(compose(name).runs_dir) / name
    else:
        plan, _ = study_plan("ablation" if ablation else "comparison", name)
        parent = Path(compose(plan[0].experiment).runs_dir) / (Path("ablations") / name if ablation else name)
    found = sorted(p.parent for p in parent.glob(f"*/{StudyState.FILE}"))
    if not found:
        raise ConfigError(f"no study of {name!r} under {parent} (no */{StudyState.FILE}); give --study DIR")
    return found[-1]


def variant_states(plan: list[Variant], state: StudyState) -> dict[str, dict]:
    """entry -> {state, job_id, log, run_dir}: complete when its run wrote a complete metrics.json; pending /
    running while its job is in SLURM's queue; failed when its job or run ended without; not run otherwise."""
    from salseg.studies.launch import active_jobs

    first: dict[tuple, str] = {}
    for v in plan:
        first.setdefault(run_key(v), v.name)
    active = active_jobs(e.get("job_id") for e in state.entries.values())
    out: dict[str, dict] = {}
    for v in plan:
        # the local loop records a shared run under the entry that ran it
        entry = state.entries.get(v.name) or state.entries.get(first[run_key(v)], {})
        run_dir, job_id = entry.get("run_dir"), entry.get("job_id")
        if run_dir and is_complete(Path(run_dir)):
            what = "complete"
        elif job_id in active:
            what = "running" if active[job_id] in ("RUNNING", "COMPLETING", "CONFIGURING") else "pending"
        elif run_dir or job_id:
            what = "failed"
        else:
            what = "not run"
        out[v.name] = {"state": what, "job_id": job_id or "-", "log": entry.get("stdout", "-"),
                       "run_dir": run_dir or "-"}
    return out


def state_table(states: dict[str, dict]) -> str:
    rows = [("variant", "state", "job", "log")] + [(n, s["state"], s["job_id"], s["log"]) for n, s in states.items()]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r[:3], widths)) + "  " + str(r[3]) for r in rows)


def collect_study(folder: Path, name: str | None = None, write: bool = True) -> int:
    """Print the state table; write the outputs of the complete variants (``write``); 0 when all complete."""
    state = StudyState(folder, resume=True)
    kind = state.study.get("kind")
    if kind == "robustness":  # `salseg robust NAME launcher=slurm`: its own outputs (salseg.robustness)
        from salseg.studies.launch import collect_robustness

        return collect_robustness(folder, write)
    name = state.study.get("name") or name
    if kind is None:  # a local study folder: its parent folders say which
        kind = "ablation" if folder.resolve().parent.parent.name == "ablations" else "comparison"
    if name is None:
        name = folder.resolve().parent.name
    plan, summary = study_plan(kind, name)
    states = variant_states(plan, state)
    print(f"[salseg] {kind} {name}: {folder}\n" + state_table(states))
    got = Collected()
    for v in plan:
        if states[v.name]["state"] == "complete":
            result = load_result(Path(states[v.name]["run_dir"]))
            add_rows(got, kind, name, v, result)
            got.run_dirs[v.name] = states[v.name]["run_dir"]
    if write and got.rows:
        write_outputs(folder, name, got.rows, got.curves, got.run_dirs, kind=kind, summary=state.study.get(
            "summary", summary))
    missing = [n for n, s in states.items() if s["state"] != "complete"]
    if missing:
        print(f"[salseg] {kind} {name}: not complete: " + ", ".join(f"{n} ({states[n]['state']})" for n in missing)
              + (f"; the table holds the {len(plan) - len(missing)} complete variant(s)" if got.rows else ""))
        return 1
    return 0
