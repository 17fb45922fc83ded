"""Test-time evaluation of every map a method returns, per test dataset: scores, PR-curve PNG, image grid.

Contract with the methods: ``test_step`` returns ``{map_name: (B,1,h,w) float in [0,1]}`` (native-size batches: a
list of (1,h,w) maps, one per image); the first entry is
the method's primary map (the one the PR curve is drawn from). Each map is resized to its image's ORIGINAL
ground-truth size (bilinear) and quantised to 8 bits as if saved to PNG, so that the numbers logged here equal
``python -m salseg eval`` on saved maps. Metric states are torchmetrics states, reduced across DDP processes at
``compute()``; the evaluation loaders do not repeat samples (see ``SaliencyDataModule``), so N processes score
exactly the images one process would.

Each map is scored by the scorer of its kind (:mod:`salseg.callbacks.scorers`), chosen by the method's declared
map sets (:class:`salseg.methods.base.SalsegMethod`). A method whose ``binary_maps`` names some of its maps (binary
segmentations, e.g. GD saliency's ``X_segmentation``) also gets ``segF`` and ``Jaccard`` for those
(:class:`~salseg.callbacks.scorers.BinaryScorer`), beside the SOD metrics.

A method whose ``semantic_maps`` names some of its outputs (semantic segmentations, e.g. DCSP's) returns
for each either class scores (B, C, h, w) float, upsampled bilinearly to the ORIGINAL ground-truth size before the
argmax, or labels (B, h, w) int64, resized by nearest neighbour; they are scored against ``batch["gt_class"]``
(0 background, c + 1 class c, 255 ignored) with mIoU, pixel accuracy and the IoU of every class
(:class:`~salseg.callbacks.scorers.SemanticScorer`; class names from the method's ``class_names``), instead of the
SOD metrics.
The method's ``run_scores`` (e.g. DCSP's training-cue mIoU) are added to every semantic map's results.

The scores go through Lightning's logging (``pl_module.log_dict`` at the end of the test epoch), so every logger
gets them and ``trainer.test()`` returns them (``test/<dataset>/<metric>``). With a W&B logger (and
``log_images``), each test set also gets ``logger.predictions_per_test_set`` predictions as ``wandb.Image`` with
the ground truth and every saliency map as mask overlays (a segmentation's labels as class masks named after the
method's classes), and one overlaid PR chart of every saliency map.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback

from salseg import plots
from salseg.callbacks.scorers import scorer_for


class MapEvaluation(Callback):
    def __init__(self, out_dir: str | Path, grid_size: int = 6, save_maps: bool = False, log_images: bool = True):
        self.out_dir = Path(out_dir)
        self.grid_size = grid_size
        self.save_maps = save_maps
        self.log_images = log_images
        self.results: dict[str, dict[str, dict[str, float]]] = {}  # map -> dataset -> metric -> value
        self.curves: dict[str, dict[str, Any]] = {}  # map -> dataset -> curves
        self.counts: dict[str, int] = {}
        self.scorers: dict[str, Any] = {}  # map -> its scorer (salseg.callbacks.scorers), for every test dataset
        self.map_names: list[str] = []  # in the order the method returns them: the first is the primary map
        self.dataset_names: list[str] = []
        self.grid: dict[str, dict] = {}  # dataset -> images, gts, names, preds {map name: maps}
        self.n_predictions = 0  # images per test set logged to W&B (set from the W&B logger at test start)

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Every process writes its own share of the saved maps into rank 0's run directory (processes started
        # by SLURM / torchrun, or re-launched for a later ablation variant, may have computed another path).
        self.out_dir = Path(trainer.strategy.broadcast(str(self.out_dir), src=0))

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _names(self, trainer) -> list[str]:
        dm = getattr(trainer, "datamodule", None)
        names = list(getattr(dm, "test_names", []) or [])
        n_loaders = len(trainer.test_dataloaders) if isinstance(trainer.test_dataloaders, (list, tuple)) else 1
        return names if len(names) == n_loaders else [f"test{i}" for i in range(n_loaders)]

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.dataset_names = self._names(trainer)
        self.scorers, self.map_names = {}, []
        self.binary_maps = set(pl_module.binary_maps or ())
        self.semantic_maps = set(pl_module.semantic_maps or ())
        # the segmentation classes, background first (e.g. DCSP's ["background", "aeroplane", ...])
        self.class_names = list(pl_module.class_names or []) if self.semantic_maps else []
        if self.semantic_maps and not self.class_names:
            raise AttributeError(f"{type(pl_module).__name__} returns semantic maps {sorted(self.semantic_maps)} "
                                 f"but has no class_names (background first)")
        self.grid = {}
        self.results, self.curves, self.counts = {}, {}, {}
        # tracking._wandb_logger stamps the W&B logger with logger.predictions_per_test_set
        self.n_predictions = max((getattr(lg, "salseg_predictions", 0) for lg in _wandb_loggers(trainer)),
                                 default=0) if self.log_images else 0

    def _scorer(self, map_name: str, device):
        if map_name not in self.scorers:
            # Create the metric for EVERY test dataset at once: under DDP each process must reduce the same
            # states in the same order, even a process that happened to get no image of some dataset.
            self.map_names.append(map_name)
            self.scorers[map_name] = scorer_for(map_name, self.dataset_names, device, self.binary_maps,
                                                self.semantic_maps, self.class_names)
        return self.scorers[map_name]

    def _agree_on_map_names(self, trainer, device) -> None:
        """Under DDP a process that got no batch at all has seen no map name: take rank 0's list, plus any
        name only another process saw, so every process computes (and so reduces) the same metrics in order."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or trainer.world_size == 1:
            return
        lists: list = [None] * dist.get_world_size()
        dist.all_gather_object(lists, self.map_names)
        for names in lists:
            for name in names:
                self._scorer(name, device)

    # -- per batch -----------------------------------------------------------------------------------
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or not outputs:
            raise TypeError(
                f"{type(pl_module).__name__}.test_step must return {{map_name: (B,1,h,w) tensor in [0,1]}}, "
                f"got {type(outputs).__name__}"
            )
        dataset = self.dataset_names[dataloader_idx]
        self.counts[dataset] = self.counts.get(dataset, 0) + len(batch["gt"])
        for i, (map_name, maps) in enumerate(outputs.items()):
            scorer = self._scorer(map_name, pl_module.device)
            preds, gts = scorer.prepare(maps, batch, dataset, pl_module.device)
            scorer.update(dataset, preds, gts)
            self._collect_grid(dataset, batch, map_name, *scorer.shown(preds, gts), first=i == 0)
            if self.save_maps:
                self._write_maps(map_name, dataset, batch["name"], scorer.saved(preds))

    def _collect_grid(self, dataset: str, batch, map_name: str, preds, gts, first: bool) -> None:
        """The first ``grid_size`` test images of ``dataset`` (or as many as W&B shows) with every map of the run
        (one grid column each); the first map of a batch adds the images and ground truths, the others their maps
        for the same images."""
        g = self.grid.setdefault(dataset, {"images": [], "gts": [], "preds": {}, "names": []})
        column = g["preds"].setdefault(map_name, [])
        keep = max(self.grid_size, self.n_predictions)
        for j in range(len(preds)):
            if len(column) >= keep or (not first and len(column) >= len(g["images"])):
                return
            if first:
                g["images"].append(batch["image"][j].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
                g["gts"].append(np.asarray(gts[j].cpu() if isinstance(gts[j], torch.Tensor) else gts[j]))
                g["names"].append(batch["name"][j])
            column.append(np.asarray(preds[j].cpu() if isinstance(preds[j], torch.Tensor) else preds[j]))

    def _write_maps(self, map_name: str, dataset: str, names, preds) -> None:
        from PIL import Image

        folder = self.out_dir / "maps" / map_name / dataset
        folder.mkdir(parents=True, exist_ok=True)
        for name, p in zip(names, preds):
            Image.fromarray(p.cpu().numpy()).save(folder / f"{name}.png")

    # -- end of test ---------------------------------------------------------------------------------
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._agree_on_map_names(trainer, pl_module.device)
        # Image counts per dataset, summed over processes (each process scored a disjoint share).
        self.counts = {
            ds: int(trainer.strategy.reduce(torch.tensor(float(self.counts.get(ds, 0)), device=pl_module.device),
                                            reduce_op="sum").item())
            for ds in self.dataset_names
        }
        flat: dict[str, float] = {}
        run_scores = {k: float(v) for k, v in (pl_module.run_scores or {}).items()}
        semantic = [sc for sc in self.scorers.values() if sc.kind == "semantic"]
        self._score(semantic, dict.fromkeys(self.dataset_names, run_scores), flat)
        # per-test-set scores of the method itself (GD: its classifiers' top-1 / top-5 errors, paper 002 Table 1)
        method_scores = {ds: dict(pl_module.test_scores(i)) for i, ds in enumerate(self.dataset_names)}
        self._score([sc for sc in self.scorers.values() if sc.kind != "semantic"], method_scores, flat)
        # results in the order the method returns its maps (the primary map first)
        self.results = {m: self.results[m] for m in self.map_names if m in self.results}
        # Through Lightning's logging, so trainer.test() returns them and every logger gets them. Each process
        # holds the same values (compute() reduced the states above): no second reduction.
        pl_module.log_dict(flat, sync_dist=False)
        if not trainer.is_global_zero:
            return
        self._write_plots(trainer)

    def _score(self, scorers: list, extra: dict[str, dict], flat: dict[str, float]) -> None:
        """Each scorer's values on each test set (then ``extra[dataset]``) into ``results``, its PR curves into
        ``curves``, and the logged keys into ``flat``: the primary map as ``test/<dataset>/<metric>``."""
        for scorer in scorers:
            for dataset in self.dataset_names:
                if self.counts[dataset] == 0:
                    raise RuntimeError(f"test set {dataset!r} produced no batch: nothing to score")
                values = scorer.compute(dataset, extra[dataset])  # reduces states across processes
                self.results.setdefault(scorer.map_name, {})[dataset] = values
                if scorer.has_curves:
                    self.curves.setdefault(scorer.map_name, {})[dataset] = scorer.curves(dataset)
                map_name = scorer.map_name
                prefix = f"test/{dataset}" if map_name == self.primary_map else f"test/{dataset}/{map_name}"
                flat.update({f"{prefix}/{k}": float(v) for k, v in values.items()
                             if scorer.logs_nan or not math.isnan(v)})

    @property
    def primary_map(self) -> str | None:
        return self.map_names[0] if self.map_names else None

    def _write_plots(self, trainer) -> None:
        plot_dir = self.out_dir / "plots"
        primary = self.primary_map
        if primary is None:
            return
        # One PR plot per run: every test dataset (and every secondary map) as its own curve.
        curves = {}
        for map_name, per_ds in self.curves.items():
            for dataset, c in per_ds.items():
                label = dataset if map_name == primary else f"{dataset} ({map_name})"
                curves[label] = c["pr"]
        images = {}
        if curves:  # semantic maps have no PR curve
            images["pr_curve"] = plots.pr_curves(curves, plot_dir / "pr_curve.png", title=f"PR curves, {primary} map")
        n = self.grid_size
        for dataset, g in self.grid.items():
            if g["images"]:
                images[f"grid_{dataset}"] = plots.saliency_grid(
                    g["images"][:n], g["gts"][:n], {k: v[:n] for k, v in g["preds"].items()},
                    plot_dir / f"grid_{dataset}.png", names=g["names"][:n],
                    title=f"{dataset}: input / GT / " + " / ".join(g["preds"]),
                )
        if self.log_images:
            for logger in _wandb_loggers(trainer):
                self._log_to_wandb(logger, trainer.global_step, images)

    def _log_to_wandb(self, logger, step: int, images: dict[str, Path]) -> None:
        """The plots as images; per test set its predictions with mask overlays and one overlaid PR chart."""
        import wandb

        for key, path in images.items():
            logger.log_image(key=f"test/{key}", images=[str(path)], step=step)
        saliency = [m for m in self.map_names if m not in self.semantic_maps]  # label maps: no PR curve
        logged = {}
        for dataset in self.dataset_names:
            per_map = {m: self.curves[m][dataset]["pr"] for m in saliency if dataset in self.curves.get(m, {})}
            if per_map:
                logged[f"test/{dataset}/pr_curve"] = wandb.plot.line_series(
                    xs=[list(c["recall"]) for c in per_map.values()],
                    ys=[list(c["precision"]) for c in per_map.values()], keys=list(per_map),
                    title=f"PR curves, {dataset}", xname="recall")
            g = self.grid.get(dataset)
            # overlays need the saliency ground truth: the grid keeps the GT the primary map showed
            if g and self.n_predictions and self.primary_map in saliency:
                logged[f"test/{dataset}/predictions"] = [
                    _overlay(g["images"][j], g["gts"][j], {m: g["preds"][m][j] for m in saliency
                                                           if j < len(g["preds"].get(m, []))}, g["names"][j])
                    for j in range(min(self.n_predictions, len(g["images"])))]
            elif g and self.n_predictions and self.primary_map in self.semantic_maps:
                # a segmentation (DCSP): its GT and label maps as class masks named after the method's classes
                labels = {**dict(enumerate(self.class_names)), 255: "ignore"}
                semantic = [m for m in self.map_names if m in self.semantic_maps]
                logged[f"test/{dataset}/predictions"] = [
                    _overlay(g["images"][j], g["gts"][j], {m: g["preds"][m][j] for m in semantic
                                                           if j < len(g["preds"].get(m, []))},
                             g["names"][j], labels, to_mask=_labels_from_palette)
                    for j in range(min(self.n_predictions, len(g["images"])))]
        if logged:
            logger.experiment.log(logged)


MASK_LABELS = {0: "background", 1: "salient"}


def _binary(arr) -> np.ndarray:
    """A map or ground truth (uint8 0..255 or float 0..1) as a 0/1 mask at half intensity."""
    arr = np.asarray(arr, dtype=np.float32)
    return (arr >= (127.5 if arr.max(initial=0) > 1 else 0.5)).astype(np.uint8)


def _overlay(image: np.ndarray, gt, preds: dict[str, Any], name: str, labels: dict[int, str] = MASK_LABELS,
             to_mask=_binary):
    """One test image at its ground truth's size with the GT and each map as W&B masks: ``to_mask`` turns a map
    into class indices named by ``labels`` (saliency: thresholded at 0.5; a segmentation: its labels). The primary
    map is ``prediction``, further maps ``prediction_<map>``."""
    import wandb
    from PIL import Image

    gt_mask = to_mask(gt)
    h, w = gt_mask.shape[:2]
    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    masks = {"ground_truth": {"mask_data": gt_mask, "class_labels": labels}}
    for i, (map_name, pred) in enumerate(preds.items()):
        masks["prediction" if i == 0 else f"prediction_{map_name}"] = {"mask_data": to_mask(pred),
                                                                       "class_labels": labels}
    return wandb.Image(pixels, masks=masks, caption=str(name))


def _labels_from_palette(rgb: np.ndarray) -> np.ndarray:
    """Invert :func:`salseg.plots.label_palette` (the grid keeps label maps as its colours): (H, W, 3) -> labels."""
    palette = plots.label_palette().astype(np.int64)
    codes = palette[:, 0] << 16 | palette[:, 1] << 8 | palette[:, 2]  # one colour per label (the palette's design)
    order = np.argsort(codes)
    rgb = np.asarray(rgb, dtype=np.int64)
    found = np.searchsorted(codes[order], rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    return order[np.clip(found, 0, len(order) - 1)].astype(np.uint8)


def _wandb_loggers(trainer) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

