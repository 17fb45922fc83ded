"""MEnet speed: inference images/s at 224 px (batch 1 and 32) and the time of one training step (batch 5).

    .venv/bin/python benchmarks/bench_menet.py [--device cuda] [--repeats 5] [--json out.json]

The model is ``configs/model/menet.yaml`` (the authors' released network: 13 scales, 184,959,166 parameters,
72 conv/deconv layers, 47 on the trunk's main path) built for 224 px, plus ``configs/model/menet_small.yaml`` at
64 px (the same network at width 4, 790,866 parameters: the CPU configuration quickstart trains). Inference is
``saliency_maps`` (network, CE map and the metric-space map of Eq. 5) under ``torch.inference_mode``; a training
step is forward + L_ML + L_CE with the authors' hard-negative mining + backward + SGD step, on random images and
random blob masks. Each figure is the mean of ``--repeats`` calls after two warm-up calls, timed by
torch.utils.benchmark.Timer (salseg.cost.seconds_per_call: CUDA synchronised, the current torch threads).
The paper reports 0.086 s per image on its GPU (Sec. IV).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from salseg.cost import seconds_per_call  # noqa: E402
from salseg.methods.menet.module import MEnet  # noqa: E402


def build(config: str, image_size: int, device: torch.device) -> MEnet:
    spec = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / f"{config}.yaml"))
    spec.pop("kind")
    spec["image_size"] = image_size
    return MEnet(**spec).to(device)


def blob_masks(n: int, size: int, device: torch.device) -> torch.Tensor:
    """An ellipse per image at a random place: both classes present, as in real training batches."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
    r = torch.rand(n, 2, generator=g) * size * 0.2 + size * 0.1
    inside = ((yy - c[:, :1, None]) / r[:, :1, None]) ** 2 + ((xx - c[:, 1:, None]) / r[:, 1:, None]) ** 2 <= 1
    return inside[:, None].float().to(device)


def bench(config: str, size: int, device: torch.device, repeats: int, batches: list[int], train_batch: int) -> dict:
    model = build(config, size, device)
    info = model.describe()
    out = {"config": config, "image_size": size, "device": str(device), "parameters": info["params"],
           "layers": info["layers"], "inference": {}, "train_step_s": None}
    model.eval()
    for b in batches:
        x = torch.rand(b, 3, size, size, device=device)

        def infer(x=x):  # bind this batch size's input
            with torch.inference_mode():
                model.saliency_maps(x)

        s = seconds_per_call(infer, repeats=repeats)
        out["inference"][b] = {"s_per_batch": s, "images_per_s": b / s, "s_per_image": s / b}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = {"image": torch.rand(train_batch, 3, size, size, device=device),
             "mask": blob_masks(train_batch, size, device)}

    def step():
        opt.zero_grad(set_to_none=True)
        _, losses = model._loss(batch)
        losses["loss"].backward()
        opt.step()

    out["train_step_s"] = seconds_per_call(step, repeats=repeats)
    out["train_batch"] = train_batch
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,32", help="inference batch sizes (paper configuration)")
    p.add_argument("--train-batch", type=int, default=5, help="training batch (authors: 5)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"MEnet speed on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads), mean of {args.repeats} after 2 warm-up calls")
    results = [bench("menet", 224, device, args.repeats, batches, args.train_batch),
               bench("menet_small", 64, device, args.repeats, batches, 16)]
    print("| config | px | params | layers | batch | images/s | s/image | train step (batch) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        for b, v in r["inference"].items():
            print(f"| {r['config']} | {r['image_size']} | {r['parameters']:,} | {r['layers']} | {b} | "
                  f"{v['images_per_s']:.1f} | {v['s_per_image']:.4f} | "
                  f"{r['train_step_s']:.3f} s ({r['train_batch']}) |")
    print("paper (Sec. IV): 0.086 s per image on a GPU")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
