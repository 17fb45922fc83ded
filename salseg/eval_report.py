"""Many methods x many datasets: ``salseg eval --pred A=DIR --pred B=DIR --gt DIR`` or ``salseg eval --config``.

One table per dataset in the layout of the SOD papers' comparison tables (e.g. Amulet, ICCV 2017, Table 1; the
benchmark of Borji et al., TIP 2015): a row per method, the columns :data:`COLUMNS`, the best value of each
column in bold (lowest for MAE). Each table is written as markdown, CSV (full precision, no bold: for scripts)
and LaTeX (booktabs rules, ``\\textbf`` for the best), with the overlaid PR and F-measure-vs-threshold curves of
the methods (README "Metrics": per-image averaged curves) and one JSON of everything.

The YAML config follows PySODEvalToolkit's split of datasets and methods::

    datasets:
      SOD: {gt: data/SOD/gt, images: data/SOD/images}     # images: optional, recorded only
    methods:
      Amulet: {SOD: preds/Amulet}                          # one folder per dataset ...
      MEnet: "runs/predict/menet/{dataset}"                # ... or one pattern for every dataset

Relative paths are taken from the config file's folder. A method may leave a dataset out (its row shows "-").

This module does not import torch (the scoring, ``salseg.evaluate``, is imported when it runs): the tables,
files and figures can be written from a saved JSON without it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from salseg.errors import SalsegError

COLUMNS = ("maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "wF")  # names of salseg.metrics.METRIC_KEYS
LOWER_IS_BETTER = frozenset({"MAE"})


class EvalConfigError(SalsegError, ValueError):
    """A bad ``--pred`` argument or ``--config`` file: names the key or folder and what was expected."""


# ---------------------------------------------------------------------------------------------------------------
# What to score: {dataset: {"gt": Path, ...}}, {method: {dataset: Path}}
# ---------------------------------------------------------------------------------------------------------------
def parse_pred_args(values: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` (or a plain ``DIR``, named after its folder) per ``--pred``, in the given order."""
    methods: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or Path(value).is_dir():  # a folder whose name holds "=" is still a folder
            name, folder = Path(value.rstrip("/")).name, value
        if not name or not folder:
            raise EvalConfigError(f"--pred {value!r}: expected NAME=DIR or DIR")
        if name in methods:
            raise EvalConfigError(f"--pred: the name {name!r} is given twice ({methods[name]} and {folder}); "
                                  "name them apart with NAME=DIR")
        methods[name] = Path(folder)
    return methods


