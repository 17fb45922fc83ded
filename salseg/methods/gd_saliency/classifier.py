"""The classifiers the GD saliency method descends through (paper 002 Sec. 3.1; paper 001 Sec. 4.1).

* CNN1: N classes, trained on the original images (label = the class of the largest object).
* CNN2: N "masked" classes, trained on masked images only (the object pixels replaced by a fill colour).
* CNN3: 2N outputs, trained on both: an original image is class l, its masked version class N + l.

Any backbone ``salseg.backbones`` builds (torchvision or timm classifiers by name, the suite's ``mini_vgg``), its
last linear layer replaced by one with the outputs above. Weights (``weights``): ``lite0_imagenet`` (EfficientNet-
Lite0's ImageNet weights, installed with the suite), ``imagenet`` (the library's weights from its cache; never
downloaded: a missing file is an error that names where to put it), a path to a state dict of the same
architecture, or ``null`` (from scratch) -- only when the config says so.

Fine-tune strategies of paper 001 (Sec. 4.1, Table 1), ``finetune``: ``all`` (every layer, one learning rate),
``all_boost_last`` (every layer, the new last layer at ``head_lr_mult`` x the rate), ``last`` (only the new last
layer trains; the rest is frozen, batch norm statistics included).
:class:`GDClassifier` (kind ``gd_classifier``) fine-tunes one classifier alone, ``GDSaliencyMethod`` each of its
CNNs, both through the same functions below.

Masking happens here, on the fly (so any saliency dataset, ``shapes`` included, serves CNN2/CNN3): every pixel
whose class is not background, i.e. ``class_mask != 0`` where the batch has a class map -- VOC's void band (255)
included, since it outlines every object -- else ``mask`` (``salseg.data.masking.masking_region``). A dataset that
already masks (``masked: true``: ``image`` masked, ``original`` unmasked) is used as it is. The fill is ``fill``
or, when null, the mean colour of the first ``fill_samples`` training images.
Top-1 and top-5 error (paper 002 Table 1) are logged on the validation set (``val/top1_error``, ``val/top5_error``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from salseg.backbones import (  # noqa: F401  (re-exported: the classifiers' weights loading lives there)
    IMAGENET_MEAN,
    IMAGENET_STD,
    SUITE_BACKBONES,
    MiniVGG,
    WeightsNotFound,
    build_backbone,
    hub_weights_file,
    input_normalization,
)
from salseg.data.masking import dataset_mean_colour, mask_objects, masking_region
from salseg.methods.base import SalsegMethod
from salseg.optim import OPTIMIZERS, optimizer_with_milestones
from salseg.validation import one_of

KINDS = ("CNN1", "CNN2", "CNN3")
FINETUNE = ("all", "all_boost_last", "last")
def replace_last_linear(model: nn.Module, n_outputs: int) -> str:
    """Swap the LAST nn.Linear of ``model`` (its classification layer) for a new one with ``n_outputs``; returns
    its module path (``fc`` for ResNets, ``classifier.6`` for VGG, ...)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classification layer to replace")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, n_outputs))
    return last


