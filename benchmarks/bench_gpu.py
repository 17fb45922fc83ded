"""GPU benchmark (issue 16 item 3): SOD metrics, MEnet inference and training, GD saliency and the DCSP training
step in one run, printed as a table beside the papers' anchors and the suite's goals, and written as JSON.

    make bench-gpu [ARGS="--device cuda --budget 20 --sections menet_inference,gd --json out.json"]
    .venv/bin/python benchmarks/bench_gpu.py [--device cpu] [--quick]

Profiles (the sizes each section runs are printed and written to the JSON):
- ``gpu`` (any non-CPU device): the paper configurations. SOD metrics (``SODMetrics(engine="torch")``) on batches
  of 64 maps at 300x400 on the device; MEnet (configs/model/menet.yaml, 224 px, channels_last) inference at batch
  1 and 32 in fp32 and bf16 (``torch.autocast``), training step at batch 5 (the authors') and 32; GD saliency
  with VGG-16 (random weights: speed does not depend on them) at 224 px, the authors' T = 35 (README "GD
  saliency") and batch 50, clamped cost, fp32 and bf16; DCSP training step with the authors' ResNet-101 at
  321 px, batch 10 (paper 004; benchmarks/bench_dcsp.py). Budgeted at 4-6 minutes on one GPU (10 items x the
  default ``--budget`` of 20 s, plus warm-ups and model builds; an estimate: no GPU has run it yet).
- ``cpu`` (``--device cpu``): the same sections at sizes a 2-core CPU finishes in a few minutes (metrics: 16 maps,
  torch engine beside the numpy one; MEnet's paper configuration, inference at batch 1 in fp32 only, training
  at batch 2: batch 1 leaves one value per channel at the 1x1 centre, which batch norm refuses; GD with VGG-16 at
  64 px, T = 2, batch 2; DCSP ResNet-50, 65 px, batch 2).
- ``quick`` (``--quick``): tiny sizes, seconds; for the test (tests/test_bench_gpu.py).

Every item is timed by torch.utils.benchmark.Timer through salseg.cost (CUDA synchronised): one call to warm up
(cuDNN autotuning, allocator) and one timed call to estimate, then the mean of as many calls as fit ``--budget``
seconds (after the Timer's two warm-up calls); an item slower than a third of the budget keeps its one timed call.
Sections are guarded: one that fails prints its error and the others still run; none starts after
``--time-limit`` seconds (7.5 minutes); the exit status is 1 if any failed or was skipped.

Anchors: MEnet 0.086 s per image (paper 003 Sec. IV, TITAN X Pascal); GD saliency 20-40 images/s without
refinement (papers 001 / 002, 2015 GPUs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_menet import blob_masks, build  # noqa: E402

from salseg.cost import seconds_per_call, time_calls  # noqa: E402

PROFILES = {
    "gpu": {"metrics": {"batch": 64, "height": 300, "width": 400, "engines": ["torch"]},
            "menet": {"config": "menet", "size": 224, "infer_batches": [1, 32], "dtypes": ["fp32", "bf16"],
                      "train_batches": [5, 32]},
            "gd": {"backbone": "vgg16", "size": 224, "steps": 35, "batch": 50, "dtypes": ["fp32", "bf16"]},
            "dcsp": {"backbone": "resnet101", "size": 321, "batch": 10}},
    # a CPU without bf16 instructions emulates it: MEnet's 224 px inference took 115 s per image in bf16 against
    # 9 s in fp32 here, so the CPU profile runs fp32 only (the quick profile still runs the bf16 code path)
    "cpu": {"metrics": {"batch": 16, "height": 300, "width": 400, "engines": ["torch", "numpy"]},
            "menet": {"config": "menet", "size": 224, "infer_batches": [1], "dtypes": ["fp32"], "train_batches": [2]},
            "gd": {"backbone": "vgg16", "size": 64, "steps": 2, "batch": 2, "dtypes": ["fp32"]},
            "dcsp": {"backbone": "resnet50", "size": 65, "batch": 2}},
    "quick": {"metrics": {"batch": 4, "height": 60, "width": 80, "engines": ["torch"]},
              "menet": {"config": "menet_small", "size": 64, "infer_batches": [1, 2], "dtypes": ["fp32", "bf16"],
                        "train_batches": [2]},
              "gd": {"backbone": "mini_vgg", "size": 32, "steps": 2, "batch": 2, "dtypes": ["fp32", "bf16"]},
              "dcsp": {"backbone": "mini_vgg", "size": 33, "batch": 2}},  # batch 1: the ASPP's pooled BN refuses it
}
DEFAULT_BUDGET_S = {"gpu": 20.0, "cpu": 6.0, "quick": 0.2}  # seconds of timed calls per item
ANCHORS = {"menet_s_per_image": 0.086, "gd_images_per_s": [20, 40]}
GOALS = {"menet_inference_b32_images_per_s": 1000, "gd_images_per_s": 1000, "metrics_maps_per_s": 2000}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def time_item(fn: Callable[[], object], budget: float) -> dict:
    """Seconds per call of ``fn``: one warm-up call (cuDNN autotuning, allocator) and one timed call estimate the
    cost; when ``budget`` allows, the mean of as many further calls as fit in it replaces that single call."""
    estimate = float(time_calls(fn, min_run_time=0).median)
    repeats = min(100, int(budget / max(estimate, 1e-6)) - 2)  # the Timer adds two warm-up calls
    if repeats < 1:  # a slow item (the CPU profile's MEnet): the one timed call is the figure
        return {"s_per_call": estimate, "timed_calls": 1}
    return {"s_per_call": seconds_per_call(fn, repeats=repeats), "timed_calls": repeats}


def record(out: dict, key: str, entry: dict) -> None:
    """Keep an item's figures and print them at once (a long run shows its progress)."""
    out[key] = entry
    print(f"   {key}: {entry['s_per_call']:.4f} s per call ({entry['timed_calls']} timed)", flush=True)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def bench_metrics(device, cfg, budget, notes, out) -> None:
    from salseg.metrics import SODMetrics

    g = torch.Generator(device="cpu").manual_seed(0)
    shape = (cfg["batch"], cfg["height"], cfg["width"])
    preds = torch.rand(shape, generator=g).to(device)
    gts = (torch.rand(shape, generator=g) > 0.7).float().to(device)
    for engine in cfg["engines"]:  # "torch": the batched path (issue 16 item 2); "numpy": per image on the CPU
        metrics = SODMetrics(engine=engine).to(device)

        def call(metrics=metrics):
            metrics.reset()
            metrics.update(preds, gts)

        t = time_item(call, budget)
        record(out, f"{engine}_b{cfg['batch']}", {"engine": engine, **t, "maps_per_s": cfg["batch"] / t["s_per_call"]})


