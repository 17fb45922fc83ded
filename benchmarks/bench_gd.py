"""GD saliency speed (paper 001 Table 2 style): seconds per image for gradient descent, SLIC and refinement, and
batched generation against a per-image loop at the same T.

    .venv/bin/python benchmarks/bench_gd.py [--device cuda] [--backbone tf_efficientnet_lite0]
        [--weights lite0_imagenet] [--size 224] [--batch 8] [--steps 35] [--repeats 2]

The images are the embedded shapes test split at ``--size``. The classifier is, by default, the suite's offline
ImageNet network (EfficientNet-Lite0, ``lite0_imagenet``: the one the real-photo experiment gd_clamped_sod uses) at
the authors' 224 px and T = 35, in eval mode behind its input normalisation; ``--backbone`` / ``--weights`` take
any name salseg.backbones builds (``--weights none``: random weights, for backbones with no offline weights). The
cost is paper 001's clamped cost. Batched = ONE forward and
backward of the summed cost per step for the whole batch; the loop runs the same generator on one image at a time.
The gradient baseline (one backward, Captum) is timed too. Each figure is the mean of ``--repeats`` calls after two
warm-up calls (segmentation: one timed call after one warm-up), timed by torch.utils.benchmark.Timer
(salseg.cost.seconds_per_call: CUDA synchronised, the current torch threads). Segmentation from saliency
(paper 002 Sec. 4) is timed per image at the paper's 100 seeded runs. The paper reports 0.45 s per image with
refinement and 20-40 images/s without (2015 GPU).

Step cost: one GD step (forward, backward to the input, update; the batched call's time / T, so the first forward
and X(T)'s cost are spread over the steps) against one forward + one backward of the same classifier on the same
batch, in two flavours: ``fb`` (a training-style backward: parameter and input gradients) and ``fb_input`` (the
input gradient alone, the parameters out of autograd: the least a step can cost). The three are timed in
``--rounds`` alternating rounds and each ratio is the median of the rounds' ratios (shared CPUs: a load change
hits both sides of a ratio alike). ``--profile N`` prints the N top operators of one batched call by self CPU time
(torch.profiler).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from salseg.cost import seconds_per_call
from salseg.data.shapes import ShapesDataset
from salseg.methods.gd_saliency import GDSaliency
from salseg.methods.gd_saliency.classifier import pretrained_classifier
from salseg.methods.gd_saliency.gradient import gradient_saliency
from salseg.methods.gd_saliency.refine import refine, slic_superpixels
from salseg.methods.gd_saliency.segment import segment_from_saliency


def forward_backward(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, params: bool) -> None:
    """One forward and one backward of the classifier's target logits: to the parameters and the input
    (``params``, as training does) or to the input alone (the parameters out of autograd, as the descent runs)."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        if not params:
            model.requires_grad_(False)
        xi = x.clone().requires_grad_(True)
        model(xi).gather(1, labels[:, None]).sum().backward()
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
            p.grad = None


def step_cost_ratios(model, gen, x, labels, rounds: int, repeats: int) -> dict[str, float]:
    """The batched GD call, one step (its time / T) and forward + backward (both flavours), timed in alternating
    rounds; each ratio is the median of the rounds' ratios, each time the median of the rounds' times."""
    times = {"batched_s": [], "fb_s": [], "fb_input_s": []}
    for _ in range(max(1, rounds)):
        times["batched_s"].append(seconds_per_call(lambda: gen(x, labels), repeats=repeats))
        times["fb_s"].append(seconds_per_call(lambda: forward_backward(model, x, labels, True), repeats=repeats))
        times["fb_input_s"].append(seconds_per_call(lambda: forward_backward(model, x, labels, False),
                                                    repeats=repeats))
    steps = [b / gen.steps for b in times["batched_s"]]
    out = {k: statistics.median(v) for k, v in times.items()}
    out["gd_step_s"] = statistics.median(steps)
    out["step_over_fb"] = statistics.median(s / f for s, f in zip(steps, times["fb_s"]))
    out["step_over_fb_input"] = statistics.median(s / f for s, f in zip(steps, times["fb_input_s"]))
    return out


