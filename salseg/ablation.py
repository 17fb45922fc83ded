"""Run the variants of an ablation file, then write one comparison table (markdown + CSV) and one PR plot.

An ablation file (``experiments/ablations/<NAME>.yaml``) names a ``base`` experiment and either ``variants``
(name -> overrides) or a ``grid`` (key -> list of values, expanded as a cartesian product); ``overrides`` apply
to every variant. Each variant is an ordinary run (``runs/<base>/...``) whose W&B group is the ablation name,
so the runs sit together in the W&B UI.

A comparison file (``experiments/<NAME>.yaml`` with a ``compare`` list, e.g. ``quickstart``) runs several
experiments the same way, each under its own name, and compares them in ``runs/<NAME>/<timestamp>/``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from salseg import plots, tracking
from salseg.config import ConfigError, ablation_variants, comparison_entries, compose, load_ablation, load_comparison

TABLE_METRICS = ("maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "wF")


def run_ablation(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None) -> Path:
    abl = load_ablation(name)
    plan = [(vname, str(abl.base), ovr) for vname, ovr in ablation_variants(abl).items()]
    return _run_and_compare("ablation", name, plan, list(extra_overrides), runs_dir, Path("ablations") / name)


def run_comparison(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None,
                   resume: bool = False) -> Path:
    """Run every experiment of the comparison file ``experiments/<name>.yaml``; one table + PR plot.

    Each entry is an ordinary run of its own experiment (``runs/<entry>/<timestamp>/``, resumable on its own);
    the comparison goes to ``runs/<name>/<timestamp>/`` (table.md, table.csv, pr_curves.png, metrics.png).
    """
    cmp = load_comparison(name)
    if cmp is None:
        raise ConfigError(f"experiment {name!r} is not a comparison (it has no 'compare' list)")
    plan = [(entry, entry, ovr) for entry, ovr in comparison_entries(cmp).items()]
    return _run_and_compare("comparison", name, plan, list(extra_overrides), runs_dir, Path(name), resume)


def _run_and_compare(kind: str, name: str, plan, extra_overrides: list[str], runs_dir: str | None,
                     out_subdir: Path, resume: bool = False) -> Path:
    """Run each ``(label, experiment, overrides)`` of ``plan`` (W&B group = ``name``), then compare them."""
    from salseg.runner import run

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: dict[str, dict[str, dict[str, float]]] = {}  # label -> dataset -> metric -> value
    curves: dict[str, dict] = {}  # "label (dataset)" -> pr curve
    run_dirs: dict[str, str] = {}
    for i, (label, experiment, overrides) in enumerate(plan, 1):
        shown = " ".join(overrides) if kind == "ablation" else experiment
        print(f"\n[salseg] {kind} {name}: {i}/{len(plan)} {label!r}: {shown or '(base)'}")
        ovr = list(overrides) + [f"group={name}", f"tags=[{kind},{name},{label}]", f'notes="{kind} {name}: {label}"',  # quoted: unquoted "a: b" parses as a mapping
                                 *extra_overrides]
        if runs_dir:
            ovr.append(f"runs_dir={runs_dir}")
        result = run(compose(experiment, ovr), resume=resume)
        primary = next(iter(result.metrics))
        rows[label] = result.metrics[primary]
        for dataset, c in result.curves[primary].items():
            curves[f"{label} ({dataset})" if len(result.curves[primary]) > 1 else label] = c["pr"]
        run_dirs[label] = str(result.run_dir)
    base = plan[0][1]
    out = Path(runs_dir or compose(base, list(extra_overrides)).runs_dir) / out_subdir / stamp
    if tracking.env_global_rank() == 0:  # under DDP every process runs this loop; one writes the comparison
        write_outputs(out, name, rows, curves, run_dirs, kind=kind)
    return out


def write_outputs(out: Path, name: str, rows, curves, run_dirs, kind: str = "ablation") -> None:
    out.mkdir(parents=True, exist_ok=True)
    datasets = sorted({ds for per_ds in rows.values() for ds in per_ds})
    metrics = [m for m in TABLE_METRICS if any(m in v for per_ds in rows.values() for v in per_ds.values())]
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant" if kind == "ablation" else "method", "dataset", *metrics])
        for vname, per_ds in rows.items():
            for ds in datasets:
                if ds in per_ds:
                    w.writerow([vname, ds, *[f"{per_ds[ds][m]:.6f}" for m in metrics]])
    lines = [f"# {kind.capitalize()} {name}", ""]
    for ds in datasets:
        head = "variant" if kind == "ablation" else "method"
        lines += [f"## {ds}", "", f"| {head} | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for vname, per_ds in rows.items():
            if ds in per_ds:
                best = {m: (min if m == "MAE" else max)(r[ds][m] for r in rows.values() if ds in r) for m in metrics}
                cells = [f"**{per_ds[ds][m]:.4f}**" if per_ds[ds][m] == best[m] else f"{per_ds[ds][m]:.4f}" for m in metrics]
                lines.append(f"| {vname} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Runs:", *[f"- {v}: `{d}`" for v, d in run_dirs.items()], ""]
    (out / "table.md").write_text("\n".join(lines))
    plots.pr_curves(curves, out / "pr_curves.png", title=f"{kind} {name}")
    if datasets:
        plots.metric_bars({v: r[datasets[0]] for v, r in rows.items() if datasets[0] in r},
                          [m for m in metrics if m != "MAE"], out / "metrics.png", title=f"{name}: {datasets[0]}")
    tracking.write_json_atomic(out / "results.json", {kind: name, "results": rows, "runs": run_dirs})
    print("\n" + (out / "table.md").read_text())
    print(f"[salseg] {kind} outputs in {out}")