class ImageClassifier(nn.Module):
    """Backbone with its input normalisation inside (``salseg.backbones.input_normalization``: ImageNet's mean / std
    for torchvision models, [-1, 1] for EfficientNet-Lite0): images in [0, 1] -> logits (the GD generator's input)."""

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

        self.channels_last = False

    def use_channels_last(self) -> ImageClassifier:
        """NHWC weights and inputs (oneDNN's and cuDNN's fast layout; the same logits up to float rounding). The
        input images keep their layout: the gradient the descent reads comes back in it."""
        self.backbone.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        return self.backbone(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


def training_mean_colour(trainer, samples: int) -> torch.Tensor:
    """The default fill: the mean colour of the first ``samples`` images of the trainer's training set."""
    ds = getattr(getattr(trainer, "datamodule", None), "train_dataset", None)
    if ds is None:
        raise RuntimeError("CNN2/CNN3 need a fill colour: set model.fill=[r, g, b] or train through a data module "
                           "with a train_dataset (its mean colour is used)")
    return dataset_mean_colour(ds, samples)


def cnn_inputs(cnn: str, batch: dict, fill: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, targets) CNN1 / CNN2 / CNN3 train on: originals with l; masked images with l; both, the masked
    ones with N + l. Masks every non-background pixel of ``image`` (objects and void, :func:`masking_region`)
    unless the dataset did (``original`` present)."""
    label = batch["label"].long()
    if cnn == "CNN1":
        return batch.get("original", batch["image"]), label
    if "original" in batch:  # the dataset masked already
        original, masked = batch["original"], batch["image"]
    else:
        if torch.isnan(fill).any():
            raise RuntimeError("no fill colour yet: set model.fill or call fit() (which measures it)")
        region = masking_region(batch["mask"], batch.get("class_mask"), batch.get("has_mask"))
        original, masked = batch["image"], mask_objects(batch["image"], region, fill)
    if cnn == "CNN2":
        return masked, label
    return torch.cat([original, masked]), torch.cat([label, label + num_classes])


def build_classifier(cnn: str, num_classes: int, backbone: str, weights: str | None) -> tuple[ImageClassifier, str]:
    """(classifier with CNN1 / CNN2's N or CNN3's 2N outputs, the module path of its new last layer)."""
    net = build_backbone(backbone, weights)
    head_path = replace_last_linear(net, 2 * int(num_classes) if cnn == "CNN3" else int(num_classes))
    return ImageClassifier(net, *input_normalization(backbone)), head_path


def pretrained_classifier(backbone: str, weights: str | None) -> ImageClassifier:
    """The backbone's own classifier (ImageNet's 1000 classes), nothing replaced: ``finetune: none``."""
    return ImageClassifier(build_backbone(backbone, weights), *input_normalization(backbone))


# One way to fine-tune a classifier (paper 001 Sec. 4.1), used by GDClassifier and by every CNN of
# GDSaliencyMethod: build it (frozen but for its new last layer with ``last``), keep its frozen layers' batch-norm
# statistics in train mode, measure the masked images' fill colour, and optimise it in per-strategy groups.
def classifier_head(net: ImageClassifier, head_path: str) -> nn.Module:
    """The new classification layer of ``net`` (a path into the backbone, so it is not registered twice)."""
    return net.backbone.get_submodule(head_path)


def finetuned_classifier(cnn: str, num_classes: int, backbone: str, weights: str | None,
                         finetune: str) -> tuple[ImageClassifier, str]:
    """:func:`build_classifier`, with everything but the new last layer frozen for ``finetune: last``."""
    net, head_path = build_classifier(cnn, num_classes, backbone, weights)
    if finetune == "last":
        freeze_all_but_head(net, classifier_head(net, head_path))
    return net, head_path


def freeze_all_but_head(net: nn.Module, head: nn.Module) -> None:
    """Fine-tune strategy ``last``: only the new last layer trains."""
    for p in net.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)


def frozen_but_head_train_mode(net: nn.Module, head: nn.Module, mode: bool) -> None:
    """``finetune: last`` after ``train(mode)``: the frozen layers keep their batch-norm statistics (eval), the
    new last layer follows ``mode``."""
    net.eval()
    head.train(mode)


def fill_if_unset(fill_colour: torch.Tensor, trainer, samples: int) -> None:
    """An unset (NaN) fill colour becomes the mean colour of the training set (:func:`training_mean_colour`)."""
    if torch.isnan(fill_colour).any():
        fill_colour.copy_(training_mean_colour(trainer, samples).to(fill_colour))


def finetune_groups(net: nn.Module, head: nn.Module, finetune: str, lr: float, head_lr_mult: float) -> list[dict]:
    """SGD parameter groups of one classifier: the new last layer (at ``head_lr_mult`` x lr for
    ``all_boost_last``) and, unless frozen, the rest."""
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in net.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": list(head.parameters()), "lr": lr * (head_lr_mult if finetune == "all_boost_last" else 1.0)}]
    return groups + ([{"params": body, "lr": lr}] if body else [])


def finetune_optimizer(classifiers: Iterable[tuple[nn.Module, nn.Module]], hp, module):
    """One optimiser (``hp.optimizer``, milestones :func:`salseg.optim.optimizer_with_milestones`) over the
    :func:`finetune_groups` of every (classifier, its new last layer) in ``classifiers``, in order."""
    groups = [g for net, head in classifiers for g in finetune_groups(net, head, hp.finetune, hp.lr, hp.head_lr_mult)]
    return optimizer_with_milestones(groups, hp, module)


class GDClassifier(SalsegMethod):
    """CNN1 / CNN2 / CNN3 (``cnn``) over backbone ``backbone`` with ``num_classes`` = N object classes."""

    trainable = True

    def __init__(self, cnn: str = "CNN1", num_classes: int = 4, backbone: str = "resnet18",
                 weights: str | None = "imagenet", finetune: str = "all", head_lr_mult: float = 10.0,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, optimizer: str = "sgd",
                 milestones: tuple[int, ...] = (), gamma: float = 0.1, fill: tuple[float, float, float] | None = None,
                 fill_samples: int = 200):
        super().__init__()
        one_of("model.cnn", cnn, KINDS)
        one_of("model.finetune", finetune, FINETUNE)
        if int(num_classes) < 1:
            raise ValueError(f"model.num_classes must be >= 1, got {num_classes}")
        one_of("model.optimizer", optimizer, OPTIMIZERS)
        if finetune == "last" and weights is None:
            raise ValueError(f"model.finetune={finetune!r} fine-tunes pretrained weights, but model.weights is null")
        self.save_hyperparameters()
        self.n_outputs = 2 * int(num_classes) if cnn == "CNN3" else int(num_classes)
        self.net, self.head_path = finetuned_classifier(cnn, num_classes, backbone, weights, finetune)
        self.register_buffer("fill_colour", torch.tensor(fill if fill is not None else [float("nan")] * 3,
                                                         dtype=torch.float32))
        k5 = min(5, self.n_outputs)
        self.val_accuracy = nn.ModuleDict({
            k: MulticlassAccuracy(num_classes=self.n_outputs, top_k=top, average="micro")
            for k, top in (("top1", 1), ("top5", k5))})

    @property
    def head(self) -> nn.Linear:
        """The new classification layer (a path into the backbone, so it is not registered twice)."""
        return classifier_head(self.net, self.head_path)

    # ------------------------------------------------------------------------------------------ data
    def on_fit_start(self) -> None:
        if self.hparams.cnn != "CNN1":
            fill_if_unset(self.fill_colour, self.trainer, self.hparams.fill_samples)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.finetune == "last":
            frozen_but_head_train_mode(self.net, self.head, mode)
        return self

    def inputs_and_targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and class targets this kind trains and is scored on (see :func:`cnn_inputs`)."""
        return cnn_inputs(self.hparams.cnn, batch, self.fill_colour, self.hparams.num_classes)

    # ------------------------------------------------------------------------------------------ steps
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx: int):
        x, y = self.inputs_and_targets(batch)
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        x, y = self.inputs_and_targets(batch)
        logits = self(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), batch_size=len(y), sync_dist=True)
        for metric in self.val_accuracy.values():
            metric.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        for k, metric in self.val_accuracy.items():  # compute() reduces over processes (torchmetrics states)
            self.log(f"val/{k}_error", 1.0 - metric.compute(), prog_bar=k == "top1")
            metric.reset()

    def configure_optimizers(self):
        return finetune_optimizer([(self.net, self.head)], self.hparams, self)
