"""What the quickstart's DCSP budget can reach at all: its network trained on GROUND-TRUTH class masks.

    .venv/bin/python benchmarks/dcsp_supervised_bound.py [--steps 50 150] [--train 160] [--threads 2]

DCSP (paper 004) learns from cues (saliency + attention) in place of the class masks, so the same network trained
on the masks themselves, with the same budget, bounds what DCSP can score. The network is the quickstart's
(experiments/dcsp_shapes.yaml: DCSPNet on the offline ImageNet EfficientNet-Lite0 trunk, output stride 16, ASPP
rates 1 / 2 / 3 at width 64, frozen trunk batch norm), fine-tuned end to end with the authors' optimiser (SGD,
momentum 0.9, weight decay 5e-4, heads x10, poly 0.9) at dcsp_shapes' lr 1e-2, batch 16, random mirror, cross-entropy
on the class masks plus the image-level loss on the pooled segmentation scores (model.cls_on: segmentation). The
training images are the quickstart DCSP entry's (dcsp_shapes' multi-object mode, first --train of the split); the
score is mIoU (background + 4 classes) on the quickstart's 120 test images, one scale. Prints one line per
--steps value with the training seconds on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from salseg.data.shapes import ShapesDataset
from salseg.methods.dcsp.attention import multilabel_loss
from salseg.methods.dcsp.network import DCSPNet

NUM_CLASSES = 4


def stack(ds: ShapesDataset, key: str) -> torch.Tensor:
    return torch.stack([ds[i][key] for i in range(len(ds))])


def train_and_score(steps: int, lr: float, train: ShapesDataset, test: ShapesDataset, seed: int = 0) -> tuple:
    torch.manual_seed(seed)
    net = DCSPNet(NUM_CLASSES, "tf_efficientnet_lite0", "lite0_imagenet", 16, (1, 2, 3), 64, "avg")
    norms = [m for m in net.trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.requires_grad_(False)
    head = net.head_parameters()
    head_ids = {id(p) for p in head}
    trunk = [p for p in net.parameters() if id(p) not in head_ids and p.requires_grad]
    opt = torch.optim.SGD([{"params": trunk, "lr": lr}, {"params": head, "lr": 10 * lr}], lr=lr, momentum=0.9,
                          weight_decay=5e-4)
    base = [g["lr"] for g in opt.param_groups]
    images, masks, labels = stack(train, "image"), stack(train, "class_mask"), stack(train, "labels").float()
    start = time.perf_counter()
    for step in range(steps):
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * (1 - step / steps) ** 0.9
        net.train()
        for m in norms:
            m.eval()
        idx = torch.randint(0, len(images), (16,))
        flip = torch.rand(16) < 0.5
        x = torch.where(flip[:, None, None, None], images[idx].flip(-1), images[idx])
        y = torch.where(flip[:, None, None], masks[idx].flip(-1), masks[idx])
        _, seg = net(x)
        loss = F.cross_entropy(seg, y) + multilabel_loss(net.pool(seg[:, 1:]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    net.eval()
    test_images, truth = stack(test, "image"), stack(test, "class_mask")
    with torch.no_grad():
        pred = torch.cat([net(test_images[i : i + 40])[1].argmax(1) for i in range(0, len(test_images), 40)])
    k = NUM_CLASSES + 1
    conf = torch.bincount((truth * k + pred).flatten(), minlength=k * k).view(k, k).double()
    iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag())
    return float(iou.mean()), iou.tolist(), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 150])
    ap.add_argument("--train", type=int, default=160)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = ShapesDataset("train", args.train, max_objects=2, min_radius=0.15, clutter=0.0, camouflage=0.0)
    test = ShapesDataset("test", 120)  # the quickstart's test images (the shapes default mode)
    names = ["background", *train.class_names]
    for steps in args.steps:
        miou, iou, seconds = train_and_score(steps, args.lr, train, test)
        per_class = " ".join(f"{n} {v:.3f}" for n, v in zip(names, iou))
        print(f"{steps} steps ({seconds:.0f} s, {args.threads} threads): mIoU {miou:.3f} ({per_class})", flush=True)


if __name__ == "__main__":
    main()
