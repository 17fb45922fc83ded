"""``DCSP``: paper 004 end to end as one LightningModule (the authors' pipeline, ``dcsp.py``, as epochs of one fit).

One network (:class:`DCSPNet`: a backbone trunk, a class head and a DeepLab ASPP head) goes through three phases:

1. ``attention_epochs``: the class head alone, sigmoid cross-entropy on the image-level labels (the attention
   network).
2. ``seg_epochs``: first the round-0 cues of every training image are made and cached (:mod:`.cues`: hierarchical
   saliency from ``saliency_checkpoint``, multi-scale attention from the class head, their harmonic mean); then
   the segmentation head is trained on them with cross-entropy PLUS ``lambda_cls`` x an image-level multi-label
   classification loss (the network continues from the attention network's weights, as the authors' does). Where
   that loss is taken, ``cls_on``: ``segmentation`` (on the globally pooled object-class scores of the
   segmentation head, so each present class must win some pixels; the default) or ``class_head`` (on the class
   head; the authors' class head is a 1x1 convolution on their segmentation scores: see :mod:`.network`).
3. ``adapt_epochs`` (0 = no adapt round): the round-1 cues are the segmentation network's own multi-scale
   predictions restricted to each image's classes; training continues on them.

The optimiser is the authors' SGD (or ``optimizer: adamw`` for networks trained from scratch on a CPU). The
learning rate follows the poly schedule (power ``poly_power``) within each phase, restarting at ``lr`` (the
authors restart it for every stage); the heads get ``head_lr_mult`` x ``lr``. ``freeze_bn`` keeps
the trunk's batch norm as pretrained (statistics AND scale/offset: the authors' ``is_training=False`` and their
exclusion of every ``beta`` / ``gamma`` from the trained variables); the new ASPP head's batch norm trains (the
authors' head has none).

Training images come un-augmented from the data module (``data.augment`` must be null), at their native size with
``data.image_size: null`` (a batch is then a list of images). As the authors' DeepLab readers
(``deeplab_resnet/image_reader_segment.py``, ``image_reader_classfc.py``), each image (with its cue) is scaled by
a random factor in ``scale_range`` ([0.5, 1.5)), mirrored with probability 0.5, padded at the bottom and right to
at least ``crop_size`` (321) with the mean colour ``pixel_mean`` (their IMG_MEAN: a zero after their mean
subtraction) and the cue with ``pad_cue`` (``background``: the authors' segment reader pads its labels with 0;
``ignore``: 255, DeepLab's own reader), then cropped at random to ``crop_size``.

Cues, validation and test run at the images' own size: images of one size are batched together, each size apart
(padding them into one batch would change the scores near the padding and the ASPP's image pooling).

Cues (made by :class:`.cue_builder.CueBuilder`) live under ``<run>/cues/round<k>/`` (or ``cue_dir``), written
once and read by every later step, epoch and resumed run; their settings are fingerprinted, so a cache made with
other settings is refused (``StaleCueCache``).
The cues' own mIoU against the training ground truth (where the data has pixel labels; never used for training)
is measured while they are made and reported as ``train_cues_mIoU`` / ``train_adapted_cues_mIoU``; pixels the
cues leave unlabelled (255: the saliency-only cues of an image with several classes) are not scored.

Test: ``segmentation``, class probabilities at the image's size: with ``test_fusion: max`` (the authors'
``evaluate.py``) the softmax of the maximum over ``test_scales`` (1, 0.75, 0.5) of the segmentation logits; with
``mean`` the average of each scale's softmax (optionally with flips); and, with ``crf: true``,
``segmentation_crf`` (dense CRF on the image at its own size, :mod:`.crf`); both are scored with mIoU and
per-class IoU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from salseg.data.transforms import scale_flip_pad_crop
from salseg.methods.base import SalsegMethod
from salseg.metrics.segmentation import SemanticSegmentationScores
from salseg.optim import OPTIMIZERS, build_optimizer, stepwise
from salseg.validation import one_of

from .attention import multilabel_loss
from .cue_builder import CueBuilder
from .cues import AUTHORS_MEAN, BACKGROUND, HIDE_FILLS, IGNORE, SOURCES, at_scale
from .network import DCSPNet, multiscale_seg_scores

PHASES = ("attention", "segmentation", "adapt")
CLS_ON = ("segmentation", "class_head")
PAD_CUES = ("background", "ignore")  # the padding of a training crop's cue: the authors' 0 | DeepLab's 255
TEST_FUSIONS = ("max", "mean")  # over test scales: max of the logits (the authors') | mean of the softmax


def size_groups(images: torch.Tensor | Sequence[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """A batch's images grouped by size: [(their indices, the stacked images (n, 3, H, W))], in order of first
    appearance. A stacked batch is one group; a list (native sizes) gives one group per distinct size."""
    if isinstance(images, torch.Tensor):
        return [(list(range(len(images))), images)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    return [(idx, torch.stack([images[i] for i in idx])) for idx in groups.values()]


def batched(items: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """Per-image tensors stacked when they share one shape, else kept as a list (native sizes)."""
    return torch.stack(list(items)) if len({tuple(t.shape) for t in items}) == 1 else list(items)


def class_names_for(spec: str | Sequence[str] | None, num_classes: int) -> list[str]:
    """Object class names: a list, or ``voc`` / ``shapes`` for a dataset's own, or None (class0, class1, ...)."""
    if spec is None:
        names = [f"class{i}" for i in range(num_classes)]
    elif isinstance(spec, str):
        from salseg.data import SHAPE_NAMES, VOC_CLASSES

        table = {"voc": VOC_CLASSES, "shapes": SHAPE_NAMES}
        one_of("model.class_names", spec, tuple(table))
        names = list(table[spec][:num_classes])
    else:
        names = [str(n) for n in spec]
    if len(names) != num_classes:
        raise ValueError(f"model.class_names gives {len(names)} names for num_classes={num_classes}")
    return names


