"""``MEnet``: the LightningModule of paper 003 (Cai et al., "MEnet: A Metric Expression Network for Salient
Object Segmentation"), trained from scratch.

Default configuration (``configs/model/menet.yaml``): the authors' released network (github.com/scutDACIM/MEnet,
``model/train.prototxt``; see :mod:`salseg.methods.menet.network`): 224 x 224 input, depth 6 (13 scales),
pre-activation residual units, width 32 doubling to 1024 channels, f = tanh(BN(conv)) with C = 16:
184,959,166 parameters, the count the prototxt implies (measured with
:func:`salseg.methods.menet.network.describe`; the paper does not state one). ``architecture: paper_text`` is
salseg's earlier reading of the paper text (4-conv blocks to 1 x 1). Training (authors' code): SGD lr 0.1,
momentum 0.9, weight decay 1e-8, batch 5, lr x0.1 at 60k / 90k / 100k iterations, 110k iterations; loss as
their ``layers/pyloss.py`` (:mod:`salseg.methods.menet.loss`: mining ranks by L_ML, mines L_ML only, CE over all
pixels, both over the full pixel count; means and normalisation constant in the backward).

Input sides: a multiple of 2^(depth-1) (224 = 7 * 32 for depth 6, any power of two >= 2^(depth-1)); the model
is built for one side, ``image_size``, which must equal the data's (the compression to 1 x 1 has a fixed
kernel). ``test_step`` returns ``{"ce": CE foreground probability, "metric": metric map}`` (the PR curves use
the CE map, Sec. III-C); the CE-only variants return only ``ce`` (their f is not trained as a metric space).
``metric_readout``: ``authors`` (default; their test code, ``layers/pyloss.py``: squared distance to the mean of
CE-background border pixels, :func:`~salseg.methods.menet.saliency.authors_metric_saliency`) or ``paper`` (Eq. 5
as written: the distance to the mean over all CE-background pixels). ``primary_map``: which map comes first (the
one the run is scored and compared by, and the one DCSP takes as its saliency): ``ce`` (default) or ``metric``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from salseg.methods.base import SalsegMethod
from salseg.optim import OPTIMIZERS, build_optimizer, multistep, one_cycle, stepwise
from salseg.validation import one_of

from .loss import METRIC_GRADS, MINING_LOSSES, MINING_SCORES, VARIANTS, MEnetLoss
from .network import ARCHITECTURES, UPSAMPLES, MEnetNetwork, describe
from .saliency import authors_metric_saliency, ce_saliency, metric_saliency

__all__ = ["MEnet"]

METRIC_READOUTS = ("authors", "paper")
PRIMARY_MAPS = ("ce", "metric")
SCHEDULES = ("multistep", "onecycle")


class MEnet(SalsegMethod):
    """Keyword arguments = the keys of ``configs/model/menet.yaml`` (see :class:`MEnetNetwork` for the network
    ones, :class:`~salseg.methods.menet.loss.MEnetLoss` for the loss ones).

    ``variant``: ``menet`` (L_ML + lambda L_CE), ``ce_only`` (multi-scale bundle, L_CE only), ``ce_plain`` (no
    bundle, L_CE only) -- paper Table III.
    """

    trainable = True

    def __init__(
        self,
        image_size: int = 224,
        depth: int = 6,
        architecture: str = "authors",
        width: int = 32,
        max_width: int = 1024,
        feature_dim: int = 16,
        scale_channels: int = 1,
        head_kernel: int = 3,
        normalize_input: bool = True,
        bundle_norm: bool = False,
        ce_from: str = "bundle",
        upsample: str = "nearest",
        variant: str = "menet",
        lambda_ce: float = 1.0,
        normalize_features: bool = True,
        mining: bool = True,
        mining_score: str = "ml",
        mining_ratio: float = 1.0,
        mining_loss: str = "authors",
        metric_grad: str = "authors",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-8,
        milestones: Sequence[int] = (60000, 90000, 100000),
        gamma: float = 0.1,
        schedule_batch: int | None = None,
        optimizer: str = "sgd",
        schedule: str = "multistep",
        warmup: float = 0.15,
        channels_last: bool = True,
        metric_readout: str = "authors",
        primary_map: str = "ce",
        encoder: str = "authors",
        encoder_weights: str | None = "lite0_imagenet",
    ) -> None:
        super().__init__()
        one_of("model.variant", variant, VARIANTS)
        one_of("model.mining_score", mining_score, MINING_SCORES)
        one_of("model.mining_loss", mining_loss, MINING_LOSSES)
        one_of("model.metric_grad", metric_grad, METRIC_GRADS)
        one_of("model.architecture", architecture, ARCHITECTURES)
        one_of("model.upsample", upsample, UPSAMPLES)
        one_of("model.optimizer", optimizer, OPTIMIZERS)
        one_of("model.schedule", schedule, SCHEDULES)
        one_of("model.metric_readout", metric_readout, METRIC_READOUTS)
        one_of("model.primary_map", primary_map, PRIMARY_MAPS)
        if primary_map == "metric" and variant != "menet":
            raise ValueError(f"model.primary_map 'metric' needs variant 'menet' (the {variant!r} variant trains no "
                             f"metric space and returns only the 'ce' map)")
        if not 0 < float(warmup) < 1:
            raise ValueError(f"model.warmup must be a fraction in (0, 1) of the run, got {warmup!r}")
        milestones = [int(m) for m in milestones]
        self.save_hyperparameters()
        self.hparams.milestones = milestones
        self.net = MEnetNetwork(image_size=image_size, depth=depth, width=width, max_width=max_width,
                                feature_dim=feature_dim, scale_channels=scale_channels, head_kernel=head_kernel,
                                multiscale=variant != "ce_plain", normalize_input=normalize_input,
                                bundle_norm=bundle_norm, ce_from=ce_from, architecture=architecture,
                                upsample=upsample, encoder=encoder, encoder_weights=encoder_weights)
        self.criterion = MEnetLoss(variant=variant, lambda_ce=lambda_ce, normalize=normalize_features,
                                   mining=mining, mining_score=mining_score, mining_ratio=mining_ratio,
                                   mining_loss=mining_loss, metric_grad=metric_grad)
        if channels_last:  # NHWC: oneDNN's and cuDNN's fast layout (measured ~17% per CPU training step, 64 px)
            self.net = self.net.to(memory_format=torch.channels_last)

    def describe(self) -> dict:
        """Parameter count, layer counts, number of scales (:func:`~salseg.methods.menet.network.describe`)."""
        return describe(self.net)

    def forward(self, images: torch.Tensor) -> dict:
        return self.net(self._layout(images))

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    # ------------------------------------------------------------------------------------------ maps
    def saliency_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(self._layout(images))
        p_fg = ce_saliency(out["logits"])
        maps = {"ce": p_fg}
        if self.criterion.uses_metric:
            readout = authors_metric_saliency if self.hparams.get("metric_readout", "authors") == "authors" \
                else metric_saliency
            maps["metric"] = readout(out["f"], p_fg, normalize=self.hparams.normalize_features)
            if self.hparams.get("primary_map", "ce") == "metric":
                maps = {"metric": maps["metric"], "ce": p_fg}
        return maps

    # ------------------------------------------------------------------------------------------ Lightning
    def _loss(self, batch) -> tuple[dict, dict]:
        out = self.net(self._layout(batch["image"]))
        return out, self.criterion(out["logits"], out["f"], batch["mask"])

    def training_step(self, batch, batch_idx: int):
        _, losses = self._loss(batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log("train/L_ML", losses["L_ML"], batch_size=bs)
        self.log("train/L_CE", losses["L_CE"], batch_size=bs)
        return losses["loss"]

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        out, losses = self._loss(batch)
        mae = (ce_saliency(out["logits"]) - batch["mask"].float()).abs().flatten(1).mean(1).mean()
        bs = batch["image"].shape[0]
        kw = {"on_epoch": True, "sync_dist": True, "batch_size": bs}
        self.log("val/loss", losses["loss"], prog_bar=True, **kw)
        self.log("val/MAE", mae, prog_bar=True, **kw)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return self.saliency_maps(batch["image"])

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        return self.saliency_maps(batch["image"])

    def configure_optimizers(self):
        """The paper's SGD + step decay (``milestones`` in iterations of ``schedule_batch`` images); or Adam,
        and/or a one-cycle schedule over the run (``warmup`` = rising fraction), for short CPU runs from scratch
        (``menet_shapes``)."""
        hp = self.hparams
        opt = build_optimizer(hp.optimizer, self.parameters(), lr=hp.lr, momentum=hp.momentum,
                              weight_decay=hp.weight_decay)
        if hp.schedule == "multistep":
            # milestones are iterations of schedule_batch images on one process (the authors': 5), converted to
            # this run's optimiser steps so that devices x batch changes nothing in images seen (salseg.schedules)
            sched = multistep(opt, hp.milestones, hp.gamma, self, hp.get("schedule_batch"))
        else:
            sched = one_cycle(opt, self.trainer.estimated_stepping_batches, hp.lr, hp.warmup)
        return stepwise(opt, sched)