def top_ops(fn, n: int) -> str:
    """torch.profiler's table of the ``n`` operators of one call of ``fn`` with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0", help="any salseg backbone name")
    ap.add_argument("--weights", default="lite0_imagenet", help="lite0_imagenet | imagenet | a path | none")
    ap.add_argument("--size", type=int, default=224, help="image side (the authors: 224)")
    ap.add_argument("--batch", type=int, default=8, help="images per batch (the authors: 50)")
    ap.add_argument("--steps", type=int, default=35, help="GD steps T (the authors: 35)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nchw", action="store_true",
                    help="NCHW classifier (default: channels_last, as model.channels_last)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the step-cost ratios")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the N top operators of a GD call")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    weights = None if args.weights == "none" else args.weights
    model = pretrained_classifier(args.backbone, weights).to(device).eval()
    if not args.nchw:
        model.use_channels_last()
    # real images (the embedded shapes test split): SLIC, refinement and segmentation depend on the content
    shapes = ShapesDataset(split="test", size=args.batch, image_size=args.size)
    x = torch.stack([shapes[i]["image"] for i in range(args.batch)]).to(device)
    with torch.no_grad():
        labels = model(x).argmax(1)
    gen = GDSaliency(model, "clamped", steps=args.steps)
    n = args.batch

    r = args.repeats
    step_cost = step_cost_ratios(model, gen, x, labels, args.rounds, r)
    batched = step_cost.pop("batched_s")
    loop = seconds_per_call(lambda: [gen(x[i:i + 1], labels[i:i + 1]) for i in range(n)], repeats=r)
    gradient = seconds_per_call(lambda: gradient_saliency(model, x, labels), repeats=r)
    res = gen(x, labels)
    maps, unscaled = res.maps.cpu(), res.unscaled.cpu()  # refinement reads the authors' scale (peak <= 1)
    images = x.cpu()
    k = min(n, 8)  # SLIC and refinement are per image on the CPU
    slic = seconds_per_call(lambda: [slic_superpixels(images[i]) for i in range(k)], repeats=r) / k
    refinement = seconds_per_call(lambda: [refine(unscaled[i], images[i]) for i in range(k)], repeats=r) / k
    # Segmentation from saliency (paper 002 Sec. 4) at the paper's 100 seeded runs, marker watershed; the random
    # walker is timed with 5 runs (it takes 0.2-3 s per run) and reported per run. Both slow: one warm-up call and
    # one timed call (blocked_autorange with no minimum run time).
    seg = seconds_per_call(lambda: [segment_from_saliency(maps[i], images[i], runs=100) for i in range(k)],
                           min_run_time=0) / k
    rw = seconds_per_call(lambda: [segment_from_saliency(maps[i], images[i], runs=5, seeder="random_walker")
                                   for i in range(2)], min_run_time=0) / 2 / 5

    figures = {
        "device": str(device), "threads": torch.get_num_threads(), "size": args.size, "batch": n,
        "steps": args.steps, "gd_batched_images_per_s": n / batched, "gd_loop_images_per_s": n / loop,
        "batched_over_loop": loop / batched, "gd_s_per_image_batched": batched / n, "slic_s_per_image": slic,
        "refine_s_per_image": refinement, "gradient_images_per_s": n / gradient,
        "segmentation_s_per_image": seg, "random_walker_s_per_run": rw,
    }
    figures.update(backbone=args.backbone, weights=args.weights, layout="nchw" if args.nchw else "nhwc")
    figures.update(step_cost)
    print(f"GD saliency, {args.backbone} ({args.weights}, {figures['layout']}) at {args.size} px, T = {args.steps}, "
          f"clamped cost, batch {n}, {device} "
          f"({figures['threads']} threads); mean of {args.repeats} after 2 warm-up calls")
    print("| stage | figure |\n| --- | ---: |")
    print(f"| GD batched (one backward per step) | {figures['gd_batched_images_per_s']:.2f} images/s |")
    print(f"| GD per-image loop | {figures['gd_loop_images_per_s']:.2f} images/s |")
    print(f"| batched / loop | x{figures['batched_over_loop']:.2f} |")
    print(f"| GD, s per image (batched) | {figures['gd_s_per_image_batched']:.4f} s |")
    print(f"| SLIC (100 segments), s per image | {slic:.4f} s |")
    print(f"| refinement incl. SLIC + LAB contrast, s per image | {refinement:.4f} s |")
    print(f"| gradient baseline (Captum, one backward) | {figures['gradient_images_per_s']:.2f} images/s |")
    print(f"| segmentation (100 watershed runs + hierarchy + selection), s per image | {seg:.4f} s |")
    print(f"| segmentation seeder random_walker, s per run | {rw:.4f} s |")
    print(f"| GD step (batch {n}) / forward + backward (parameter and input gradients) | "
          f"x{step_cost['step_over_fb']:.2f} ({step_cost['gd_step_s']:.4f} s / {step_cost['fb_s']:.4f} s) |")
    print(f"| GD step / forward + input-only backward | x{step_cost['step_over_fb_input']:.2f} "
          f"({step_cost['fb_input_s']:.4f} s; median of {args.rounds} alternating rounds) |")
    if args.profile:
        print(top_ops(lambda: gen(x, labels), args.profile))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
