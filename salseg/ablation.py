"""Run the variants of an ablation file, then write one comparison table (markdown + CSV) and one PR plot.

An ablation file (``experiments/ablations/<NAME>.yaml``) names a ``base`` experiment and either ``variants``
(name -> overrides) or a ``grid`` (key -> list of values, expanded as a cartesian product); ``overrides`` apply
to every variant. Each variant is an ordinary run (``runs/<base>/...``) whose W&B group is the ablation name,
so the runs sit together in the W&B UI.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from salseg import plots, tracking
from salseg.config import ablation_variants, compose, load_ablation

TABLE_METRICS = ("maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "wF")


def run_ablation(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None) -> Path:
    from salseg.runner import run

    abl = load_ablation(name)
    variants = ablation_variants(abl)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: dict[str, dict[str, dict[str, float]]] = {}  # variant -> dataset -> metric -> value
    curves: dict[str, dict] = {}  # "variant (dataset)" -> pr curve
    run_dirs: dict[str, str] = {}
    for i, (vname, overrides) in enumerate(variants.items(), 1):
        print(f"\n[salseg] ablation {name}: variant {i}/{len(variants)} {vname!r}: {' '.join(overrides) or '(base)'}")
        ovr = list(overrides) + [f"group={name}", f"tags=[ablation,{name},{vname}]", f"notes=ablation {name}: {vname}",
                                 *extra_overrides]
        if runs_dir:
            ovr.append(f"runs_dir={runs_dir}")
        cfg = compose(str(abl.base), ovr)
        result = run(cfg)
        primary = next(iter(result.metrics))
        rows[vname] = result.metrics[primary]
        for dataset, c in result.curves[primary].items():
            curves[f"{vname} ({dataset})" if len(result.curves[primary]) > 1 else vname] = c["pr"]
        run_dirs[vname] = str(result.run_dir)
    out = Path(runs_dir or compose(str(abl.base), list(extra_overrides)).runs_dir) / "ablations" / name / stamp
    if tracking.env_global_rank() == 0:  # under DDP every process runs this loop; one writes the comparison
        write_outputs(out, name, rows, curves, run_dirs)
    return out


def write_outputs(out: Path, name: str, rows, curves, run_dirs) -> None:
    out.mkdir(parents=True, exist_ok=True)
    datasets = sorted({ds for per_ds in rows.values() for ds in per_ds})
    metrics = [m for m in TABLE_METRICS if any(m in v for per_ds in rows.values() for v in per_ds.values())]
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "dataset", *metrics])
        for vname, per_ds in rows.items():
            for ds in datasets:
                if ds in per_ds:
                    w.writerow([vname, ds, *[f"{per_ds[ds][m]:.6f}" for m in metrics]])
    lines = [f"# Ablation {name}", ""]
    for ds in datasets:
        lines += [f"## {ds}", "", "| variant | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for vname, per_ds in rows.items():
            if ds in per_ds:
                best = {m: (min if m == "MAE" else max)(r[ds][m] for r in rows.values() if ds in r) for m in metrics}
                cells = [f"**{per_ds[ds][m]:.4f}**" if per_ds[ds][m] == best[m] else f"{per_ds[ds][m]:.4f}" for m in metrics]
                lines.append(f"| {vname} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Runs:", *[f"- {v}: `{d}`" for v, d in run_dirs.items()], ""]
    (out / "table.md").write_text("\n".join(lines))
    plots.pr_curves(curves, out / "pr_curves.png", title=f"ablation {name}")
    if datasets:
        plots.metric_bars({v: r[datasets[0]] for v, r in rows.items() if datasets[0] in r},
                          [m for m in metrics if m != "MAE"], out / "metrics.png", title=f"{name}: {datasets[0]}")
    tracking.write_json_atomic(out / "results.json", {"ablation": name, "results": rows, "runs": run_dirs})
    print("\n" + (out / "table.md").read_text())
    print(f"[salseg] ablation outputs in {out}")
