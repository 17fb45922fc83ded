"""The one report writer of studies: a markdown table, a CSV, results.json and the overlaid PR plot, with one
metric order (README "Running experiments", "Outputs and tracking"). Text and JSON are written atomically."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from salseg import plots, tracking
from salseg.atomic import atomic_write_text, write_json

# The column order of every study table: segmentation scores, then the SOD measures, classifier errors, GD's
# segmentation scores. A table shows the columns some row has (see :func:`metric_columns`).
TABLE_METRICS = ("mIoU", "pixAcc", "train_cues_mIoU", "train_adapted_cues_mIoU", "maxF", "meanF", "adpF", "maxF_pr",
                 "MAE", "Sm", "maxEm", "wF", *(f"{c}_top{k}_error" for c in ("CNN1", "CNN2", "CNN3") for k in (1, 5)),
                 "segF", "Jaccard")
# The saliency measures of that order (maxF ... wF): the robustness study's columns
SOD_METRICS = TABLE_METRICS[TABLE_METRICS.index("maxF"):TABLE_METRICS.index("wF") + 1]


def metric_columns(present: Iterable[str], among: Sequence[str] = TABLE_METRICS) -> list[str]:
    """The metrics of ``among`` that are ``present``, in table order."""
    present = set(present)
    return [m for m in among if m in present]


def lower_is_better(metric: str) -> bool:
    return metric == "MAE" or metric.endswith("_error")


def csv_text(rows: Iterable[Sequence], lineterminator: str = "\r\n") -> str:
    """Rows as CSV text (``csv.writer``'s own line ending unless given)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerows(rows)
    return buf.getvalue()


def summary_rows(rows: dict, summary) -> dict:
    """``{"mean (N runs)": dataset -> metric -> value, ...}`` over the variant rows: per dataset, the metrics every
    row scored there (paper 002 reports VOC as the mean over its 5 folds)."""
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


def _markdown(kind: str, name: str, rows: dict, variant_rows: dict, datasets: list[str], metrics: list[str],
              run_dirs: dict) -> str:
    head = "variant" if kind == "ablation" else "method"
    lines = [f"# {kind.capitalize()} {name}", ""]
    for ds in datasets:
        # a dataset's section shows the metrics some row has on it (a saliency baseline's set has no mIoU, a
        # semantic one no maxF); within it, segF / Jaccard or mIoU cells of rows without them stay blank
        shown = [m for m in metrics if any(m in r.get(ds, {}) for r in rows.values())]
        best = {m: (min if lower_is_better(m) else max)(r[ds][m] for r in variant_rows.values() if m in r.get(ds, {}))
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
    return "\n".join(lines)


def csv_table(text: str) -> tuple[list[str], list[list]]:
    """CSV text -> (columns, rows), numbers as floats (a ``wandb.Table`` sorts and plots them as numbers)."""

    def cell(value: str):
        try:
            return float(value)
        except ValueError:
            return value

    header, *rows = csv.reader(io.StringIO(text))
    return header, [[cell(v) for v in row] for row in rows]


def log_to_wandb(out: Path, kind: str, group: str, texts: Mapping[str, str], logger_cfg: Mapping | None,
                 line_series: Mapping[str, Mapping] = {}) -> bool:
    """Every CSV of ``texts`` as a ``wandb.Table`` (key ``<kind>/<file stem>``) and every plot of ``out`` as an
    image, in a short summary run of the study's W&B group (:func:`salseg.tracking.log_summary_run`). A failure
    to log is one line: the study's files are written by then."""
    tables = {f"{kind}/{Path(f).stem}": csv_table(t) for f, t in texts.items() if f.endswith(".csv")}
    images = {f"{kind}/plots/{p.stem}": p for p in sorted(out.glob("*.png"))}
    try:
        return tracking.log_summary_run(logger_cfg, group, out, tables, images, line_series)
    except Exception as e:  # W&B trouble must not turn a finished study into a failure
        print(f"[salseg] W&B summary of {kind} {group} not logged: {type(e).__name__}: {e}")
        return False


def write_report(out: Path, kind: str, texts: Mapping[str, str], draw: Callable[[], None], doc: Mapping,
                 wandb_group: str | None = None, logger_cfg: Mapping | None = None,
                 line_series: Mapping[str, Mapping] = {}) -> None:
    """The files of a study folder, in order: ``texts`` ({file name: text}; ``table.md`` is also printed), the
    plots ``draw`` makes, then ``results.json`` (``doc``), last and atomically: a study that crashed on the way
    leaves no results.json. Then, when the study's runs log to W&B (``logger_cfg``), its tables, plots and
    ``line_series`` charts go to W&B group ``wandb_group`` (:func:`log_to_wandb`)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").unlink(missing_ok=True)
    for file_name, text in texts.items():
        atomic_write_text(out / file_name, text)
    draw()
    write_json(out / "results.json", doc)
    print("\n" + texts["table.md"])
    print(f"[salseg] {kind} outputs in {out}")
    if wandb_group and logger_cfg:
        log_to_wandb(out, kind, wandb_group, texts, logger_cfg, line_series)


def write_outputs(out: Path, name: str, rows, curves, run_dirs, kind: str = "ablation", summary=()) -> None:
    """table.csv, table.md, pr_curves.png, metrics.png and results.json of an ablation or a comparison."""
    variant_rows = rows
    extra = summary_rows(rows, summary) if summary else {}
    rows = {**rows, **extra}
    datasets = sorted({ds for per_ds in rows.values() for ds in per_ds})
    metrics = metric_columns({m for per_ds in rows.values() for v in per_ds.values() for m in v})
    table = [["variant" if kind == "ablation" else "method", "dataset", *metrics]]
    table += [[vname, ds, *[f"{per_ds[ds][m]:.6f}" if m in per_ds[ds] else "" for m in metrics]]
              for vname, per_ds in rows.items() for ds in datasets if ds in per_ds]
    md = _markdown(kind, name, rows, variant_rows, datasets, metrics, run_dirs)

    def draw() -> None:
        plots.pr_curves(curves, out / "pr_curves.png", title=f"{kind} {name}")
        if datasets:  # the bars of the dataset most rows were scored on (an ablation may add a baseline's own set)
            main = max(datasets, key=lambda d: sum(d in r for r in rows.values()))
            shown = {v: r[main] for v, r in variant_rows.items() if main in r}
            plots.metric_bars(shown, [m for m in metrics
                                      if not lower_is_better(m) and any(m in r for r in shown.values())],
                              out / "metrics.png", title=f"{name}: {main}")

    # the variants ran in W&B group ``name`` (salseg.studies.run.run_plan), with the logger of their config.yaml
    write_report(out, kind, {"table.csv": csv_text(table), "table.md": md}, draw,
                 {kind: name, "results": rows, "runs": run_dirs}, wandb_group=name,
                 logger_cfg=tracking.study_logger_config(run_dirs))
