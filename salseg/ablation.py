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
from salseg.atomic import write_json
from salseg.config import (
    ConfigError,
    Variant,
    ablation_plan,
    comparison_plan,
    compose,
    load_ablation,
    load_comparison,
)

TABLE_METRICS = ("mIoU", "pixAcc", "train_cues_mIoU", "train_adapted_cues_mIoU", "maxF", "meanF", "adpF", "maxF_pr",
                 "MAE", "Sm", "maxEm", "wF", *(f"{c}_top{k}_error" for c in ("CNN1", "CNN2", "CNN3") for k in (1, 5)),
                 "segF", "Jaccard")


def run_ablation(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None) -> Path:
    abl = load_ablation(name)
    plan = ablation_plan(abl)
    return _run_and_compare("ablation", name, plan, list(extra_overrides), runs_dir, Path("ablations") / name,
                            summary=list(abl.get("summary") or []))


def run_comparison(name: str, extra_overrides: list[str] = (), runs_dir: str | None = None,
                   resume: bool = False) -> Path:
    """Run every experiment of the comparison file ``experiments/<name>.yaml``; one table + PR plot.

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
    """Run each variant of ``plan`` (W&B group = ``name``), then compare them. Variants that differ only in
    ``map`` share one run; a ``checkpoint_of`` variant tests that variant's checkpoint (``test_only``)."""
    from salseg.runner import run

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: dict[str, dict[str, dict[str, float]]] = {}  # label -> dataset -> metric -> value
    curves: dict[str, dict] = {}  # "label (dataset)" -> pr curve
    run_dirs: dict[str, str] = {}
    done: dict[tuple, object] = {}  # (experiment, overrides, checkpoint_of) -> RunResult
    for i, v in enumerate(plan, 1):
        key = (v.experiment, v.overrides, v.checkpoint_of, v.use_checkpoint_of)
        shown = " ".join(v.overrides) if kind == "ablation" else v.experiment
        if v.experiment != plan[0].experiment and kind == "ablation":
            shown = f"experiment {v.experiment} {shown}".strip()
        if v.checkpoint_of:
            shown += f" (testing the checkpoint of {v.checkpoint_of!r})"
        print(f"\n[salseg] {kind} {name}: {i}/{len(plan)} {v.name!r}: {shown or '(base)'}"
              + (f", map {v.map}" if v.map else "") + (" (same run as above)" if key in done else ""))
        if key not in done:
            ovr = list(v.overrides) + [f"group={name}", f"tags=[{kind},{name},{v.name}]",
                                       f'notes="{kind} {name}: {v.name}"',  # quoted: unquoted "a: b" is a mapping
                                       *extra_overrides]
            if v.checkpoint_of:
                ckpt = Path(run_dirs[v.checkpoint_of]) / "checkpoints" / "last.ckpt"
                ovr += ["test_only=true", f"ckpt_path={ckpt}"]
            ovr += [f"{k}={Path(run_dirs[ref]) / 'checkpoints' / 'last.ckpt'}" for k, ref in v.use_checkpoint_of]
            if runs_dir:
                ovr.append(f"runs_dir={runs_dir}")
            done[key] = run(compose(v.experiment, ovr), resume=resume)
        result = done[key]
        map_name = v.map or next(iter(result.metrics))
        if map_name not in result.metrics:
            raise ConfigError(f"{kind} {name}, variant {v.name!r}: the run made no map {map_name!r}; it made "
                              f"{list(result.metrics)}")
        # an ablation row is one map of its run; a comparison shows every map an entry made (GD's CNN2+3, CNN1
        # and gradient maps; raw / smoothed / refined), as rows "<entry>: <map>" after the primary one
        shown = [map_name] if kind == "ablation" else list(result.metrics)
        for m in shown:
            label = v.name if m == map_name else f"{v.name}: {m}"
            rows[label] = result.metrics[m]
            for dataset, c in result.curves.get(m, {}).items():
                curves[f"{label} ({dataset})" if len(result.curves.get(m, {})) > 1 else label] = c["pr"]
        run_dirs[v.name] = str(result.run_dir)
    base = plan[0].experiment
    out = Path(runs_dir or compose(base, list(extra_overrides)).runs_dir) / out_subdir / stamp
    if tracking.env_global_rank() == 0:  # under DDP every process runs this loop; one writes the comparison
        write_outputs(out, name, rows, curves, run_dirs, kind=kind, summary=summary)
    return out