class DCSP(SalsegMethod):
    """Keyword arguments = the keys of ``configs/model/dcsp.yaml``."""

    test_time_hparams = ("test_scales", "test_fusion", "test_flip", "crf", "crf_iterations", "crf_kernels")

    def __init__(self, num_classes: int = 20, class_names: str | Sequence[str] | None = "voc",
                 backbone: str = "resnet101", weights: str | None = "imagenet", output_stride: int = 8,
                 aspp_rates: Sequence[int] = (6, 12, 18), aspp_width: int = 256, class_pooling: str = "avg",
                 freeze_bn: bool = True, freeze_trunk: bool = False,
                 saliency_checkpoint: str | None = None, saliency_passes: int = 2,
                 saliency_thresholds: Sequence[float] = (0.7, 0.8), hide_fill: str = "dataset_mean",
                 pixel_mean: Sequence[float] = AUTHORS_MEAN,
                 attention_scales: Sequence[float] = (1.0, 0.75, 0.5), background_threshold: float = 0.4,
                 cue_source: str = "both", cue_dir: str | None = None, cue_batch_size: int = 16,
                 attention_epochs: int = 1, seg_epochs: int = 1, adapt_epochs: int = 1, lambda_cls: float = 1.0,
                 cls_on: str = "segmentation",
                 optimizer: str = "sgd", lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
                 head_lr_mult: float = 10.0,
                 poly_power: float = 0.9, crop_size: int | None = 321, scale_range: Sequence[float] = (0.5, 1.5),
                 hflip: bool = True, pad_cue: str = "background", test_scales: Sequence[float] = (1.0, 0.75, 0.5),
                 test_fusion: str = "max", test_flip: bool = False, crf: bool = False, crf_iterations: int = 10,
                 crf_kernels: str = "dcsp"):
        super().__init__()
        one_of("model.cue_source", cue_source, SOURCES)
        one_of("model.optimizer", optimizer, OPTIMIZERS)
        one_of("model.cls_on", cls_on, CLS_ON)
        one_of("model.hide_fill", hide_fill, HIDE_FILLS)
        one_of("model.pad_cue", pad_cue, PAD_CUES)
        one_of("model.test_fusion", test_fusion, TEST_FUSIONS)
        from .crf import CRF_KERNELS

        one_of("model.crf_kernels", crf_kernels, tuple(CRF_KERNELS))
        if int(saliency_passes) < 1 or len(saliency_thresholds) < int(saliency_passes) - 1:
            raise ValueError(f"model.saliency_passes={saliency_passes} needs >= 1 pass and a threshold per extra pass "
                             f"in model.saliency_thresholds, got {list(saliency_thresholds)}")
        if len(pixel_mean) != 3 or not all(0 <= float(v) <= 1 for v in pixel_mean):
            raise ValueError(f"model.pixel_mean must be an RGB colour in [0, 1], got {list(pixel_mean)}")
        if attention_epochs < 1 or seg_epochs < 1 or adapt_epochs < 0:
            raise ValueError(f"model.attention_epochs and model.seg_epochs must be >= 1 and model.adapt_epochs >= 0, "
                             f"got {attention_epochs}, {seg_epochs}, {adapt_epochs}")
        if cue_source != "attention" and not saliency_checkpoint:
            raise ValueError("model.saliency_checkpoint is not set: DCSP's cues need a trained saliency model of "
                             "this suite (menet, gd_saliency or region_contrast), e.g. model.saliency_checkpoint="
                             "runs/menet_shapes/<timestamp>/checkpoints/last.ckpt (make exp NAME=menet_shapes); "
                             "or model.cue_source=attention for attention-only cues")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"model.scale_range must be [low, high] with 0 < low <= high, got {list(scale_range)}")
        if crf:
            from .crf import require_crf

            require_crf()
        self.save_hyperparameters()
        self.names = class_names_for(class_names, int(num_classes))
        self.net = DCSPNet(num_classes, backbone, weights, output_stride, aspp_rates, aspp_width, class_pooling,
                           freeze_trunk)
        if freeze_bn:  # the authors train no batch-norm scale or offset (only the trunk has batch norm there)
            for m in self._trunk_batch_norms():
                m.requires_grad_(False)
        self.val_scores = SemanticSegmentationScores(self.class_names)
        self.run_scores: dict[str, float] = {}
        self.cue_builder = CueBuilder(self)

    # ------------------------------------------------------------------------------------------ bookkeeping
    @property
    def class_names(self) -> list[str]:
        return ["background", *self.names]

    @property
    def semantic_maps(self) -> set[str]:
        return {"segmentation", "segmentation_crf"}

    @property
    def total_epochs(self) -> int:
        hp = self.hparams
        return hp.attention_epochs + hp.seg_epochs + hp.adapt_epochs

    def phase(self, epoch: int) -> str:
        hp = self.hparams
        if epoch < hp.attention_epochs:
            return "attention"
        return "segmentation" if epoch < hp.attention_epochs + hp.seg_epochs else "adapt"

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        loop = self.trainer.fit_loop
        if loop.max_epochs != self.total_epochs:
            print(f"[salseg] dcsp: {self.total_epochs} epochs (attention {self.hparams.attention_epochs} + "
                  f"segmentation {self.hparams.seg_epochs} + adapt {self.hparams.adapt_epochs}); "
                  f"trainer.max_epochs={loop.max_epochs} is replaced")
            loop.max_epochs = self.total_epochs
        strategy = self.trainer.strategy
        if type(strategy).__name__ == "DDPStrategy" and not getattr(strategy, "_ddp_kwargs", {}).get(
                "find_unused_parameters"):
            # the segmentation head idles in the attention phase (and the class head without L_cls): plain DDP
            # would wait for their gradients forever
            raise ValueError("DCSP trains its two heads in turns, so DDP must allow unused parameters: "
                             "trainer.strategy=ddp_find_unused_parameters_true")
        dm = self.trainer.datamodule
        if getattr(dm, "augment", None):
            raise ValueError(f"data.augment={dm.augment}: DCSP scales, crops and flips each image together with its "
                             f"cue itself (model.crop_size, model.scale_range, model.hflip); set data.augment=null")
        if getattr(dm, "image_size", 0) is None and not self.hparams.crop_size:
            raise ValueError("data.image_size=null keeps every image at its own size, so training needs a crop: set "
                             "model.crop_size (the authors: 321)")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dcsp_run_scores"] = dict(self.run_scores)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.run_scores = dict(checkpoint.get("dcsp_run_scores", {}))

    def _trunk_batch_norms(self) -> list[torch.nn.Module]:
        return [m for m in self.net.trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.hparams.freeze_trunk:  # pretrained features as they are, batch norm statistics included
            self.net.trunk.eval()
        elif mode and self.hparams.freeze_bn:  # the trunk keeps its pretrained statistics (the authors', batch 10);
            for m in self._trunk_batch_norms():  # the new head's batch norm learns its own
                m.eval()
        return self

    # ------------------------------------------------------------------------------------------ cues
    def cue_settings(self, round_: int) -> dict:
        """What the cues of a round depend on (besides this run's weights): a cache made otherwise is stale."""
        return self.cue_builder.settings(round_)

    def on_train_epoch_start(self) -> None:
        phase = self.phase(self.current_epoch)
        if phase != "attention":
            self.cue_builder.ensure(0 if phase == "segmentation" else 1)

    # ------------------------------------------------------------------------------------------ training
    def _augment(self, images: torch.Tensor | Sequence[torch.Tensor],
                 cues: torch.Tensor | Sequence[torch.Tensor] | None = None):
        """Images (each (3, H, W), any size) and their cues ((H, W) int) -> (B, 3, crop, crop) and (B, crop, crop)
        int64, per image as the authors' readers (:func:`salseg.data.transforms.scale_flip_pad_crop`): a random
        scale in ``scale_range``, a mirror (``hflip``), padding with ``pixel_mean`` / ``pad_cue``, a random
        ``crop_size`` crop. Without a ``crop_size`` the crop is the image's own size."""
        hp = self.hparams
        pad_label = BACKGROUND if hp.pad_cue == "background" else IGNORE
        out_i, out_c = scale_flip_pad_crop(images, cues, hp.crop_size, hp.scale_range, hp.hflip, hp.pixel_mean,
                                           pad_label)
        if len({tuple(t.shape) for t in out_i}) > 1:
            raise ValueError("model.crop_size=null keeps each image's own size, but this batch's images differ in "
                             "size: set model.crop_size (the authors: 321)")
        return torch.cat(out_i), (torch.cat(out_c) if cues is not None else None)

    def training_step(self, batch, batch_idx: int):
        phase = self.phase(self.current_epoch)
        labels = batch["labels"].float()
        cues = self.cue_builder.read(batch["name"]) if phase != "attention" else None
        images, cues = self._augment(batch["image"], cues)
        if phase == "attention":
            cls_loss = multilabel_loss(self.net.pool(self.net.class_maps(images)), labels)  # the seg head idles
            self.log("train/attention_loss", cls_loss, prog_bar=True, batch_size=len(images))
            return cls_loss
        logits, seg = self.net(images)
        seg_loss = F.cross_entropy(seg, cues, ignore_index=IGNORE)
        if self.hparams.cls_on == "segmentation":
            logits = self.net.pool(seg[:, 1:])  # the object classes' segmentation scores, pooled per image
        cls_loss = multilabel_loss(logits, labels)
        loss = seg_loss + self.hparams.lambda_cls * cls_loss
        self.log_dict({"train/seg_loss": seg_loss, "train/cls_loss": cls_loss}, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        head = {id(p) for p in self.net.head_parameters()}
        trunk = [p for p in self.net.parameters() if id(p) not in head and p.requires_grad]  # frozen BN: none
        groups = [{"params": trunk, "lr": hp.lr},
                  {"params": self.net.head_parameters(), "lr": hp.lr * hp.head_lr_mult}]
        groups = [g for g in groups if g["params"]]  # a frozen trunk has none
        optimizer = build_optimizer(hp.optimizer, groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.total_epochs)))
        bounds = np.cumsum([0, hp.attention_epochs, hp.seg_epochs, hp.adapt_epochs]) * per_epoch

        def poly(step: int) -> float:  # (1 - t / T)^power within the current phase
            k = int(np.searchsorted(bounds, step, side="right")) - 1
            k = min(max(k, 0), 2)
            length = max(1, bounds[k + 1] - bounds[k])
            return max(0.0, 1.0 - (step - bounds[k]) / length) ** hp.poly_power

        return stepwise(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, poly))

    # ------------------------------------------------------------------------------------------ evaluation
    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        logits, order = [], []
        for idx, images in size_groups(batch["image"]):  # each image at its own size
            cls, seg = self.net(images)
            logits.append(cls)
            order += idx
            if "class_mask" in batch:
                self.val_scores.update(list(seg.argmax(1)), [batch["class_mask"][i] for i in idx])
        labels = batch["labels"][order]
        self.log("val/cls_loss", multilabel_loss(torch.cat(logits), labels), batch_size=len(order),
                 add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        if int(self.val_scores.confmat.sum()) > 0:
            self.log("val/mIoU", self.val_scores.compute()["mIoU"], prog_bar=True)
        self.val_scores.reset()

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K + 1, H, W) of equal-size images at their size: ``test_fusion`` ``max``, the
        softmax of the logits max-fused over ``test_scales`` (the authors' ``evaluate.py``); ``mean``, the average
        of each scale's softmax; ``test_flip`` adds the mirrored views."""
        hp = self.hparams
        if hp.test_fusion == "max":
            return multiscale_seg_scores(self.net, images, hp.test_scales, hp.test_flip).softmax(1)
        size = tuple(images.shape[-2:])
        probs = []
        for s in hp.test_scales:
            x = at_scale(images, s)
            views = [x, x.flip(-1)] if hp.test_flip else [x]
            for j, v in enumerate(views):
                p = F.interpolate(self.net.seg_scores(v), size=size, mode="bilinear", align_corners=False)
                probs.append((p.flip(-1) if j else p).softmax(1))
        return torch.stack(probs).mean(0)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        """``segmentation`` (and ``segmentation_crf``) per image at its own size: stacked when the batch's images
        share one size, else a list (native sizes; equal-size images still go through the network together)."""
        n = len(batch["image"])
        probs: list = [None] * n
        crf: list = [None] * n
        for idx, images in size_groups(batch["image"]):
            p = self.segment(images)
            labels = None
            if self.hparams.crf:
                from .crf import dense_crf

                # on the image at its own size
                labels = dense_crf(images, p, self.hparams.crf_iterations, self.hparams.crf_kernels)
            for j, i in enumerate(idx):
                probs[i] = p[j]
                crf[i] = labels[j] if labels is not None else None
        out = {"segmentation": batched(probs)}
        if self.hparams.crf:
            out["segmentation_crf"] = batched(crf)
        return out

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return self.test_step(batch, batch_idx, dataloader_idx)

