"""DCSP speed: cue generation (images/s, batched against the authors' one image at a time) and the training step.

    .venv/bin/python benchmarks/bench_dcsp.py [--device cuda] [--backbone resnet50] [--size 161] [--batch 4]

Cue generation = the hierarchical saliency (the authors' 2 passes of a saliency model: the small MEnet of
``menet_shapes``, random weights, at 64 px) + the class attention at scales {1, 0.75, 0.5} + the fusion, on
``--batch`` shapes images at ``--size``; "per image" runs the same code on one image at a time (the authors'
get_localization does). The adapt round's cues (multi-scale segmentation scores) are timed the same way. The
training step is one forward, backward and SGD step of the segmentation phase (cross-entropy + classification
loss) at crop ``--size`` and batch ``--batch`` (the authors: ResNet-101, 321, 10, on a GPU). Weights are random:
the time does not depend on them. Each figure is the mean of ``--repeats`` calls after two warm-up calls, timed by
torch.utils.benchmark.Timer (salseg.cost.seconds_per_call: CUDA synchronised, the current torch threads).

Step cost: the segmentation phase's full step as Lightning runs it -- ``DCSP.training_step`` (the cues read, the
authors' scale / mirror / pad / crop, forward, cross-entropy + classification loss), then zero_grad, backward and
the SGD step -- against one forward + one backward of the same network (the same losses) on the same batch. Both
are timed in ``--rounds`` alternating rounds; the ratio is the median of the rounds' ratios (shared CPUs).
``--profile N`` prints the N top operators of one step by self CPU time (torch.profiler).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from salseg.cost import seconds_per_call
from salseg.data.shapes import ShapesDataset
from salseg.methods.dcsp.attention import multilabel_loss, multiscale_attention
from salseg.methods.dcsp.cues import adapted_cues, hierarchical_saliency, make_cues
from salseg.methods.dcsp.module import DCSP
from salseg.methods.dcsp.network import DCSPNet, multiscale_seg_scores
from salseg.methods.menet.module import MEnet


def training_step_cost(args, images: torch.Tensor, labels: torch.Tensor, cues: torch.Tensor,
                       weights: str | None) -> dict[str, float]:
    """The segmentation phase's ``DCSP.training_step`` + zero_grad + backward + SGD step (its cues served from
    memory instead of the run's cue cache) against forward + backward of its network, in alternating rounds."""
    module = DCSP(num_classes=20, backbone=args.backbone, weights=weights, cue_source="attention",
                  crop_size=args.size).to(images.device).train()
    module.phase = lambda epoch: "segmentation"  # no trainer here: its epoch would say "attention"
    module.cue_builder.read = lambda names: list(cues)
    batch = {"image": images, "labels": labels, "name": [str(i) for i in range(len(images))]}
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def module_step() -> None:
        loss = module.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward_backward() -> None:
        logits, seg = module.net(images)
        (F.cross_entropy(seg, cues, ignore_index=255) + multilabel_loss(logits, labels)).backward()
        module.net.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"module_step_s": [], "fb_s": []}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer to log to
        for _ in range(max(1, args.rounds)):
            times["module_step_s"].append(seconds_per_call(module_step, repeats=args.repeats))
            times["fb_s"].append(seconds_per_call(forward_backward, repeats=args.repeats))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                module_step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))
    out = {k: statistics.median(v) for k, v in times.items()}
    out["step_over_fb"] = statistics.median(s / f for s, f in zip(times["module_step_s"], times["fb_s"]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0", help="the authors: resnet101")
    ap.add_argument("--weights", default="none", help="the trunk's weights: none (random) | lite0_imagenet | ...")
    ap.add_argument("--size", type=int, default=224, help="image side / training crop (the authors: 321)")
    ap.add_argument("--batch", type=int, default=4, help="images per batch (the authors: 10)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the step-cost ratio")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the N top operators of a step")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    ds = ShapesDataset(split="test", size=args.batch, image_size=args.size)
    images = torch.stack([ds[i]["image"] for i in range(args.batch)]).to(device)
    labels = torch.stack([ds[i]["labels"] for i in range(args.batch)]).to(device)
    menet = MEnet(image_size=64, depth=6, width=8, max_width=64, feature_dim=16).to(device).eval()

    def saliency(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            small = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
            s = next(iter(menet.saliency_maps(small).values()))
            return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)

    weights = None if args.weights == "none" else args.weights
    net = DCSPNet(20, args.backbone, weights, output_stride=8).to(device).eval()
    voc_labels = torch.zeros(args.batch, 20, device=device)
    voc_labels[:, :4] = labels

    def cues(x: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        return make_cues(multiscale_attention(net, x), hierarchical_saliency(saliency, x), lab).cues

    r = args.repeats
    batched = seconds_per_call(lambda: cues(images, voc_labels), repeats=r)
    looped = seconds_per_call(lambda: [cues(images[i : i + 1], voc_labels[i : i + 1]) for i in range(args.batch)],
                              repeats=r)
    adapt = seconds_per_call(lambda: adapted_cues(multiscale_seg_scores(net, images), voc_labels), repeats=r)

    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    target = torch.randint(0, 21, (args.batch, args.size, args.size), device=device)

    def step() -> None:
        logits, seg = net(images)
        loss = F.cross_entropy(seg, target) + multilabel_loss(logits, voc_labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step = seconds_per_call(step, repeats=r)
    step_cost = training_step_cost(args, images, voc_labels, target, weights)
    out = {
        "device": str(device), "backbone": args.backbone, "size": args.size, "batch": args.batch,
        "threads": torch.get_num_threads(),
        "cues_batched_img_per_s": args.batch / batched, "cues_per_image_img_per_s": args.batch / looped,
        "cues_batched_speedup": looped / batched, "adapted_cues_img_per_s": args.batch / adapt,
        "train_step_s": train_step, "train_img_per_s": args.batch / train_step, **step_cost,
    }
    print(f"DCSP on {device} ({torch.get_num_threads()} threads), {args.backbone} output stride 8, "
          f"{args.size} px, batch {args.batch}")
    print(f"  cues (2 saliency passes + attention at 3 scales): batched {out['cues_batched_img_per_s']:.2f} img/s, "
          f"one image at a time {out['cues_per_image_img_per_s']:.2f} img/s (x{out['cues_batched_speedup']:.2f})")
    print(f"  adapted cues (segmentation at 3 scales): {out['adapted_cues_img_per_s']:.2f} img/s")
    print(f"  training step (CE + classification loss, SGD): {train_step:.3f} s "
          f"({out['train_img_per_s']:.2f} img/s)")
    print(f"  DCSP.training_step + backward + SGD step / forward + backward: x{out['step_over_fb']:.2f} "
          f"({out['module_step_s']:.3f} s / {out['fb_s']:.3f} s, median of {args.rounds} alternating rounds)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
