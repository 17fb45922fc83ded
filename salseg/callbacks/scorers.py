"""One scorer per kind of map a method returns, each holding its torchmetrics states for every test set.

* :class:`SaliencyScorer`: a saliency map (B, 1, h, w) in [0, 1] -- the SOD metrics and the PR curve.
* :class:`BinaryScorer`: a binary segmentation the method lists in ``binary_maps`` -- the SOD metrics, plus
  ``segF`` and ``Jaccard``.
* :class:`SemanticScorer`: a semantic segmentation the method lists in ``semantic_maps`` -- mIoU, pixel accuracy
  and the IoU of every class against ``batch["gt_class"]``, instead of the SOD metrics.

:func:`scorer_for` picks the scorer from the method's declared map sets (:class:`salseg.methods.base.SalsegMethod`).
Every scorer turns a batch of maps into what it scores at each image's ORIGINAL ground-truth size, and says what
the image grid shows and what ``save_maps`` writes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F

from salseg import plots
from salseg.metrics import SODMetrics
from salseg.metrics.segmentation import BinarySegmentationScores, SemanticSegmentationScores


def to_gt_resolution(maps: torch.Tensor, gts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Resize each (1,h,w) map to its GT's (H,W) and quantise to uint8 (the PNG a toolbox would read).

    The maps stay on their device; when all GTs share one size, a (B,1,h,w) batch is resized in one call (the same
    per-image result), and the SOD metrics then score the batch at once on a GPU (``SODMetrics(engine="auto")``).
    """
    sizes = {tuple(g.shape[-2:]) for g in gts}
    if isinstance(maps, torch.Tensor) and len(sizes) == 1 and len(maps) == len(gts):
        m, size = maps.float(), sizes.pop()
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        return list((m[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).unbind(0))
    out = []
    for m, gt in zip(maps, gts):
        m = m.float()
        if m.shape[-2:] != gt.shape[-2:]:
            m = F.interpolate(m[None], size=tuple(gt.shape[-2:]), mode="bilinear", align_corners=False)[0]
        out.append((m[0].clamp(0, 1) * 255).round().to(torch.uint8))
    return out


def labels_at_gt_resolution(outputs: torch.Tensor, gts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Semantic outputs -> one (H, W) int64 label map per image at its GT's size: class scores (B, C, h, w) are
    upsampled bilinearly and then arg-maxed; labels (B, h, w) are resized by nearest neighbour."""
    out = []
    for o, gt in zip(outputs, gts):
        size = tuple(gt.shape[-2:])
        if o.is_floating_point():
            if o.ndim != 3:
                raise ValueError(f"semantic scores must be (B, C, h, w), got an item of shape {tuple(o.shape)}")
            if o.shape[-2:] != size:
                o = F.interpolate(o[None].float(), size=size, mode="bilinear", align_corners=False)[0]
            out.append(o.argmax(0))
        else:
            if o.ndim != 2:
                raise ValueError(f"semantic labels must be (B, h, w) integers, got an item of shape {tuple(o.shape)}")
            if o.shape != size:
                o = F.interpolate(o[None, None].float(), size=size, mode="nearest")[0, 0]
            out.append(o.long())
    return out


class SaliencyScorer:
    """SOD metrics and PR curves of one saliency map on every test set."""

    kind = "saliency"
    has_curves = True  # a PR curve per test set (curves.json, the PR plot)
    logs_nan = True  # every value is logged, NaN included

    def __init__(self, map_name: str, datasets: Sequence[str], device):
        self.map_name = map_name
        self.sod = {ds: SODMetrics().to(device) for ds in datasets}

    def prepare(self, maps, batch, dataset: str, device) -> tuple[list, list]:
        """(B,1,h,w) maps, or a list of (1,h,w) maps (native-size batches) -> uint8 maps at their GTs' sizes."""
        gts = [g.to(device) for g in batch["gt"]]
        name = self.map_name
        if isinstance(maps, (list, tuple)):  # native-size batches: one (1, h, w) map per image, own size
            if len(maps) != len(gts) or any(m.ndim != 3 or m.shape[0] != 1 for m in maps):
                raise ValueError(f"test_step map {name!r}: expected {len(gts)} maps of shape (1,h,w), got "
                                 f"{[tuple(m.shape) for m in maps]}")
            maps = [m.detach() for m in maps]
        elif maps.ndim != 4 or maps.shape[1] != 1 or maps.shape[0] != len(gts):
            raise ValueError(f"test_step map {name!r}: expected shape (B=={len(gts)},1,h,w), got {tuple(maps.shape)}")
        else:
            maps = maps.detach()
        return to_gt_resolution(maps, gts), gts

    def update(self, dataset: str, preds: list, gts: list) -> None:
        self.sod[dataset].update(preds, gts)

    def shown(self, preds: list, gts: list) -> tuple[list, list]:
        """What the image grid shows for these maps and ground truths."""
        return preds, gts

    def saved(self, preds: list) -> list:
        """What ``save_maps`` writes as 8-bit PNGs."""
        return preds

    def compute(self, dataset: str, extra: dict) -> dict:
        """The scores on ``dataset`` (reduced across processes), then ``extra`` (the method's own test scores)."""
        values = self.sod[dataset].compute()
        values.update(extra)
        return values

    def curves(self, dataset: str) -> dict:
        return self.sod[dataset].curves()


class BinaryScorer(SaliencyScorer):
    """A binary segmentation: the SOD metrics, then segF and Jaccard (:class:`BinarySegmentationScores`)."""

    kind = "binary"

    def __init__(self, map_name: str, datasets: Sequence[str], device):
        super().__init__(map_name, datasets, device)
        self.segmentation = {ds: BinarySegmentationScores().to(device) for ds in datasets}

    def update(self, dataset: str, preds: list, gts: list) -> None:
        super().update(dataset, preds, gts)
        self.segmentation[dataset].update(preds, gts)

    def compute(self, dataset: str, extra: dict) -> dict:
        values = super().compute(dataset, extra)
        values.update({k: float(v) for k, v in self.segmentation[dataset].compute().items()})
        return values


class SemanticScorer:
    """A semantic segmentation (class scores (B, C, h, w) or labels (B, h, w)) against ``gt_class`` (0 background,
    c + 1 class c, 255 ignored): mIoU, pixel accuracy and per-class IoU (:class:`SemanticSegmentationScores`)."""

    kind = "semantic"
    has_curves = False
    logs_nan = False  # NaN: a class never seen

    def __init__(self, map_name: str, datasets: Sequence[str], device, class_names: Sequence[str]):
        self.map_name = map_name
        self.scores = {ds: SemanticSegmentationScores(class_names).to(device) for ds in datasets}

    def prepare(self, outputs, batch, dataset: str, device) -> tuple[list, list]:
        name = self.map_name
        if "gt_class" not in batch:
            raise KeyError(f"semantic map {name!r}: the test set {dataset!r} gives no 'gt_class' (pixel class "
                           f"labels); semantic segmentation is scored on VOC, COCO or shapes")
        gts = [g.to(device) for g in batch["gt_class"]]
        if len(outputs) != len(gts):
            raise ValueError(f"test_step semantic map {name!r}: {len(outputs)} outputs for {len(gts)} images")
        # a list: one map per image, each at its own size (native-size batches)
        return labels_at_gt_resolution([o.detach() for o in outputs], gts), gts

    def update(self, dataset: str, labels: list, gts: list) -> None:
        self.scores[dataset].update(labels, gts)

    def shown(self, labels: list, gts: list) -> tuple[list, list]:
        palette = plots.label_palette()
        return [palette[p.cpu().numpy()] for p in labels], [palette[g.cpu().numpy()] for g in gts]

    def saved(self, labels: list) -> list:
        return [p.to(torch.uint8) for p in labels]

    def compute(self, dataset: str, extra: dict) -> dict:
        """The scores on ``dataset`` as floats, then ``extra`` (the method's run scores)."""
        values = {k: float(v) for k, v in self.scores[dataset].compute().items()}
        values.update(extra)
        return values


def scorer_for(map_name: str, datasets: Sequence[str], device, binary_maps: Collection[str] = (),
               semantic_maps: Collection[str] = (), class_names: Sequence[str] = ()):
    """The scorer of ``map_name`` by the method's declared map sets: semantic, binary, or else saliency."""
    if map_name in semantic_maps:
        return SemanticScorer(map_name, datasets, device, class_names)
    if map_name in binary_maps:
        return BinaryScorer(map_name, datasets, device)
    return SaliencyScorer(map_name, datasets, device)
