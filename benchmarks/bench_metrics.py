"""Speed of the full SOD metric set on SOD-300 (Amulet maps): reading + scoring, and scoring alone.

    .venv/bin/python benchmarks/bench_metrics.py [--workers 2] [--repeats 3]
    .venv/bin/python benchmarks/bench_metrics.py --compare-pysodmetrics .bench/pysod-venv/bin/python

The full set is maxF, meanF, adpF, maxF_pr, MAE, Sm, maxEm, meanEm, adpEm, wF (plus the curves). Reported:
- the command a user types: wall time of ``python -m salseg eval --pred ... --gt ...`` as a subprocess
  (interpreter start and imports included), against PySODMetrics' usual loop as a script in its own interpreter
  (imports included): the END-TO-END CLI ratio;
- end to end in-process: ``evaluate_folders`` on the two folders (PNG decoding + scoring, worker processes);
- reading alone: decoding the 600 PNGs in this process;
- scoring alone: ``evaluate_arrays`` on maps already in memory (worker processes), and in this process.

``--compare-pysodmetrics PYTHON`` (default ``.bench/pysod-venv/bin/python`` when it exists) runs PySODMetrics
(Fmeasure, MAE, Smeasure, Emeasure, WeightedFmeasure; one process, as it is meant to be used, reading with
cv2.IMREAD_GRAYSCALE) in that interpreter and prints the speed ratios and the largest absolute difference
between the two sets of values. Such an interpreter:
``python3 -m venv .bench/pysod-venv && .bench/pysod-venv/bin/pip install pysodmetrics==1.6.2
opencv-python-headless`` (``.bench/`` is git-ignored; pysodmetrics pins its own numpy).

The data folder is ``../shared/data/sod300`` next to the repository (env ``SALSEG_SHARED_DATA`` overrides);
without it the benchmark prints a message and exits 0. Timings depend on the machine: on a shared 2-core VM,
repeat. Each figure is the mean of ``--repeats`` calls after two warm-up calls, timed by
torch.utils.benchmark.Timer (salseg.cost.seconds_per_call); PySODMetrics' interpreter has no torch, so its
script times itself and the comparison takes the mean of its ``--repeats`` runs (no warm-up there).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PYSOD_PYTHON = ROOT / ".bench" / "pysod-venv" / "bin" / "python"

from salseg.cost import seconds_per_call  # noqa: E402
from salseg.evaluate import default_workers, evaluate_arrays, evaluate_folders, list_images, read_gray  # noqa: E402
from salseg.metrics import METRIC_KEYS  # noqa: E402

# Run in the PySODMetrics interpreter: argv = pred_dir gt_dir repeats; prints one JSON line.
PYSOD_SCRIPT = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import cv2, numpy as np
import py_sod_metrics as M

pred_dir, gt_dir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(os.listdir(gt_dir))

def read(name):
    return (cv2.imread(os.path.join(pred_dir, name), cv2.IMREAD_GRAYSCALE),
            cv2.imread(os.path.join(gt_dir, name), cv2.IMREAD_GRAYSCALE))

def score(pairs):
    ms = [M.Fmeasure(), M.MAE(), M.Smeasure(), M.Emeasure(), M.WeightedFmeasure()]
    for pred, gt in pairs:
        for m in ms:
            m.step(pred, gt)
    fm, mae, sm, em, wfm = (m.get_results() for m in ms)
    return {"maxF": fm["fm"]["curve"].max(), "meanF": fm["fm"]["curve"].mean(), "adpF": fm["fm"]["adp"],
            "MAE": mae["mae"], "Sm": sm["sm"], "maxEm": em["em"]["curve"].max(),
            "meanEm": em["em"]["curve"].mean(), "adpEm": em["em"]["adp"], "wF": wfm["wfm"]}

end_to_end, scoring = [], []
if repeats == 0:  # the usual script: read, score, print (timed from outside, imports included)
    print(json.dumps({k: float(v) for k, v in score(read(n) for n in names).items()}))
    sys.exit(0)
for _ in range(repeats):
    t0 = time.perf_counter()
    pairs = [read(n) for n in names]
    values = score(pairs)
    end_to_end.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    score(pairs)
    scoring.append(time.perf_counter() - t0)
print(json.dumps({"n": len(names), "values": {k: float(v) for k, v in values.items()},
                  "end_to_end_s": end_to_end, "scoring_s": scoring}))
"""


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    shared = Path(os.environ.get("SALSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return shared / "sod300"


def timed(fn, repeats: int) -> tuple[float, object]:
    """Mean seconds of ``repeats`` calls of ``fn`` after two warm-up calls (torch.utils.benchmark.Timer through
    salseg.cost.seconds_per_call), and what the last call returned."""
    last = {}

    def call():
        last["out"] = fn()

    return seconds_per_call(call, repeats=repeats), last["out"]


def rate_row(label: str, n: int, seconds: float) -> str:
    return f"| {label} | {n / seconds:8.1f} |"


def wall_of(cmd: list[str], repeats: int) -> tuple[list[float], str]:
    """Wall seconds of each of ``repeats`` runs of a command (a fresh interpreter each time), and its stdout."""
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        out = proc.stdout
    return times, out


def run_pysod(python: str, pred_dir: Path, gt_dir: Path, repeats: int) -> dict:
    proc = subprocess.run([python, "-c", PYSOD_SCRIPT, str(pred_dir), str(gt_dir), str(repeats)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"PySODMetrics run failed ({python}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="SOD-300 folder with gt/ and preds/Amulet/ (default ../shared/data/sod300)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare-pysodmetrics", metavar="PYTHON",
                    help=f"interpreter with pysodmetrics + opencv (default {DEFAULT_PYSOD_PYTHON} if present)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.compare_pysodmetrics is None and DEFAULT_PYSOD_PYTHON.exists():
        args.compare_pysodmetrics = str(DEFAULT_PYSOD_PYTHON)

    root = data_dir(args.data)
    pred_dir, gt_dir = root / "preds" / "Amulet", root / "gt"
    if not pred_dir.is_dir() or not gt_dir.is_dir():
        print(f"[bench_metrics] skipped: SOD-300 data not found at {root} (set SALSEG_SHARED_DATA)")
        return 0
    workers = default_workers() if args.workers is None else args.workers
    names = list(list_images(gt_dir))
    n = len(names)
    print(f"SOD-300 / Amulet: {n} maps, full metric set ({', '.join(METRIC_KEYS)}), {workers} worker(s), "
          f"{os.cpu_count()} CPU(s), mean of {args.repeats} after 2 warm-up calls")

    # The command a user types, in a fresh interpreter (imports and worker start-up included).
    cli_cmd = [sys.executable, "-m", "salseg", "eval", "--pred", str(pred_dir), "--gt", str(gt_dir)]
    cli_times, _ = wall_of(cli_cmd, args.repeats)
    cli_s = statistics.mean(cli_times)
    e2e_s, result = timed(lambda: evaluate_folders(pred_dir, gt_dir, num_workers=workers), args.repeats)
    read_s, arrays = timed(lambda: [(read_gray(pred_dir / f"{s}.png"), read_gray(gt_dir / f"{s}.png"))
                                        for s in names], args.repeats)
    preds, gts = [p for p, _ in arrays], [g for _, g in arrays]
    score_s, _ = timed(lambda: evaluate_arrays(preds, gts, num_workers=workers), args.repeats)
    score1_s, _ = timed(lambda: evaluate_arrays(preds, gts, num_workers=0), args.repeats)

    rows = [
        "| stage | maps/s |",
        "| --- | ---: |",
        rate_row(f"`salseg eval` command, wall ({cli_s:.2f} s; interpreter + imports included)", n, cli_s),
        rate_row(f"end to end: read + score ({workers} workers)", n, e2e_s),
        rate_row("reading alone (1 process)", n, read_s),
        rate_row(f"scoring alone ({workers} workers)", n, score_s),
        rate_row("scoring alone (1 process)", n, score1_s),
    ]
    timing = result["timing"]
    figures = {
        "n": n, "workers": workers, "cli_wall_s": cli_times,
        "end_to_end_maps_per_s": n / e2e_s, "reading_maps_per_s": n / read_s,
        "scoring_maps_per_s": n / score_s, "scoring_1proc_maps_per_s": n / score1_s,
        "worker_read_s_per_map": timing["read_s"] / n, "worker_score_s_per_map": timing["score_s"] / n,
        "values": result["metrics"],
    }
    if args.compare_pysodmetrics:
        ref = run_pysod(args.compare_pysodmetrics, pred_dir, gt_dir, args.repeats)
        ref_e2e_s, ref_score_s = statistics.mean(ref["end_to_end_s"]), statistics.mean(ref["scoring_s"])
        ref_cli_times, _ = wall_of([args.compare_pysodmetrics, "-c", PYSOD_SCRIPT, str(pred_dir), str(gt_dir), "0"],
                                   args.repeats)
        ref_cli_s = statistics.mean(ref_cli_times)
        rows.append(rate_row(f"PySODMetrics 1.6.2 script, wall ({ref_cli_s:.2f} s; interpreter + imports included)",
                             ref["n"], ref_cli_s))
        rows.append(rate_row("PySODMetrics 1.6.2 end to end (1 process)", ref["n"], ref_e2e_s))
        rows.append(rate_row("PySODMetrics 1.6.2 scoring alone (1 process)", ref["n"], ref_score_s))
        diffs = {k: abs(result["metrics"][k] - v) for k, v in ref["values"].items()}
        figures.update({
            "pysod_end_to_end_maps_per_s": ref["n"] / ref_e2e_s,
            "pysod_scoring_maps_per_s": ref["n"] / ref_score_s,
            "pysod_values": ref["values"], "max_abs_diff": max(diffs.values()),
            "pysod_cli_wall_s": ref_cli_times, "ratio_cli": ref_cli_s / cli_s,
        })
        figures["ratio_end_to_end"] = figures["end_to_end_maps_per_s"] / figures["pysod_end_to_end_maps_per_s"]
        figures["ratio_scoring"] = figures["scoring_maps_per_s"] / figures["pysod_scoring_maps_per_s"]

    print("\n".join(rows))
    print(f"(in the workers, per map: reading {1e3 * figures['worker_read_s_per_map']:.2f} ms, "
          f"scoring {1e3 * figures['worker_score_s_per_map']:.2f} ms)")
    print("\nvalues: " + ", ".join(f"{k} {v:.5f}" for k, v in result["metrics"].items()))
    if args.compare_pysodmetrics:
        print("PySODMetrics: " + ", ".join(f"{k} {v:.5f}" for k, v in figures["pysod_values"].items()))
        print(f"speed-up over PySODMetrics: END-TO-END CLI (salseg eval command vs PySOD script, wall) "
              f"x{figures['ratio_cli']:.1f} (goal x5); in-process end to end x{figures['ratio_end_to_end']:.1f} "
              f"(goal x10), scoring x{figures['ratio_scoring']:.1f}; max |difference| of the 9 shared values: "
              f"{figures['max_abs_diff']:.2e} ({'ok' if figures['max_abs_diff'] <= 1e-15 else 'ABOVE'} 1e-15)")
        print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    else:
        print("(no PySODMetrics interpreter: build one with `python3 -m venv .bench/pysod-venv && "
              ".bench/pysod-venv/bin/pip install pysodmetrics==1.6.2 opencv-python-headless` for the ratios)")
    if args.json:
        from salseg.atomic import write_json

        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