def bench_menet_inference(device, cfg, budget, notes, out) -> None:
    model = build(cfg["config"], cfg["size"], device).eval()  # channels_last: the configs' default
    out.update(parameters=model.describe()["params"], channels_last=bool(model.hparams.channels_last))
    for b in cfg["infer_batches"]:
        x = torch.rand(b, 3, cfg["size"], cfg["size"], device=device).contiguous(memory_format=torch.channels_last)
        for name in cfg["dtypes"]:
            dtype = DTYPES[name]

            def infer(x=x, dtype=dtype):
                with torch.inference_mode(), autocast(device, dtype):
                    model.saliency_maps(x)

            t = time_item(infer, budget)
            record(out, f"{name}_b{b}", {**t, "batch": b, "images_per_s": b / t["s_per_call"],
                                         "s_per_image": t["s_per_call"] / b})


def bench_menet_train(device, cfg, budget, notes, out) -> None:
    model = build(cfg["config"], cfg["size"], device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for b in cfg["train_batches"]:
        batch = {"image": torch.rand(b, 3, cfg["size"], cfg["size"], device=device),
                 "mask": blob_masks(b, cfg["size"], device)}

        def step(batch=batch):
            opt.zero_grad(set_to_none=True)
            _, losses = model._loss(batch)
            losses["loss"].backward()
            opt.step()

        t = time_item(step, budget)
        record(out, f"fp32_b{b}", {**t, "batch": b, "s_per_step": t["s_per_call"],
                                   "images_per_s": b / t["s_per_call"]})


def bench_gd(device, cfg, budget, notes, out) -> None:
    from salseg.methods.gd_saliency import GDSaliency
    from salseg.methods.gd_saliency.classifier import pretrained_classifier

    torch.manual_seed(0)
    model = pretrained_classifier(cfg["backbone"], None).to(device).eval().use_channels_last()
    x = torch.rand(cfg["batch"], 3, cfg["size"], cfg["size"], device=device)
    with torch.no_grad():
        labels = model(x).argmax(1)
    gen = GDSaliency(model, "clamped", steps=cfg["steps"])
    for name in cfg["dtypes"]:
        dtype = DTYPES[name]

        def call(dtype=dtype):
            with autocast(device, dtype):
                gen(x, labels)

        t = time_item(call, budget)
        record(out, name, {**t, "images_per_s": cfg["batch"] / t["s_per_call"]})


def bench_dcsp_train(device, cfg, budget, notes, out) -> None:
    from salseg.methods.dcsp.attention import multilabel_loss
    from salseg.methods.dcsp.network import DCSPNet

    torch.manual_seed(0)
    net = DCSPNet(20, cfg["backbone"], None, output_stride=8).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    b, s = cfg["batch"], cfg["size"]
    images = torch.rand(b, 3, s, s, device=device)
    target = torch.randint(0, 21, (b, s, s), device=device)
    labels = (torch.rand(b, 20, device=device) > 0.8).float()

    def step():  # benchmarks/bench_dcsp.py's segmentation-phase step: CE + classification loss, SGD
        logits, seg = net(images)
        loss = F.cross_entropy(seg, target) + multilabel_loss(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time_item(step, budget)
    record(out, "fp32", {**t, "s_per_step": t["s_per_call"], "images_per_s": b / t["s_per_call"]})


# section -> (its sizes' key in PROFILES, the function that times it), in running order
SECTIONS = {"metrics": ("metrics", bench_metrics), "menet_inference": ("menet", bench_menet_inference),
            "menet_train": ("menet", bench_menet_train), "gd": ("gd", bench_gd),
            "dcsp_train": ("dcsp", bench_dcsp_train)}


def rate(x: float) -> str:
    """A throughput with three significant digits below 100 (a CPU's 0.123 img/s), one decimal above."""
    return f"{x:.1f}" if x >= 100 else f"{x:.3g}"


def table(results: dict) -> str:
    """One markdown row per timed item, with the anchor or goal it is read against."""
    lines = ["| section | item | s per call | figure | anchor / goal |", "| --- | --- | ---: | ---: | --- |"]
    for section, r in results.items():
        for item, v in r.get("items", {}).items():
            if not isinstance(v, dict):
                continue
            if section == "metrics":
                figure, ref = f"{rate(v['maps_per_s'])} maps/s", f"goal >= {GOALS['metrics_maps_per_s']} maps/s"
            elif section == "menet_inference":
                figure = f"{rate(v['images_per_s'])} img/s ({v['s_per_image']:.4f} s/img)"
                ref = f"paper {ANCHORS['menet_s_per_image']} s/img" + (
                    f"; goal >= {GOALS['menet_inference_b32_images_per_s']} img/s" if v["batch"] == 32 else "")
            elif section == "gd":
                figure = f"{rate(v['images_per_s'])} img/s"
                ref = f"papers 20-40 img/s; goal >= {GOALS['gd_images_per_s']} img/s"
            else:
                figure, ref = f"{rate(v['images_per_s'])} img/s", ""
            lines.append(f"| {section} | {item} | {v['s_per_call']:.4f} | {figure} | {ref} |")
        if r["status"] != "ok":
            lines.append(f"| {section} | {r['status']}: {r['error']} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds): the test's profile")
    ap.add_argument("--budget", type=float, help="seconds of timed calls per item (default: per profile)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--time-limit", type=float, default=450.0,
                    help="seconds after which no further section starts (those left are reported as skipped)")
    ap.add_argument("--json", type=Path, help="default: runs/bench_gpu/<UTC timestamp>.json")
    args = ap.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"bench_gpu: --device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    unknown = [s for s in args.sections.split(",") if s not in SECTIONS]
    if unknown:
        print(f"bench_gpu: --sections: unknown {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = "quick" if args.quick else ("cpu" if device.type == "cpu" else "gpu")
    budget = args.budget if args.budget is not None else DEFAULT_BUDGET_S[profile]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    stamp = datetime.now(UTC)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"bench_gpu: profile {profile} on {device} ({name}, {torch.get_num_threads()} threads), torch "
          f"{torch.__version__}, {budget:g} s of timed calls per item")
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for section in args.sections.split(","):
        key, fn = SECTIONS[section]
        cfg, notes = PROFILES[profile][key], []
        if time.perf_counter() - start > args.time_limit:
            results[section] = {"status": "skipped", "config": cfg, "error": f"--time-limit {args.time_limit:g} s"}
            print(f"bench_gpu: section {section} skipped: past --time-limit {args.time_limit:g} s", flush=True)
            continue
        print(f"== {section}: {json.dumps(cfg)}", flush=True)
        t0 = time.perf_counter()
        results[section] = {"status": "ok", "config": cfg, "items": {}}
        try:  # each section fills its items as they finish: a failure keeps the figures timed before it
            fn(device, cfg, budget, notes, results[section]["items"])
        except Exception as exc:  # noqa: BLE001 (a failing section must not stop the others)
            traceback.print_exc()
            results[section].update(status="failed", error=f"{type(exc).__name__}: {exc}")
            print(f"bench_gpu: section {section} FAILED: {type(exc).__name__}: {exc}", flush=True)
        results[section].update(notes=notes, wall_s=round(time.perf_counter() - t0, 2))
        for note in notes:
            print(f"   note: {note}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    elapsed = time.perf_counter() - start
    print(table(results))
    print(f"anchors: MEnet paper {ANCHORS['menet_s_per_image']} s/img (TITAN X Pascal); GD papers 20-40 img/s "
          f"without refinement. goals: MEnet >= 1000 img/s at batch 32, GD >= 1000 img/s, metrics >= 2000 maps/s")
    failed = [s for s, r in results.items() if r["status"] != "ok"]  # skipped ones too: their figures are missing
    report = {"device": str(device), "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "profile": profile, "budget_s": budget,
              "started_utc": stamp.isoformat(timespec="seconds"), "elapsed_s": round(elapsed, 1),
              "anchors": ANCHORS, "goals": GOALS, "sections": results, "failed": failed}
    path = args.json or ROOT / "runs" / "bench_gpu" / f"{stamp:%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"bench_gpu: {len(results) - len(failed)}/{len(results)} sections ok in {elapsed:.0f} s; wrote {path}")
    if failed:
        print(f"bench_gpu: failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
