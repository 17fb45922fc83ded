"""Robustness study (MEnet paper, Table II and Fig. 8): any saliency model under AWGN and JPEG, from one run.

``run_robustness(name, overrides)`` composes experiment ``name`` and replaces its test sets: every original test
set ``X`` becomes

* ``X``              the clean images (an explicit ``distortion: null``),
* ``X@awgn``         AWGN with a random variance per image (Table II),
* ``X@jpeg``         JPEG re-compression with a random quality per image (Table II),
* ``X@awgn=<v>``     AWGN of fixed variance ``v`` for each ``v`` of the Fig. 8 axis,

each the same dataset spec with its own ``distortion`` (see :mod:`salseg.data.distortions`: strengths and noise
are drawn per image from the run seed, so the study is reproducible and every copy sees the same images). Then
it is ONE ordinary run (:func:`salseg.runner.run`): a trainable model is trained once and tested on every copy,
``ckpt_path`` tests a checkpoint (``test_only=true``), a training-free model (Region Contrast) is just tested.
Nothing here knows a method: it reads the ``{map: {dataset: {metric: value}}}`` the evaluation callback reports
for whatever maps the model's ``test_step`` returns.

A comparison file (``experiments/comparisons/<NAME>.yaml``, e.g. ``quickstart``) runs the study for each of its
experiments (each its own run and outputs) and then puts them side by side in ``runs/<NAME>/<timestamp>/robustness/``.

Outputs in ``<run_dir>/robustness/``: ``table.md`` / ``table.csv`` (rows: map x dataset x condition {clean, AWGN,
JPEG}), ``f_vs_noise.csv`` and ``f_vs_noise.png`` (max F against the noise variance, clean at 0), and
``results.json``, written last and atomically: a study that crashed leaves no ``results.json``.

Strengths. The paper says only "corrupted by Additive White Gaussian Noise (AWGN) and jpeg compression (with
random strengths)" and plots Fig. 8 "under various noise variances"; its text gives no numbers. The defaults
below are therefore this suite's choice, on the [0, 1] intensity scale (variance 0.01 = MATLAB ``imnoise``'s
default, sigma 0.1), and every one of them can be changed (``--awgn``, ``--jpeg``, ``--variances``).
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from salseg import tracking
from salseg.atomic import atomic_write_bytes
from salseg.config import ConfigError, compose
from salseg.studies.plan import comparison_entries, comparison_plan, load_comparison
from salseg.studies.report import SOD_METRICS, csv_text, metric_columns, write_report
from salseg.studies.run import run_each

# Not stated in the paper (see the module docstring): this suite's defaults.
AWGN_RANGE = (0.01, 0.1)  # Table II "AWGN (random strength)": variance ~ U[lo, hi] per image
JPEG_RANGE = (10, 90)  # Table II "JPEG (random strength)": quality ~ U{lo, ..., hi} per image
VARIANCES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)  # Fig. 8's axis: fixed AWGN variances (clean = 0 is added)

CURVE_METRICS = ("maxF", "maxF_pr", "MAE", "Sm")
CONDITIONS = ("clean", "AWGN", "JPEG")
OUT_DIR = "robustness"


@dataclass
class RobustnessResult:
    out_dir: Path  # <run_dir>/robustness
    run_dir: Path
    table: dict  # map -> dataset -> condition -> metric -> value
    curves: dict  # map -> dataset -> {"variance": [...], metric: [...]}
    variances: list[float] = field(default_factory=list)


@dataclass
class RobustnessComparison:
    out_dir: Path  # runs/<comparison>/<timestamp>/robustness
    results: dict  # experiment -> RobustnessResult


# ------------------------------------------------------------------------------------------ parsing
def _number(text: Any, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ConfigError(f"{what}: {str(text).strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what}: {text!r} is not a finite number")
    return value


def _items(value: str | Iterable, what: str) -> list:
    if isinstance(value, str):
        items = [s for s in re.split(r"[,\s]+", value.strip()) if s]
    else:
        items = list(value)
    if not items:
        raise ConfigError(f"{what}: no value given")
    return items


def parse_variances(value: str | Iterable[float] | None) -> list[float]:
    """``"0.001,0.01"`` or a list -> sorted distinct variances > 0 (0, the clean point, is always included and
    dropped here). A negative, non-finite or non-numeric entry is a :class:`ConfigError`."""
    if value is None:
        return list(VARIANCES)
    what = "--variances (AWGN variances, e.g. 0.001,0.01,0.05)"
    out = []
    for item in _items(value, what):
        v = _number(item, what)
        if v < 0:
            raise ConfigError(f"{what}: a variance must be >= 0, got {item}")
        if v > 0:
            out.append(v)
    return sorted(set(out))


def parse_range(value: str | Sequence | None, kind: str) -> tuple:
    """``"lo,hi"`` or ``[lo, hi]`` -> the random-strength range of ``kind`` (awgn variance, jpeg quality)."""
    if value is None:
        return AWGN_RANGE if kind == "awgn" else JPEG_RANGE
    what = (f"--awgn (the random AWGN variance range lo,hi, e.g. {AWGN_RANGE[0]},{AWGN_RANGE[1]})" if kind == "awgn"
            else f"--jpeg (the random JPEG quality range lo,hi, e.g. {JPEG_RANGE[0]},{JPEG_RANGE[1]})")
    items = _items(value, what)
    if len(items) != 2:
        raise ConfigError(f"{what}: expected two numbers lo,hi, got {value!r}")
    lo, hi = (_number(x, what) for x in items)
    if kind == "jpeg":
        if lo != int(lo) or hi != int(hi):
            raise ConfigError(f"{what}: JPEG qualities are integers, got {value!r}")
        lo, hi = int(lo), int(hi)
    from salseg.data.distortions import build_distortion

    try:
        build_distortion(_distortion(kind, [lo, hi]))
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None
    return lo, hi


def _distortion(kind: str, strength) -> dict:
    return {"kind": kind, ("variance" if kind == "awgn" else "quality"): strength}


def _fmt(v: float) -> str:
    return format(v, "g")


# ------------------------------------------------------------------------------------------ test sets
def named_test_specs(test: Any) -> dict[str, dict]:
    """``data.test`` (one spec, a list of specs or ``{name: spec}``) -> ``{display name: spec}``, with the names
    :class:`~salseg.data.datamodule.SaliencyDataModule` gives them (a spec alone or in a list is named by its
    dataset; repeated names get ``_1``, ``_2``...)."""
    if isinstance(test, (DictConfig, ListConfig)):
        test = OmegaConf.to_container(test, resolve=False)
    if not test:
        raise ConfigError("data.test names no test dataset: the robustness study distorts the experiment's test sets "
                          "(e.g. data.test={shapes: {dataset: shapes, split: test}})")
    if isinstance(test, Mapping) and "dataset" in test:
        pairs = [(str(test["dataset"]), test)]
    elif isinstance(test, Mapping):  # `data.test.<name>=null` drops a test set, as the DataModule does
        pairs = [(str(k), v) for k, v in test.items() if v is not None]
    elif isinstance(test, (list, tuple)):
        pairs = [(str(s.get("dataset")) if isinstance(s, Mapping) else f"test{i}", s) for i, s in enumerate(test)]
    else:
        raise ConfigError(f"data.test must be a dataset spec, a list of specs or a {{name: spec}} mapping, "
                          f"got {test!r}")
    if not pairs:
        raise ConfigError("data.test names no test dataset (every one is null): the robustness study distorts the "
                          "experiment's test sets")
    out: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for name, spec in pairs:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"data.test.{name}: a dataset spec must be a mapping like {{dataset: ecssd}}, "
                              f"got {spec!r}")
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out[name] = dict(spec)
    return out


def copy_name(dataset: str, condition: str, variance: float | None = None) -> str:
    if condition == "clean":
        return dataset
    if variance is not None:
        return f"{dataset}@awgn={_fmt(variance)}"
    return f"{dataset}@{condition.lower()}"


def expand_test_specs(test: Any, variances: Sequence[float] = VARIANCES, awgn_range: Sequence = AWGN_RANGE,
                      jpeg_range: Sequence = JPEG_RANGE) -> dict[str, dict]:
    """Every test set X -> X (clean), X@awgn, X@jpeg (random strengths) and X@awgn=<v> for each fixed variance."""
    out: dict[str, dict] = {}
    for name, spec in named_test_specs(test).items():
        base = {k: v for k, v in spec.items() if k != "distortion"}
        out[copy_name(name, "clean")] = {**base, "distortion": None}
        out[copy_name(name, "AWGN")] = {**base, "distortion": _distortion("awgn", [float(x) for x in awgn_range])}
        out[copy_name(name, "JPEG")] = {**base, "distortion": _distortion("jpeg", [int(x) for x in jpeg_range])}
        for v in variances:
            out[copy_name(name, "AWGN", v)] = {**base, "distortion": _distortion("awgn", float(v))}
    return out


def robustness_config(name: str, overrides: Iterable[str] = (), ckpt_path: str | None = None,
                      variances=None, awgn_range=None, jpeg_range=None, experiment: DictConfig | None = None):
    """The composed experiment with its test sets replaced by the study's copies, and the study's settings."""
    variances = parse_variances(variances)
    awgn_range, jpeg_range = parse_range(awgn_range, "awgn"), parse_range(jpeg_range, "jpeg")
    overrides = list(overrides)
    if ckpt_path is not None:
        if not Path(str(ckpt_path)).expanduser().is_file():
            raise FileNotFoundError(f"--ckpt: no checkpoint file {ckpt_path}")
        overrides += ["test_only=true", f"ckpt_path={Path(str(ckpt_path)).expanduser()}"]
    cfg = compose(name, overrides, experiment=experiment)
    if "data" not in cfg or "test" not in cfg.data:
        raise ConfigError(f"experiment {name!r} has no data.test: nothing to distort")
    originals = named_test_specs(cfg.data.test)
    replaced = [n for n, s in originals.items() if s.get("distortion") is not None]
    if cfg.data.get("distortion") or replaced:
        print(f"[salseg] robustness: the experiment's own test distortion ({cfg.data.get('distortion') or replaced}) "
              "is replaced by the study's conditions")
    expanded = expand_test_specs(cfg.data.test, variances, awgn_range, jpeg_range)
    OmegaConf.update(cfg, "data.test", expanded, merge=False)
    OmegaConf.set_struct(cfg.data.test, False)
    if "robustness" not in list(cfg.get("tags") or []):
        cfg.tags = list(cfg.get("tags") or []) + ["robustness"]
    study = {"datasets": list(originals), "variances": variances, "awgn_range": list(awgn_range),
             "jpeg_range": list(jpeg_range), "ckpt_path": str(ckpt_path) if ckpt_path else None}
    return cfg, study


# ------------------------------------------------------------------------------------------ the study
def run_robustness(name: str, overrides: Iterable[str] = (), ckpt_path: str | None = None,
                   variances: str | Iterable[float] | None = None, awgn_range=None, jpeg_range=None,
                   experiment: DictConfig | None = None):
    """Compose ``name`` + ``overrides``, test (after training, if the model trains and no ``ckpt_path`` is given)
    on clean / AWGN / JPEG / fixed-variance copies of every test set, write the table, the plot and results.json.

    Returns a :class:`RobustnessResult`; when ``name`` is a comparison file (``compare: [a, b]``, e.g.
    ``quickstart``) each experiment gets its own study and a :class:`RobustnessComparison` puts them side by side.
    """
    if experiment is None:
        cmp = load_comparison(name)
        if cmp is not None:
            if ckpt_path is not None:
                raise ConfigError(f"--ckpt tests one model, and {name!r} compares {list(comparison_entries(cmp))}: "
                                  "give one of those experiments with --ckpt")
            return _run_comparison(name, cmp, list(overrides), variances, awgn_range, jpeg_range)
    start = time.time()
    cfg, study = robustness_config(name, overrides, ckpt_path, variances, awgn_range, jpeg_range, experiment)
    return _run_one(name, cfg, study, start)


def _announce(name: str, study: Mapping) -> None:
    print(f"[salseg] robustness {name}: test sets {', '.join(study['datasets'])} x (clean, AWGN variance "
          f"U{study['awgn_range']}, JPEG quality U{study['jpeg_range']}, AWGN variance in {study['variances']})")


def _run_one(name: str, cfg: DictConfig, study: Mapping, start: float) -> RobustnessResult:
    from salseg.runner import run

    _announce(name, study)
    result = run(cfg)
    table, curves = collect(result.metrics, study["datasets"], study["variances"])
    res = RobustnessResult(out_dir=Path(result.run_dir) / OUT_DIR, run_dir=Path(result.run_dir), table=table,
                           curves=curves, variances=list(study["variances"]))
    if tracking.env_global_rank() == 0:  # under DDP every process gets the metrics; one writes
        doc = {"experiment": name, "run_dir": str(res.run_dir), "primary_map": next(iter(table), None),
               "maps": list(table), "n_images": dict(result.n_images)}
        rows = {(m,): per_ds for m, per_ds in table.items()}
        lines = {(m,): per_ds for m, per_ds in curves.items()}
        header = [f"Run: `{res.run_dir}`" + (f" (checkpoint `{study['ckpt_path']}`)" if study.get("ckpt_path") else "")]
        write_outputs(res.out_dir, name, ("map",), rows, lines, study, doc, header, time.time() - start,
                      wandb_group=cfg.get("group") or name, logger_cfg=OmegaConf.to_container(cfg.logger, resolve=True))
    return res


def comparison_studies(name: str, cmp: DictConfig, overrides: list[str], variances, awgn_range,
                       jpeg_range) -> tuple[list, dict[str, tuple[DictConfig, dict]]]:
    """The entries of comparison ``name`` and, per entry, its composed study (``robustness_config``): every entry
    is composed (and so validated) before the first one runs. Entries' ``use_checkpoint_of`` links are not
    followed (each entry is composed alone)."""
    entries = comparison_plan(cmp)
    plan = {v.name: robustness_config(v.experiment, [f"group={name}", *v.overrides, *overrides], None, variances,
                                      awgn_range, jpeg_range) for v in entries}
    return entries, plan


def _run_comparison(name: str, cmp: DictConfig, overrides: list[str], variances, awgn_range,
                    jpeg_range) -> RobustnessComparison:
    """Each entry of the comparison its own study (the studies loop, :func:`salseg.studies.run.run_each`), then
    one joint table."""
    start = time.time()
    entries, plan = comparison_studies(name, cmp, overrides, variances, awgn_range, jpeg_range)
    done, _ = run_each(entries, lambda v, _run_dirs: _run_one(v.name, *plan[v.name], time.time()),
                       lambda i, v, _reused: print(f"\n[salseg] robustness {name}: {i}/{len(plan)} {v.name!r}"))
    results: dict[str, RobustnessResult] = {v.name: r for v, r in done}
    first_cfg = next(iter(plan.values()))[0]
    out = Path(first_cfg.runs_dir) / name / time.strftime("%Y%m%d-%H%M%S") / OUT_DIR
    return write_comparison(name, plan, results, out, start)


def write_comparison(name: str, plan: Mapping[str, tuple], results: Mapping[str, RobustnessResult], out: Path,
                     start: float) -> RobustnessComparison:
    """The side-by-side outputs of a comparison's studies (``results``: entry -> its study, in plan order) in
    ``out`` (``runs/<NAME>/<timestamp>/robustness``; a SLURM study's collect job writes them too)."""
    first_cfg, study = next(iter(plan.values()))
    study = {**study, "datasets": list(dict.fromkeys(ds for _, st in plan.values() for ds in st["datasets"]))}
    if tracking.env_global_rank() == 0:
        rows = {(e, m): per_ds for e, r in results.items() for m, per_ds in r.table.items()}
        lines = {(e, m): per_ds for e, r in results.items() for m, per_ds in r.curves.items()}
        doc = {"comparison": name, "compare": list(results),
               "runs": {e: str(r.run_dir) for e, r in results.items()}}
        header = ["Runs:", *[f"- {e}: `{r.run_dir}`" for e, r in results.items()]]
        write_outputs(out, name, ("method", "map"), rows, lines, study, doc, header, time.time() - start,
                      wandb_group=name, logger_cfg=OmegaConf.to_container(first_cfg.logger, resolve=True))
    return RobustnessComparison(out_dir=out, results=dict(results))


def load_result(run_dir: str | Path) -> RobustnessResult | None:
    """The study a run folder holds (``<run_dir>/robustness/results.json``, written last), else None."""
    import json

    path = Path(run_dir) / OUT_DIR / "results.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if doc.get("status") != "complete":
        return None
    return RobustnessResult(out_dir=path.parent, run_dir=Path(run_dir), table=doc["table"],
                            curves=doc["f_vs_noise"], variances=list(doc["variances"]))


def collect(metrics: Mapping, datasets: Sequence[str], variances: Sequence[float]) -> tuple[dict, dict]:
    """``{map: {copy: {metric: v}}}`` -> (table: map -> dataset -> condition -> metrics, curves: map -> dataset ->
    {"variance": [0, v1, ...], metric: [...]}). Map order (the primary map first) is kept."""
    table: dict = {}
    curves: dict = {}
    for map_name, per_copy in metrics.items():
        for ds in datasets:
            missing = [c for c in [copy_name(ds, c) for c in CONDITIONS] + [copy_name(ds, "AWGN", v) for v in variances]
                       if c not in per_copy]
            if missing:
                raise RuntimeError(f"robustness: the run reported no {map_name!r} metrics for {missing}")
            table.setdefault(map_name, {})[ds] = {c: dict(per_copy[copy_name(ds, c)]) for c in CONDITIONS}
            points = [per_copy[ds]] + [per_copy[copy_name(ds, "AWGN", v)] for v in variances]
            curve = {"variance": [0.0, *map(float, variances)]}
            for m in CURVE_METRICS:
                if all(m in p for p in points):
                    curve[m] = [float(p[m]) for p in points]
            curves.setdefault(map_name, {})[ds] = curve
    return table, curves


# ------------------------------------------------------------------------------------------ outputs
# Rows are keyed by a tuple: (map,) for one model, (method, map) for a comparison.
def _metric_columns(rows: Mapping) -> list[str]:
    present = {m for per_ds in rows.values() for per_c in per_ds.values() for row in per_c.values() for m in row}
    return metric_columns(present, among=SOD_METRICS)


def _condition_label(condition: str, study: Mapping) -> str:
    if condition == "AWGN":
        lo, hi = study["awgn_range"]
        return f"AWGN var U[{_fmt(lo)}, {_fmt(hi)}]"
    if condition == "JPEG":
        lo, hi = study["jpeg_range"]
        return f"JPEG q U{{{lo}..{hi}}}"
    return "clean"


def _row_title(key: tuple, first: bool) -> str:
    if len(key) == 1:
        return f"{key[0]} map" + (" (primary)" if first else "")
    return f"{key[0]}: {key[1]} map"


def format_markdown(name: str, key_names: Sequence[str], rows: Mapping, lines_: Mapping, study: Mapping,
                    header: Sequence[str] = ()) -> str:
    metrics = _metric_columns(rows)
    out = [f"# Robustness: {name}", "", *header, "",
           (f"Conditions (MEnet Table II): AWGN variance ~ U[{_fmt(study['awgn_range'][0])}, "
            f"{_fmt(study['awgn_range'][1])}] per image, JPEG quality ~ U{{{study['jpeg_range'][0]}.."
            f"{study['jpeg_range'][1]}}} per image (intensities on [0, 1])."), ""]
    for i, (key, per_ds) in enumerate(rows.items()):
        out += [f"## {_row_title(key, i == 0)}", "",
                "| dataset | condition | " + " | ".join(metrics) + " |",
                "| --- | --- | " + " | ".join("---:" for _ in metrics) + " |"]
        for ds, per_c in per_ds.items():
            for c in CONDITIONS:
                row = per_c[c]
                cells = " | ".join(f"{row[m]:.4f}" if m in row else "-" for m in metrics)
                out.append(f"| {ds} | {c} | " + cells + " |")
        out.append("")
    variances = list(study["variances"])
    if variances:
        out += ["## max F against AWGN variance (MEnet Fig. 8)", "",
                "| dataset | " + " | ".join(key_names) + " | "
                + " | ".join(["0 (clean)", *map(_fmt, variances)]) + " |",
                "| --- | " + " | ".join("---" for _ in key_names) + " | "
                + " | ".join("---:" for _ in range(len(variances) + 1)) + " |"]
        for key, per_ds in lines_.items():
            for ds, curve in per_ds.items():
                out.append(f"| {ds} | " + " | ".join(key) + " | "
                           + " | ".join(f"{v:.4f}" for v in curve["maxF"]) + " |")
        out.append("")
    return "\n".join(out)


def _table_csv(key_names: Sequence[str], rows: Mapping, study: Mapping) -> str:
    metrics = _metric_columns(rows)
    table = [[*key_names, "dataset", "condition", "strength", *metrics]]
    table += [[*key, ds, c, _condition_label(c, study),
               *[f"{per_c[c][m]:.6f}" if m in per_c[c] else "" for m in metrics]]
              for key, per_ds in rows.items() for ds, per_c in per_ds.items() for c in CONDITIONS]
    return csv_text(table, lineterminator="\n")


def _curves_csv(key_names: Sequence[str], lines_: Mapping) -> str:
    metrics = [m for m in CURVE_METRICS if all(m in c for per in lines_.values() for c in per.values())]
    table = [[*key_names, "dataset", "variance", *metrics]]
    table += [[*key, ds, _fmt(v), *[f"{curve[m][i]:.6f}" for m in metrics]]
              for key, per_ds in lines_.items() for ds, curve in per_ds.items()
              for i, v in enumerate(curve["variance"])]
    return csv_text(table, lineterminator="\n")


def plot_f_vs_noise(lines_: Mapping, path: Path, title: str = "", metric: str = "maxF") -> Path:
    """max F against the AWGN variance, one line per (row key, dataset) of ``lines_`` ({key: {dataset: curve}},
    key a map name or a tuple such as (method, map)); the clean score sits at variance 0 (symmetric-log x axis,
    linear below the smallest variance)."""
    from salseg.plots import plt  # salseg.plots selects matplotlib's Agg backend before pyplot loads

    keys = list(lines_)
    datasets = list(dict.fromkeys(ds for per in lines_.values() for ds in per))
    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=110)
    xs_all: set[float] = set()
    for key, per_ds in lines_.items():
        name = " / ".join(key) if isinstance(key, tuple) else str(key)
        for ds, c in per_ds.items():
            parts = ([name] if len(keys) > 1 else []) + ([ds] if len(datasets) > 1 or len(keys) == 1 else [])
            ax.plot(c["variance"], c[metric], marker="o", lw=1.8, ms=4, label=", ".join(parts))
            xs_all.update(c["variance"])
    positive = sorted(x for x in xs_all if x > 0)
    if positive:
        ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlim(-0.05 * positive[0], positive[-1] * 1.15)
    ticks = sorted(xs_all)
    ax.set_xticks(ticks, [_fmt(t) for t in ticks], rotation=45, fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("AWGN variance (intensities in [0, 1]; 0 = clean)")
    ax.set_ylabel("max F" if metric == "maxF" else metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or "max F against noise variance", fontsize=10)
    if keys:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _nest(rows: Mapping) -> dict:
    """{(a, b): v} -> {a: {b: v}} for results.json."""
    out: dict = {}
    for key, value in rows.items():
        node = out
        for k in key[:-1]:
            node = node.setdefault(k, {})
        node[key[-1]] = value
    return out


def write_outputs(out: Path, name: str, key_names: Sequence[str], rows: Mapping, lines_: Mapping, study: Mapping,
                  doc: Mapping, header: Sequence[str] = (), seconds: float | None = None,
                  wandb_group: str | None = None, logger_cfg: Mapping | None = None) -> None:
    """table.csv, f_vs_noise.csv, table.md, f_vs_noise.png, then results.json (last, atomically); then, when the
    study logs to W&B (``logger_cfg``), both tables, the plot and max F against AWGN variance as a line chart in
    W&B group ``wandb_group``."""
    texts = {"table.csv": _table_csv(key_names, rows, study), "f_vs_noise.csv": _curves_csv(key_names, lines_),
             "table.md": format_markdown(name, key_names, rows, lines_, study, header)}
    results = {
        **doc,
        "status": "complete",
        "datasets": list(study["datasets"]),
        "conditions": {"clean": None, "AWGN": _distortion("awgn", list(study["awgn_range"])),
                       "JPEG": _distortion("jpeg", list(study["jpeg_range"]))},
        "variances": list(study["variances"]),
        "ckpt_path": study.get("ckpt_path"),
        "table": _nest(rows),  # [method ->] map -> dataset -> condition -> metric -> value
        "f_vs_noise": _nest(lines_),  # [method ->] map -> dataset -> {variance: [...], maxF: [...], ...}
        "seconds": round(seconds, 2) if seconds is not None else None,
    }
    write_report(out, "robustness", texts,
                 lambda: plot_f_vs_noise(lines_, out / "f_vs_noise.png", title=f"{name}: max F against AWGN variance"),
                 results, wandb_group=wandb_group, logger_cfg=logger_cfg,
                 line_series={"robustness/f_vs_noise_chart": _f_vs_noise_series(name, lines_)})


def _f_vs_noise_series(name: str, lines_: Mapping) -> dict:
    """``wandb.plot.line_series`` arguments: max F against AWGN variance, one line per (row key, dataset)."""
    labels, xs, ys = [], [], []
    for key, per_ds in lines_.items():
        for ds, curve in per_ds.items():
            labels.append(" / ".join([*(key if isinstance(key, tuple) else (key,)), ds]))
            xs.append(list(curve["variance"]))
            ys.append(list(curve["maxF"]))
    return {"xs": xs, "ys": ys, "keys": labels, "title": f"{name}: max F against AWGN variance",
            "xname": "AWGN variance"}
