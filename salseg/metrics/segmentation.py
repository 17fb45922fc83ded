"""Scores of segmentations: binary (paper 002) and semantic (paper 004: mIoU and per-class IoU).

Binary segmentations (paper 002 Sec. 5: "a single F_beta value for each binary segmentation map").

``BinarySegmentationScores`` (a torchmetrics ``Metric``) reports the mean over images of

* ``segF``: F_beta = (1 + beta^2) P R / (beta^2 P + R), beta^2 = 0.3 as the paper (and Cheng et al.) use;
* ``Jaccard``: |pred & gt| / |pred | gt|.

Conventions: P = 0 for an empty prediction and R = 0 for an empty ground truth, so F = 0 unless both are empty;
an image whose prediction and ground truth are both empty scores 1 on both (nothing to find, nothing found).
Images may differ in size: ``update`` takes lists of (H, W) masks, or (B, H, W) / (B, 1, H, W) tensors; preds
and gts are bool, uint8 (> 128 is foreground, as a saved PNG) or float (> 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassJaccardIndex

SEGMENTATION_KEYS = ("segF", "Jaccard")
SEMANTIC_KEYS = ("mIoU", "pixAcc")


def _binary(x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{what}: expected an (H, W) mask, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool:
        return x
    if x.dtype == torch.uint8:
        return x > 128
    return x > 0.5


class BinarySegmentationScores(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, beta2: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        if beta2 <= 0:
            raise ValueError(f"beta2 must be > 0, got {beta2}")
        self.beta2 = float(beta2)
        # Sums over images and the image count (float64, reduced by summing): exact under DDP, and a process
        # that scored no image contributes zeros (a "cat" state of per-image scores would hang there).
        for name in ("sum_f", "sum_jaccard", "n_images"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Tensor] | Tensor, target: Sequence[Tensor] | Tensor) -> None:
        if len(preds) != len(target):
            raise ValueError(f"{len(preds)} predictions and {len(target)} ground truths")
        for i, (p, t) in enumerate(zip(preds, target)):
            p, t = _binary(p, f"prediction {i}"), _binary(t, f"ground truth {i}").to(p.device)
            if p.shape != t.shape:
                raise ValueError(f"image {i}: prediction {tuple(p.shape)} and ground truth {tuple(t.shape)} differ")
            tp = float((p & t).sum())
            fp, fn = float(p.sum()) - tp, float(t.sum()) - tp
            f, jaccard = f_beta_and_jaccard(tp, fp, fn, self.beta2)
            self.sum_f += f
            self.sum_jaccard += jaccard
            self.n_images += 1

    def compute(self) -> dict[str, Tensor]:
        if self.n_images == 0:
            raise RuntimeError("BinarySegmentationScores: no image was scored")
        return {"segF": self.sum_f / self.n_images, "Jaccard": self.sum_jaccard / self.n_images}


def f_beta_and_jaccard(tp: float, fp: float, fn: float, beta2: float = 0.3) -> tuple[float, float]:
    """One image's (F_beta, Jaccard) from its pixel counts, with the conventions of the module docstring."""
    if tp + fp + fn == 0:
        return 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    denom = beta2 * precision + recall
    f = (1 + beta2) * precision * recall / denom if denom > 0 else 0.0
    return f, tp / (tp + fp + fn)


class SemanticSegmentationScores(MulticlassJaccardIndex):
    """Semantic segmentation scores from one confusion matrix (torchmetrics' ``MulticlassJaccardIndex``, whose
    ``confmat`` state is summed across processes, so N processes give the numbers of one).

    ``update(preds, target)`` takes lists of (H, W) integer label maps (sizes may differ between images) or
    (B, H, W) tensors; target pixels equal to ``ignore_index`` (VOC's 255) are not counted. ``compute()`` returns
    ``mIoU`` (the mean IoU over the classes that occur in the ground truth or the predictions: a class that is in
    neither has no IoU and is left out, as the VOC toolkit does), ``pixAcc`` and ``IoU_<class name>`` per class.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255, **kwargs):
        self.class_names = [str(c) for c in class_names]
        super().__init__(num_classes=len(self.class_names), average="none", ignore_index=ignore_index,
                         validate_args=False, **kwargs)

    def update(self, preds: Sequence[Tensor] | Tensor, target: Sequence[Tensor] | Tensor) -> None:
        if len(preds) != len(target):
            raise ValueError(f"{len(preds)} predictions and {len(target)} ground truths")
        for i, (p, t) in enumerate(zip(preds, target)):
            p, t = torch.as_tensor(p).long(), torch.as_tensor(t).long().to(p.device)
            if p.shape != t.shape:
                raise ValueError(f"image {i}: prediction {tuple(p.shape)} and ground truth {tuple(t.shape)} differ")
            n, valid = self.num_classes, t != self.ignore_index
            bad = torch.cat([p[(p < 0) | (p >= n)], t[valid & ((t < 0) | (t >= n))]])
            if bad.numel():
                raise ValueError(f"image {i}: labels outside 0..{n - 1} (ignore {self.ignore_index}): "
                                 f"{sorted(set(bad.tolist()))[:10]}")
            super().update(p[None], t[None])

    def compute(self) -> dict[str, Tensor]:
        confmat = self.confmat.double()
        if confmat.sum() == 0:
            raise RuntimeError("SemanticSegmentationScores: no labelled pixel was scored")
        tp = confmat.diag()
        union = confmat.sum(0) + confmat.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        out = {"mIoU": iou.nanmean(), "pixAcc": tp.sum() / confmat.sum()}
        out.update({f"IoU_{name}": iou[c] for c, name in enumerate(self.class_names)})
        return out
