"""Cost of every method at its experiment's input size: parameters, FLOPs and images/s of test-time inference.

    .venv/bin/python benchmarks/bench_cost.py [--experiments rc_shapes,menet_shapes,gd_shapes,dcsp_shapes]
        [--device cuda] [--threads 2] [--batch 1] [--min-run-time 1.0] [--json out.json]

The table SALOD and MMSegmentation print beside their scores, measured by :func:`salseg.cost.measure` (the same block
each run writes to metrics.json; README "Tests and benchmarks"): the model each experiment builds, untrained (the cost
does not depend on the weights), on ``--batch`` copies of the experiment's first test image at its test size, timed by
torch.utils.benchmark.Timer (``blocked_autorange`` for ``--min-run-time`` seconds after a warm-up; CUDA synchronised).
Inference is what the test step runs: MEnet's and DCSP's forward (DCSP with its test scales and flips), GD saliency's
T gradient-descent steps for every requested map (+ refinement / segmentation when configured), Region Contrast's
graph segmentation and contrast. FLOPs count torch's matrix products and convolutions at 2 per multiply-accumulate
(halve them to compare with mmcv / fvcore "FLOPs"); Region Contrast runs in NumPy, so its FLOPs are n/a. The defaults
are the shapes experiments (no download); any experiment name works, e.g. ``--experiments menet_msra10k,rc_msra10k``
with the data present (README "Datasets")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from salseg import registry  # noqa: E402
from salseg.config import compose, resolve  # noqa: E402
from salseg.cost import format_cost_table, measure  # noqa: E402

DEFAULT = "rc_shapes,menet_shapes,gd_shapes,dcsp_shapes"
# Only what inference needs: DCSP's saliency checkpoint feeds its training cues, not its test-time forward.
OVERRIDES = {"dcsp": ["model.cue_source=attention", "model.saliency_checkpoint=null"]}


def first_test_image(data_cfg: dict) -> torch.Tensor:
    datamodule = registry.build_datamodule(data_cfg)
    datamodule.setup("test")
    return datamodule.test_datasets[0][0]["image"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", default=DEFAULT, help=f"comma-separated experiment names (default {DEFAULT})")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for the timing")
    ap.add_argument("--batch", type=int, default=1, help="images per inference call (SALOD, MMSegmentation: 1)")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timed calls per method")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = {}
    for name in args.experiments.split(","):
        kind = compose(name, ["logger=csv"]).model.kind
        container = resolve(compose(name, ["logger=csv", "data.num_workers=0"] + OVERRIDES.get(kind, [])))
        image = first_test_image(container["data"])
        model = registry.build_model(container["model"])
        rows[name] = {"method": kind, **measure(model, image, batch_size=args.batch, device=args.device,
                                                num_threads=args.threads, min_run_time=args.min_run_time)}
        print(f"[bench_cost] {name}: {rows[name]['images_per_s']:.2f} images/s", flush=True)
    print(f"\nCost at each experiment's input size (batch {args.batch}; GFLOPs = 2 x GMACs of torch ops)")
    print(format_cost_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
