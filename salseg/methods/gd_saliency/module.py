"""``GDSaliencyMethod``: papers 002 / 001 end to end as one LightningModule.

``fit`` trains the classifiers the requested maps need (CNN1 always: it names the class l of a test image; CNN2
and/or CNN3 for their maps), side by side on each batch with one optimiser. ``test_step`` makes every map in
``maps`` by gradient descent on the test images (one forward/backward per step for the whole batch) and returns
them, the first being the primary map (PR curves):

* ``CNN1`` (cost F1), ``CNN2`` (F2), ``CNN3`` (F3), ``CNN2+3`` (the average of the two, paper 002's best),
  ``clamped`` (paper 001's cost on CNN1), ``gradient`` (Simonyan's gradient map of CNN1, the baseline).

``refine`` post-processes every map: ``none``, ``morphology`` (paper 002: dilation then erosion) or ``slic``
(paper 001: SLIC superpixel mean x the LAB global-contrast map, ``refine_recipe`` authors | paper). The authors'
recipe reads a GD map on the authors' scale (the RGB mean of the per-channel min-maxed X(0) - X(T), peak <= 1: its
Otsu level is scaled by that peak); CNN2+3 and gradient maps, and GD maps with ``diff_norm: none``, are read scaled
to a peak of 1. The scored maps are always scaled to a peak of 1. With
``refine_stages: true`` a map named X is returned raw as X, and as X_smoothed and X_refined after SLIC (paper 001
Fig. 2's columns), so one run scores every stage.

``segment`` names maps to segment (paper 002 Sec. 4, :mod:`.segment`: seeded refinement, a scikit-image region
hierarchy standing in for MCG's proposals, Jaccard selection at delta = 0.5). A segmented map X adds X_seeded (the
averaged seeded segmentations) and X_segmentation (the binary mask), which the evaluation also scores with F_beta
and Jaccard (``binary_maps``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from salseg.methods.base import SalsegMethod
from salseg.optim import OPTIMIZERS
from salseg.validation import one_of

from .classifier import (
    FINETUNE,
    classifier_head,
    cnn_inputs,
    fill_if_unset,
    finetune_optimizer,
    finetuned_classifier,
    frozen_but_head_train_mode,
    pretrained_classifier,
)
from .generator import DIFF_NORMS, GRAD_NORMS, GDSaliency, average_maps, normalize_maps
from .gradient import gradient_saliency
from .refine import RECIPES, morphological_smooth, refine
from .segment import SEEDERS, segment_from_saliency


def _stack(arrays, device) -> torch.Tensor:
    """Per-image (H, W) numpy maps -> (B, 1, H, W) float32 on ``device``."""
    return torch.stack([torch.as_tensor(a, dtype=torch.float32) for a in arrays])[:, None].to(device)


MAPS = ("CNN1", "CNN2", "CNN3", "CNN2+3", "clamped", "gradient")
# "none": the pretrained classifier as it is, its own head (ImageNet's 1000 classes), nothing trained (paper 001
# on MSRA10K, which has no class labels)
FINETUNE_OR_NONE = (*FINETUNE, "none")
REFINES = ("none", "morphology", "slic")
_NEEDS = {"CNN1": {"CNN1"}, "CNN2": {"CNN2"}, "CNN3": {"CNN3"}, "CNN2+3": {"CNN2", "CNN3"}, "clamped": set(),
          "gradient": set()}


class GDSaliencyMethod(SalsegMethod):
    """Keyword arguments = the keys of ``configs/model/gd_saliency.yaml``."""

    trainable = True  # False with finetune: none (set in __init__)
    # What a test of a trained checkpoint may change (``test_only=true ckpt_path=...``; ablations' checkpoint_of).
    test_time_hparams = ("maps", "cost_steps", "step_size", "decay", "grad_norm", "diff_norm", "clamp_gamma", "theta",
                         "refine", "refine_recipe", "refine_stages", "n_segments", "compactness", "alpha",
                         "refine_theta", "segment", "seg_runs", "seg_seeds", "seg_delta", "seg_seeder",
                         "seg_segments", "seg_compactness")

    def __init__(self, num_classes: int = 4, backbone: str = "resnet18", weights: str | None = "imagenet",
                 finetune: str = "all", head_lr_mult: float = 10.0, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, optimizer: str = "sgd", milestones: Sequence[int] = (),
                 gamma: float = 0.1,
                 fill: Sequence[float] | None = None, fill_samples: int = 200,
                 maps: Sequence[str] = ("CNN2+3", "CNN1", "CNN2", "CNN3", "gradient"), cost_steps: int = 35,
                 step_size: float = 20 / 255, decay: float = 0.999, grad_norm: str = "per_channel",
                 diff_norm: str = "per_channel", clamp_gamma: float = 200.0, theta: float = 0.0, refine: str = "none",
                 refine_recipe: str = "authors", refine_stages: bool = False, n_segments: int = 100,
                 compactness: float = 10.0, alpha: float = 0.2, refine_theta: float = 0.2,
                 segment: Sequence[str] = (), seg_runs: int = 100, seg_seeds: int = 50, seg_delta: float = 0.5,
                 seg_seeder: str = "watershed", seg_segments: int = 200, seg_compactness: float = 20.0,
                 channels_last: bool = False, normalize_step: bool | None = None):
        super().__init__()
        maps = [str(m) for m in maps]
        unknown = sorted(set(maps) - set(MAPS))
        if not maps or unknown:
            raise ValueError(f"model.maps must name some of {MAPS}, got {maps}")
        one_of("model.refine", refine, REFINES)
        one_of("model.refine_recipe", refine_recipe, RECIPES)
        one_of("model.grad_norm", grad_norm, GRAD_NORMS)
        one_of("model.diff_norm", diff_norm, DIFF_NORMS)
        one_of("model.finetune", finetune, FINETUNE_OR_NONE)
        missing = [m for m in segment if m not in maps]
        if missing:
            raise ValueError(f"model.segment names maps that model.maps does not make: {missing} (maps: {maps})")
        one_of("model.optimizer", optimizer, OPTIMIZERS)
        one_of("model.seg_seeder", seg_seeder, SEEDERS)
        if finetune in ("last", "none") and weights is None:
            raise ValueError(f"model.finetune={finetune!r} uses pretrained weights, but model.weights is null")
        if normalize_step is not None:  # a checkpoint from before grad_norm: its classifiers still serve
            rank_zero_warn(f"model.normalize_step={normalize_step} (an older checkpoint) is obsolete and ignored: "
                           f"model.grad_norm={grad_norm!r} normalises the descent's gradient")
        self.save_hyperparameters(ignore=["normalize_step"])
        needed = sorted({"CNN1"}.union(*(_NEEDS[m] for m in maps)))
        if finetune == "none" and needed != ["CNN1"]:
            raise ValueError(f"model.finetune='none' keeps the pretrained classifier (CNN1 only); maps {maps} need "
                             f"{needed}, which are trained on masked classes")
        self.trainable = finetune != "none"
        self.cnns = nn.ModuleDict()
        self.head_paths: dict[str, str] = {}
        for cnn in needed:
            if finetune == "none":
                self.cnns[cnn] = pretrained_classifier(backbone, weights)
                continue
            self.cnns[cnn], self.head_paths[cnn] = finetuned_classifier(cnn, num_classes, backbone, weights, finetune)
        if channels_last:  # measured for EfficientNet-Lite0: descent x1.3-1.4 at 64 px, x1.2 at 224 px (2 threads)
            for net in self.cnns.values():
                net.use_channels_last()
        self.register_buffer("fill_colour", torch.tensor(list(fill) if fill is not None else [float("nan")] * 3,
                                                         dtype=torch.float32))
        self.val_top1 = nn.ModuleDict({
            cnn: MulticlassAccuracy(num_classes=(2 if cnn == "CNN3" else 1) * num_classes, average="micro")
            for cnn in needed})
        # Top-1 / top-5 errors of each classifier on each test set (paper 002 Table 1), created per test loader.
        self.test_accuracy = nn.ModuleDict()

    # ------------------------------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        if set(self.cnns) - {"CNN1"}:
            fill_if_unset(self.fill_colour, self.trainer, self.hparams.fill_samples)

    def training_step(self, batch, batch_idx: int):
        total = 0.0
        for cnn, net in self.cnns.items():
            x, y = cnn_inputs(cnn, batch, self.fill_colour, self.hparams.num_classes)
            loss = nn.functional.cross_entropy(net(x), y)
            self.log(f"train/{cnn}_loss", loss, batch_size=len(y))
            total = total + loss
        self.log("train/loss", total, prog_bar=True, batch_size=len(batch["label"]))
        return total

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        for cnn, net in self.cnns.items():
            x, y = cnn_inputs(cnn, batch, self.fill_colour, self.hparams.num_classes)
            self.val_top1[cnn].update(net(x), y)

    def on_validation_epoch_end(self) -> None:
        for cnn, metric in self.val_top1.items():  # top-1 error per classifier (paper 002 Table 1)
            self.log(f"val/{cnn}_top1_error", 1.0 - metric.compute(), prog_bar=cnn == "CNN1")
            metric.reset()

    def _head(self, cnn: str) -> nn.Module:
        return classifier_head(self.cnns[cnn], self.head_paths[cnn])

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.finetune == "last":
            for cnn, net in self.cnns.items():
                frozen_but_head_train_mode(net, self._head(cnn), mode)
        return self

    def configure_optimizers(self):
        return finetune_optimizer([(net, self._head(cnn)) for cnn, net in self.cnns.items()], self.hparams, self)

    # ------------------------------------------------------------------------------------------ maps
    def _generator(self, cnn: str, cost: str) -> GDSaliency:
        hp = self.hparams
        return GDSaliency(self.cnns[cnn], cost, steps=hp.cost_steps, step_size=hp.step_size, decay=hp.decay,
                          grad_norm=hp.grad_norm, diff_norm=hp.diff_norm, gamma=hp.clamp_gamma, theta=hp.theta)

    def raw_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every requested map, unrefined, (B, 1, H, W) scaled to a peak of 1; the class l from CNN1 for all."""
        return {name: normalize_maps(m, "max") for name, m in self._unscaled_maps(images).items()}

    def _unscaled_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every requested map, unrefined, (B, 1, H, W) in [0, 1]: GD maps on the authors' scale (with
        ``diff_norm: per_channel``; else scaled to a peak of 1), CNN2+3 and gradient maps scaled to a peak of 1."""
        labels = self._generator("CNN1", "F1").predict_labels(images)
        authors_scale = self.hparams.diff_norm == "per_channel"
        cache: dict[str, torch.Tensor] = {}

        def get(name: str) -> torch.Tensor:
            if name not in cache:
                if name == "CNN2+3":
                    cache[name] = average_maps(get("CNN2"), get("CNN3"))
                elif name == "gradient":
                    cache[name] = gradient_saliency(self.cnns["CNN1"], images, labels)
                else:
                    cnn, cost = {"CNN1": ("CNN1", "F1"), "CNN2": ("CNN2", "F2"), "CNN3": ("CNN3", "F3"),
                                 "clamped": ("CNN1", "clamped")}[name]
                    res = self._generator(cnn, cost)(images, labels)
                    cache[name] = res.unscaled if authors_scale else res.maps
            return cache[name]

        return {name: get(name) for name in self.hparams.maps}

    def saliency_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        out: dict[str, torch.Tensor] = {}
        for name, unscaled in self._unscaled_maps(images).items():
            maps = normalize_maps(unscaled, "max")
            if hp.refine == "none":
                out[name] = maps
                continue
            per_image = []
            for m, u, img in zip(maps.cpu(), unscaled.cpu(), images.cpu()):
                if hp.refine == "morphology":
                    per_image.append({"refined": morphological_smooth(m)})
                else:
                    per_image.append(refine(u, img, recipe=hp.refine_recipe, n_segments=hp.n_segments,
                                            compactness=hp.compactness, alpha=hp.alpha, theta=hp.refine_theta))
            stages = ("smoothed", "refined") if hp.refine == "slic" and hp.refine_stages else ("refined",)
            stacked = {s: _stack([p[s] for p in per_image], maps.device) for s in stages}
            if hp.refine_stages:
                out[name] = maps
                out.update({f"{name}_{s}": stacked[s] for s in stages})
            else:
                out[name] = stacked["refined"]
        return out

    @property
    def binary_maps(self) -> set[str]:
        """Outputs that are binary segmentations: the evaluation adds F_beta and Jaccard for them."""
        return {f"{name}_segmentation" for name in self.hparams.segment}

    def segmentations(self, maps: dict[str, torch.Tensor], images: torch.Tensor,
                      names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """X_seeded and X_segmentation for every map X in ``segment`` (per image, on the CPU). The random seeds
        of an image come from its name (``names``), so its segmentation does not depend on the batch it is in."""
        hp = self.hparams
        seeds = [zlib.crc32(str(n).encode()) for n in names] if names is not None else list(range(len(images)))
        out: dict[str, torch.Tensor] = {}
        for name in hp.segment:
            results = [segment_from_saliency(m, img, delta=hp.seg_delta, n_seeds=hp.seg_seeds, runs=hp.seg_runs,
                                             seeder=hp.seg_seeder, n_segments=hp.seg_segments,
                                             compactness=hp.seg_compactness, seed=seed)
                       for seed, m, img in zip(seeds, maps[name].cpu(), images.cpu())]
            out[f"{name}_seeded"] = _stack([r.refined for r in results], images.device)
            out[f"{name}_segmentation"] = _stack([r.mask for r in results], images.device)
        return out

    def _update_test_accuracy(self, batch, dataloader_idx: int) -> None:
        """Each classifier on the test images it is trained for (CNN2: masked, CNN3: both), when the test set
        has labels of the training classes (not with ``finetune: none``, whose classes are ImageNet's)."""
        n = self.hparams.num_classes
        if self.hparams.finetune == "none" or "label" not in batch or not torch.is_tensor(batch["image"]):
            return
        for cnn, net in self.cnns.items():
            x, y = cnn_inputs(cnn, batch, self.fill_colour, n)
            classes = (2 if cnn == "CNN3" else 1) * n
            tops = (1, 5) if classes > 5 else (1,)  # top-5 of 5 classes or fewer is trivially right
            for k in tops:
                key = f"{dataloader_idx}/{cnn}/top{k}"
                if key not in self.test_accuracy:
                    self.test_accuracy[key] = MulticlassAccuracy(num_classes=classes, top_k=k,
                                                                 average="micro").to(self.device)
            with torch.no_grad():
                logits = net(x)
            for k in tops:
                self.test_accuracy[f"{dataloader_idx}/{cnn}/top{k}"].update(logits, y)

    def test_scores(self, dataloader_idx: int) -> dict[str, float]:
        """``{CNN1_top1_error: ..., CNN1_top5_error: ..., ...}`` on test loader ``dataloader_idx`` (reduced over
        processes); the evaluation adds them to every map's row of that test set."""
        out = {}
        for key, metric in self.test_accuracy.items():
            idx, cnn, top = key.split("/")
            if int(idx) == dataloader_idx:
                out[f"{cnn}_{top}_error"] = 1.0 - float(metric.compute())
                metric.reset()
        return out

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        self._update_test_accuracy(batch, dataloader_idx)
        maps = self.saliency_maps(batch["image"])
        return {**maps, **self.segmentations(maps, batch["image"], batch.get("name"))}

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return self.test_step(batch, batch_idx, dataloader_idx)