def summary_rows(rows: dict, summary) -> dict:
    """``{"mean (N runs)": dataset -> metric -> value, ...}`` over the variant rows: per dataset, the metrics every
    row scored there (paper 002 reports VOC as the mean over its 5 folds)."""
    import statistics

    out: dict[str, dict] = {}
    datasets = sorted({ds for per_ds in rows.values() for ds in per_ds})
    for what in summary:
        row: dict[str, dict[str, float]] = {}
        for ds in datasets:
            scored = [r[ds] for r in rows.values() if ds in r]
            common = set.intersection(*[set(r) for r in scored]) if scored else set()
            if what == "std" and len(scored) < 2:
                continue
            fn = statistics.fmean if what == "mean" else statistics.stdev
            row[ds] = {m: float(fn([r[m] for r in scored])) for m in sorted(common)}
        if row:
            n = max(sum(ds in r for r in rows.values()) for ds in row)
            out[f"{what} ({n} runs)"] = row
    return out


def write_outputs(out: Path, name: str, rows, curves, run_dirs, kind: str = "ablation", summary=()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    variant_rows = rows
    extra = summary_rows(rows, summary) if summary else {}
    rows = {**rows, **extra}
    datasets = sorted({ds for per_ds in rows.values() for ds in per_ds})
    metrics = [m for m in TABLE_METRICS if any(m in v for per_ds in rows.values() for v in per_ds.values())]
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant" if kind == "ablation" else "method", "dataset", *metrics])
        for vname, per_ds in rows.items():
            for ds in datasets:
                if ds in per_ds:
                    w.writerow([vname, ds, *[f"{per_ds[ds][m]:.6f}" if m in per_ds[ds] else "" for m in metrics]])
    lines = [f"# {kind.capitalize()} {name}", ""]
    for ds in datasets:
        head = "variant" if kind == "ablation" else "method"
        # a dataset's section shows the metrics some row has on it (a saliency baseline's set has no mIoU, a
        # semantic one no maxF); within it, segF / Jaccard or mIoU cells of rows without them stay blank
        shown = [m for m in metrics if any(m in r.get(ds, {}) for r in rows.values())]
        best = {m: (min if m == "MAE" or m.endswith("_error") else max)(r[ds][m] for r in variant_rows.values()
                                                                        if m in r.get(ds, {}))
                for m in shown if any(m in r.get(ds, {}) for r in variant_rows.values())}
        lines += [f"## {ds}", "", f"| {head} | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        for vname, per_ds in rows.items():
            if ds in per_ds:
                bold = vname in variant_rows  # summary rows are never "best"
                cells = ["" if m not in per_ds[ds] else f"**{per_ds[ds][m]:.4f}**"
                         if bold and per_ds[ds][m] == best.get(m) else f"{per_ds[ds][m]:.4f}" for m in shown]
                lines.append(f"| {vname} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Runs:", *[f"- {v}: `{d}`" for v, d in run_dirs.items()], ""]
    (out / "table.md").write_text("\n".join(lines))
    plots.pr_curves(curves, out / "pr_curves.png", title=f"{kind} {name}")
    if datasets:  # the bars of the dataset most rows were scored on (an ablation may add a baseline's own set)
        main = max(datasets, key=lambda d: sum(d in r for r in rows.values()))
        shown = {v: r[main] for v, r in variant_rows.items() if main in r}
        plots.metric_bars(shown, [m for m in metrics
                                  if m != "MAE" and not m.endswith("_error") and any(m in r for r in shown.values())],
                          out / "metrics.png", title=f"{name}: {main}")
    write_json(out / "results.json", {kind: name, "results": rows, "runs": run_dirs})
    print("\n" + (out / "table.md").read_text())
    print(f"[salseg] {kind} outputs in {out}")