def load_config(path: str | Path) -> tuple[dict[str, dict[str, Path]], dict[str, dict[str, Path]]]:
    """(datasets, methods) of a YAML config (module docstring); every folder must exist."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EvalConfigError(f"eval config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EvalConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict) or not isinstance(
            raw.get("methods"), dict):
        raise EvalConfigError(f"{path}: expected the mappings 'datasets' and 'methods' at the top level")
    unknown = set(raw) - {"datasets", "methods"}
    if unknown:
        raise EvalConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                              "(expected datasets, methods)")
    root = path.parent

    def folder(value, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise EvalConfigError(f"{path}: {key} must be a folder path, got {value!r}")
        p = Path(value).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_dir():
            raise EvalConfigError(f"{path}: {key}: folder not found: {p}")
        return p

    datasets: dict[str, dict[str, Path]] = {}
    for name, spec in raw["datasets"].items():
        if not isinstance(spec, dict) or "gt" not in spec:
            raise EvalConfigError(f"{path}: datasets.{name} must be a mapping with a 'gt' folder")
        datasets[str(name)] = {k: folder(v, f"datasets.{name}.{k}") for k, v in spec.items()}
    methods: dict[str, dict[str, Path]] = {}
    for name, spec in raw["methods"].items():
        if isinstance(spec, str):  # one pattern for every dataset
            spec = {d: spec for d in datasets}
        if not isinstance(spec, dict):
            raise EvalConfigError(f"{path}: methods.{name} must be a folder pattern with {{dataset}} or a mapping "
                                  f"dataset -> folder, got {spec!r}")
        for d in spec:
            if d not in datasets:
                raise EvalConfigError(f"{path}: methods.{name}.{d}: no such dataset (datasets: "
                                      f"{', '.join(datasets)})")
        methods[str(name)] = {d: folder(str(v).replace("{dataset}", d), f"methods.{name}.{d}")
                              for d, v in spec.items()}
    return datasets, methods


def evaluate_many(datasets: Mapping[str, Mapping[str, Path]], methods: Mapping[str, Mapping[str, Path]],
                  **evaluate_kwargs) -> dict[str, dict[str, dict[str, Any]]]:
    """{dataset: {method: evaluate_folders result}}; ``evaluate_kwargs`` go to :func:`evaluate_folders`."""
    from salseg.evaluate import evaluate_folders

    for dataset, spec in datasets.items():  # every folder before any scoring: fail in seconds, not after an hour
        if not Path(spec["gt"]).is_dir():
            raise EvalConfigError(f"dataset {dataset}: ground-truth folder not found: {spec['gt']}")
        for method, folders in methods.items():
            if dataset in folders and not Path(folders[dataset]).is_dir():
                raise EvalConfigError(f"method {method} on {dataset}: prediction folder not found: {folders[dataset]}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset, spec in datasets.items():
        results[dataset] = {}
        for method, folders in methods.items():
            if dataset in folders:
                results[dataset][method] = evaluate_folders(folders[dataset], spec["gt"], **evaluate_kwargs)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------
def best_rows(rows: Mapping[str, Mapping[str, float]], digits: int = 3) -> dict[str, set[str]]:
    """column -> the methods holding its best value as printed (rounded to ``digits``: ties are all bold)."""
    best: dict[str, set[str]] = {}
    for column in COLUMNS:
        shown = {m: round(r[column], digits) for m, r in rows.items()
                 if r.get(column) is not None and math.isfinite(r[column])}
        if shown:
            target = (min if column in LOWER_IS_BETTER else max)(shown.values())
            best[column] = {m for m, v in shown.items() if v == target}
    return best


def _cells(rows, digits: int, bold) -> list[list[str]]:
    best = best_rows(rows, digits)
    out = []
    for method, row in rows.items():
        cells = []
        for column in COLUMNS:
            value = row.get(column)
            text = "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
            cells.append(bold(text) if method in best.get(column, ()) else text)
        out.append([method, *cells])
    return out


def markdown_table(rows: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """Rows = methods, columns :data:`COLUMNS`, best per column in **bold** (MAE: lowest)."""
    header = "| Method | " + " | ".join(f"{c} ↓" if c in LOWER_IS_BETTER else f"{c} ↑" for c in COLUMNS) + " |"
    lines = [header, "| --- | " + " | ".join("---:" for _ in COLUMNS) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows, digits, lambda t: f"**{t}**")]
    return "\n".join(lines)


def csv_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Full-precision values, empty where a method has no value; no markup (for scripts and spreadsheets)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", *COLUMNS])
    for method, row in rows.items():
        writer.writerow([method, *("" if row.get(c) is None else repr(float(row[c])) for c in COLUMNS)])
    return buffer.getvalue()


_LATEX_SPECIAL = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                                "^": r"\textasciicircum{}"})


def _latex_escape(text: str) -> str:
    return text.translate(_LATEX_SPECIAL)


def latex_table(rows: Mapping[str, Mapping[str, float]], dataset: str = "", digits: int = 3) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), best per column in ``\\textbf``."""
    heads = [_latex_escape(c) + (r" $\downarrow$" if c in LOWER_IS_BETTER else r" $\uparrow$") for c in COLUMNS]
    lines = [f"% {_latex_escape(dataset)}: best per column in bold" if dataset else "% best per column in bold",
             r"\begin{tabular}{l" + "c" * len(COLUMNS) + "}", r"\toprule",
             "Method & " + " & ".join(heads) + r" \\", r"\midrule"]
    for cells in _cells(rows, digits, lambda t: rf"\textbf{{{t}}}"):
        lines.append(" & ".join([_latex_escape(cells[0]), *cells[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def _file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "dataset"


def write_report(results: Mapping[str, Mapping[str, Mapping[str, Any]]], out_dir: str | Path,
                 digits: int = 3) -> dict[str, Any]:
    """Per dataset ``<dataset>.md|.csv|.tex``, ``<dataset>_pr.png``, ``<dataset>_f_threshold.png``; ``results.json``.

    Returns {"tables": {dataset: markdown}, "files": [paths]}.
    """
    from salseg import plots
    from salseg.atomic import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables, files = {}, []
    for dataset, by_method in results.items():
        rows = {m: r["metrics"] for m, r in by_method.items()}
        stem = out_dir / _file_stem(dataset)
        tables[dataset] = markdown_table(rows, digits)
        for suffix, text in ((".md", f"## {dataset}\n\n{tables[dataset]}\n"), (".csv", csv_table(rows)),
                             (".tex", latex_table(rows, dataset, digits))):
            path = stem.with_name(stem.name + suffix)
            path.write_text(text)
            files.append(path)
        curves = {m: r["curves"] for m, r in by_method.items() if "curves" in r}
        if curves:
            files.append(plots.pr_curves({m: c["pr"] for m, c in curves.items()},
                                         stem.with_name(stem.name + "_pr.png"), title=f"{dataset}: precision-recall"))
            files.append(plots.f_threshold_curves({m: c["f"] for m, c in curves.items()},
                                                  stem.with_name(stem.name + "_f_threshold.png"),
                                                  title=f"{dataset}: F-measure vs threshold"))
    files.append(write_json(out_dir / "results.json", {"columns": list(COLUMNS), "results": results}))
    return {"tables": tables, "files": [Path(f) for f in files]}
