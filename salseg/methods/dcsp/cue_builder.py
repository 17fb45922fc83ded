"""The cues DCSP trains on (paper 004; README "DCSP"): made once per round, cached on disk, read by training.

:class:`CueBuilder` owns everything around the cues of one run: where they live (``<run>/cues/round<k>/`` or
``cue_dir``), the settings a round's cues depend on (fingerprinted by :class:`.cache.CueCache`, so a cache made
otherwise is refused), the loader over the training images (split over processes under DDP, each image at its own
size), the cues themselves (round 0: attention + hierarchical saliency, :mod:`.cues`; round 1: the segmentation
network's own predictions), and their mIoU against the training ground truth (``train_cues_mIoU`` /
``train_adapted_cues_mIoU`` in the method's ``run_scores``; never used for training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salseg.metrics.segmentation import SemanticSegmentationScores

from .attention import multiscale_attention
from .cache import CueCache
from .cues import IGNORE, adapted_cues, hierarchical_saliency, make_cues
from .network import multiscale_seg_scores

if TYPE_CHECKING:
    from .module import DCSP


class CueBuilder:
    """The cues of ``method``'s training images: it reads the method's hyperparameters, network, device and
    trainer, and writes the cues' scores into ``method.run_scores``."""

    def __init__(self, method: DCSP):
        self.method = method
        self.cache: CueCache | None = None
        self.round: int | None = None

    def root(self, round_: int) -> Path:
        m = self.method
        base = Path(m.hparams.cue_dir) if m.hparams.cue_dir else Path(m.trainer.default_root_dir) / "cues"
        return base / f"round{round_}"

    def settings(self, round_: int) -> dict:
        """What the cues of a round depend on (besides this run's weights): a cache made otherwise is stale."""
        hp = self.method.hparams
        dm = self.method.trainer.datamodule
        spec = dm.train_spec
        settings = {"round": round_, "train": {"dataset": spec.dataset, **spec.kwargs}, "image_size": dm.image_size,
                    "num_classes": hp.num_classes, "attention_scales": list(hp.attention_scales)}
        if round_ == 0:
            settings.update(cue_source=hp.cue_source, background_threshold=hp.background_threshold)
            if hp.cue_source != "attention":
                ckpt = Path(str(hp.saliency_checkpoint)).expanduser()
                settings.update(saliency_checkpoint=str(ckpt.resolve()),
                                saliency_mtime=ckpt.stat().st_mtime if ckpt.is_file() else None,
                                saliency_passes=int(hp.saliency_passes),
                                saliency_thresholds=list(hp.saliency_thresholds)[: int(hp.saliency_passes) - 1],
                                hide_fill=hp.hide_fill)
                if hp.hide_fill == "dataset_mean":
                    settings["pixel_mean"] = [round(float(v), 6) for v in hp.pixel_mean]
        return settings

    def ensure(self, round_: int) -> None:
        """The cues of ``round_`` on disk and open for reading: made (or resumed) unless a complete cache is there."""
        if self.round == round_ and self.cache is not None:
            return
        strategy = self.method.trainer.strategy
        cache = CueCache(self.root(round_), self.settings(round_))
        if not cache.complete:
            self.build(cache, round_)
            strategy.barrier()  # rank 0 has written the complete manifest: every process may now read it
            cache = CueCache(self.root(round_), self.settings(round_))
        self.cache, self.round = cache, round_

    def read(self, names: Sequence[str]) -> list[torch.Tensor]:
        return [torch.from_numpy(self.cache.read(n).astype(np.int64)) for n in names]

    @torch.no_grad()
    def build(self, cache: CueCache, round_: int) -> None:
        from salseg.data.collate import collate_samples
        from salseg.data.datamodule import UnpaddedDistributedSampler

        from .module import size_groups

        m = self.method
        hp, trainer = m.hparams, m.trainer
        strategy, dm = trainer.strategy, trainer.datamodule
        dataset = dm.train_dataset
        names = list(dataset.names)
        if trainer.is_global_zero:
            cache.begin(names)
        strategy.barrier()
        sampler = None
        if trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(dataset, num_replicas=trainer.world_size,
                                                 rank=trainer.global_rank, shuffle=False)
        loader = DataLoader(dataset, batch_size=hp.cue_batch_size, shuffle=False, sampler=sampler,
                            num_workers=dm.num_workers, collate_fn=collate_samples)
        source = None
        if round_ == 0 and hp.cue_source != "attention":
            from .saliency_source import SaliencySource

            source = SaliencySource(hp.saliency_checkpoint, m.device)
        scores = SemanticSegmentationScores(m.class_names).to(m.device)
        was_training = m.net.training
        m.net.eval()
        silent = 0
        what = "cues" if round_ == 0 else "adapted cues"
        print(f"[salseg] dcsp: making the {what} of {len(dataset)} training images -> {cache.root}")
        for batch in _progress(loader, what, enabled=trainer.progress_bar_callback is not None):
            batch_names, labels = batch["name"], batch["labels"].to(m.device)
            on_disk = all(cache.path(n).is_file() for n in batch_names)
            if on_disk:  # a resumed build: these cues were made before the interruption (still scored below)
                cues = [torch.from_numpy(np.array(Image.open(cache.path(n)))).long().to(m.device)
                        for n in batch_names]
            else:
                cues = [None] * len(batch_names)
                for idx, images in size_groups(batch["image"]):  # each image at its own size
                    images, lab = images.to(m.device), labels[idx]
                    if round_ == 0:
                        made, n_silent = self.round0(images, lab, [batch_names[i] for i in idx], source)
                        silent += n_silent
                    else:
                        made = adapted_cues(multiscale_seg_scores(m.net, images, hp.attention_scales), lab)
                    for j, i in enumerate(idx):
                        cues[i] = made[j]
                for name, cue in zip(batch_names, cues):
                    cache.write(name, cue.cpu().numpy().astype(np.uint8))
            n_images = len(batch_names)
            truth = batch.get("class_mask")
            has = batch.get("has_mask", torch.ones(n_images, dtype=torch.bool))
            if truth is not None and bool(has.any()):
                keep = [i for i in range(n_images) if bool(has[i])]
                # a pixel the cues leave unlabelled (IGNORE: saliency-only cues of a several-class image) is not
                # trained on, so it is not scored either
                truths = [torch.where(cues[i] == IGNORE, IGNORE, truth[i].to(m.device)) for i in keep]
                scores.update([torch.where(cues[i] == IGNORE, 0, cues[i]) for i in keep], truths)
        m.net.train(was_training)
        m.train(m.training)  # frozen batch norm stays frozen
        strategy.barrier()
        if trainer.is_global_zero:
            cache.finish()
        if int(scores.confmat.sum()) > 0 or trainer.world_size > 1:
            try:
                miou = float(scores.compute()["mIoU"])
            except RuntimeError:  # no process had pixel labels
                miou = float("nan")
            key = "train_cues_mIoU" if round_ == 0 else "train_adapted_cues_mIoU"
            m.run_scores[key] = miou
            print(f"[salseg] dcsp: {what}: mIoU against the training ground truth {miou:.4f}"
                  + (f"; {silent} present classes had no attention" if silent else ""))

    def round0(self, images: torch.Tensor, labels: torch.Tensor, names: list[str], source) -> tuple:
        """(cues (B, H, W), the number of silent classes) of equal-size images: attention + hierarchical saliency."""
        hp, net = self.method.hparams, self.method.net
        attention = (multiscale_attention(net, images, hp.attention_scales) if hp.cue_source != "saliency"
                     else images.new_zeros(len(images), labels.shape[1], *images.shape[-2:]))
        saliency = (hierarchical_saliency(source, images, hp.saliency_thresholds, hp.saliency_passes, hp.hide_fill,
                                          hp.pixel_mean)
                    if source is not None else torch.zeros_like(images[:, :1]))
        result = make_cues(attention, saliency, labels, hp.background_threshold, names, hp.cue_source)
        return result.cues, len(result.silent)


def _progress(iterable, what: str, enabled: bool = True):
    """A progress bar over the cue batches, shown when the trainer shows its own."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, desc=f"dcsp {what}", leave=False, disable=not enabled)
