"""Salient-object-detection metrics as torchmetrics ``Metric`` classes.

Every state is a float64 SUM (``dist_reduce_fx="sum"``) together with an image count, so the states of N
processes (DDP) or of N metric objects (``merge_state``) add up to exactly the state one object would hold
after seeing all images; the final averages are formed only in ``compute()``. The per-image math lives in
:mod:`salseg.metrics.functional`; conventions follow PySODMetrics 1.6.x (see that module).

Inputs to ``update(preds, gts)``: a (B, H, W) or (B, 1, H, W) tensor, or a list of (H, W) maps whose sizes may
differ between images; per image ``pred`` is uint8 (0..255) or float in [0, 1] and ``gt`` is uint8 (> 128),
bool or float (> 0.5), of the same size as its prediction (resize first). Tensors may live on a GPU; the
per-image work runs on the CPU (see :mod:`salseg.metrics.functional` for why) and the sums are added to the
states on the metric's own device.

Curve order: index ``i`` of every curve is the threshold ``(255 - i) / 255`` (descending; the last entry is
"everything is foreground").

Differences from the MATLAB toolbox (sal_eval_toolbox, performCalcu.m), none of which shows on SOD-300 / Amulet,
where the per-image MAE, S-measure and adaptive F agree to ~1e-13 and maxF_pr to the last bits:
- MAE, S-measure and adaptive F use the PySOD preparation (min-max normalised map). MATLAB feeds the S-measure
  and the adaptive F the map divided by its max only, which is the same map whenever its min is 0 (all 300
  Amulet maps), and its MAE skips constant maps (NaN) where PySOD scores them unnormalised.
- MATLAB divides the sum of adaptive F over ALL images by the number of non-zero maps; here it is the plain mean.
- GT: ``> 128`` (PySOD) versus MATLAB's ``im2double(gt) >= 0.1``: the same for {0, 255} masks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from salseg.metrics import METRIC_KEYS
from salseg.metrics import functional as F


class StatsBatch(list):
    """Per-image statistics (dicts from :func:`functional.image_statistics`) already computed, e.g. by the
    folder evaluator's worker processes. ``metric.update(StatsBatch([...]))`` adds them to the states."""


class _IncomingState(dict):
    """States of another metric object, to be added by ``merge_state``."""


def iter_pairs(preds, gts) -> list[tuple[Any, Any]]:
    """(pred, gt) pairs from batched tensors or lists of per-image maps."""
    p_list, g_list = _as_list(preds, "preds"), _as_list(gts, "gts")
    if len(p_list) != len(g_list):
        raise ValueError(f"got {len(p_list)} predictions but {len(g_list)} ground truths")
    return list(zip(p_list, g_list))


def _as_list(x, name: str) -> list:
    if isinstance(x, (list, tuple)):
        return list(x)
    t = torch.as_tensor(x)
    if t.ndim == 2:
        return [t]
    if t.ndim == 3:
        return list(t.unbind(0))
    if t.ndim == 4 and t.shape[1] == 1:
        return list(t[:, 0].unbind(0))
    raise ValueError(f"{name}: expected (H,W), (B,H,W), (B,1,H,W) or a list of (H,W) maps, got {tuple(t.shape)}")


def _zeros(n: int | None = None) -> Tensor:
    return torch.zeros((() if n is None else (n,)), dtype=torch.float64)


class _SODMetric(Metric):
    """Shared plumbing: per-image statistics in, float64 sums out."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    groups: tuple[str, ...] = ()

    def _stat_kwargs(self) -> dict[str, Any]:
        return {}

    def update(self, preds, gts=None) -> None:  # noqa: D102 (documented in the module docstring)
        if isinstance(preds, _IncomingState):
            for name, value in preds.items():
                setattr(self, name, getattr(self, name) + value.to(self.device))
            return
        if isinstance(preds, StatsBatch):
            stats = preds
        else:
            kwargs = self._stat_kwargs()
            stats = [F.image_statistics(p, g, self.groups, **kwargs) for p, g in iter_pairs(preds, gts)]
        if stats:
            self._add(stats)

    def update_from_stats(self, stats: Iterable[dict[str, Tensor]]) -> None:
        """Add precomputed per-image statistics (see :class:`StatsBatch`)."""
        self.update(StatsBatch(stats))

    def merge_state(self, incoming_state: dict[str, Tensor] | Metric) -> None:
        """Add another metric's states (sums and counts) to this one's, e.g. from another data shard.

        Goes through ``update`` so that torchmetrics' bookkeeping (update count, cached result) stays right.
        """
        if isinstance(incoming_state, Metric):
            if not isinstance(incoming_state, type(self)):
                raise ValueError(f"cannot merge a {type(incoming_state).__name__} into a {type(self).__name__}")
            incoming_state = incoming_state.metric_state
        missing = set(self._defaults) - set(incoming_state)
        if missing:
            raise ValueError(f"incoming state lacks {sorted(missing)}")
        self.update(_IncomingState({k: torch.as_tensor(incoming_state[k]) for k in self._defaults}))

    def _sum(self, stats: Sequence[dict[str, Tensor]], key: str) -> Tensor:
        return torch.stack([torch.as_tensor(s[key], dtype=torch.float64) for s in stats]).sum(0).to(self.device)

    @abstractmethod
    def _add(self, stats: Sequence[dict[str, Tensor]]) -> None:
        """Add a batch's per-image statistics to this metric's sum states (each concrete metric says which)."""


class FMeasure(_SODMetric):
    """F_beta (beta^2 = 0.3), PySOD convention: per-image F curves averaged over images.

    ``compute()``: ``maxF`` / ``meanF`` = max / mean of the averaged F curve, ``adpF`` = mean adaptive F
    (threshold min(2 mean(pred), 1)), and the averaged curves ``precision``, ``recall``, ``f`` (256 each).
    """

    groups = ("fm",)

    def __init__(self, beta2: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.beta2 = beta2
        for name in ("precision_sum", "recall_sum", "f_sum"):
            self.add_state(name, default=_zeros(F.NUM_BINS), dist_reduce_fx="sum")
        self.add_state("adp_sum", default=_zeros(), dist_reduce_fx="sum")
        self.add_state("n", default=_zeros(), dist_reduce_fx="sum")

    def _stat_kwargs(self):
        return {"beta2": self.beta2}

    def _add(self, stats):
        self.precision_sum += self._sum(stats, "precision")
        self.recall_sum += self._sum(stats, "recall")
        self.f_sum += self._sum(stats, "fmeasure")
        self.adp_sum += self._sum(stats, "adp_f")
        self.n += len(stats)

    def compute(self) -> dict[str, Tensor]:
        f = self.f_sum / self.n
        return {
            "maxF": f.max(),
            "meanF": f.mean(),
            "adpF": self.adp_sum / self.n,
            "precision": self.precision_sum / self.n,
            "recall": self.recall_sum / self.n,
            "f": f,
        }


class AveragedPRFMeasure(_SODMetric):
    """``maxF_pr``: max F_beta of the AVERAGED precision-recall curve (MATLAB sal_eval_toolbox convention).

    Per image (performCalcu.m): ``s = pred`` in [0, 1] scale (uint8 / 255), clipped at 0, divided by its max;
    counts of ``s >= (255 - i) / 255`` in exact float64; precision NaN -> 0. Precision and recall are averaged
    over images FIRST, F is taken of the averages, ``maxF_pr`` is its max. An all-zero map is left out of the
    averages entirely (numerator and count; the MATLAB code still adds its curve, which only touches the last
    threshold, but divides by the reduced count). GT: see :func:`functional.binarize_gt` (MATLAB uses
    ``im2double(gt) >= 0.1``, identical for {0, 255} masks). An empty GT contributes recall 0 (MATLAB: NaN).
    ``compute()`` also returns the averaged ``precision``, ``recall`` and ``f`` curves.
    """

    groups = ("pr_matlab",)

    def __init__(self, beta2: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.beta2 = beta2
        self.add_state("precision_sum", default=_zeros(F.NUM_BINS), dist_reduce_fx="sum")
        self.add_state("recall_sum", default=_zeros(F.NUM_BINS), dist_reduce_fx="sum")
        self.add_state("n_valid", default=_zeros(), dist_reduce_fx="sum")

    def _add(self, stats):
        self.precision_sum += self._sum(stats, "pr_precision")
        self.recall_sum += self._sum(stats, "pr_recall")
        self.n_valid += self._sum(stats, "pr_valid")

    def compute(self) -> dict[str, Tensor]:
        precision, recall = self.precision_sum / self.n_valid, self.recall_sum / self.n_valid
        f = F.f_of_averages(precision, recall, self.beta2)
        return {"maxF_pr": f.max(), "precision": precision, "recall": recall, "f": f}


class _ImageMean(_SODMetric):
    """A measure that is one number per image, averaged over images: ``key`` = the mean of the ``stat`` entry of
    each image's statistics (``groups`` names the statistics group that makes it)."""

    stat: str
    key: str

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=_zeros(), dist_reduce_fx="sum")
        self.add_state("n", default=_zeros(), dist_reduce_fx="sum")

    def _add(self, stats):
        self.total += self._sum(stats, self.stat)
        self.n += len(stats)

    def compute(self) -> dict[str, Tensor]:
        return {self.key: self.total / self.n}


class MeanAbsoluteError(_ImageMean):
    """``MAE``: mean over images of mean |pred - gt| (normalised map, binary GT)."""

    higher_is_better = False
    groups = ("mae",)
    stat, key = "mae", "MAE"


class SMeasure(_ImageMean):
    """``Sm``: structure measure (alpha = 0.5), averaged over images.

    ``centroid_rounding``: ``"half_even"`` (PySOD, default) or ``"half_away"`` (MATLAB S_region.m); see
    :func:`functional.centroid_split` for when they differ.
    """

    groups = ("sm",)
    stat, key = "sm", "Sm"

    def __init__(self, alpha: float = 0.5, centroid_rounding: str = "half_even", **kwargs):
        super().__init__(**kwargs)
        if centroid_rounding not in F.CENTROID_ROUNDING:
            raise ValueError(f"centroid_rounding must be one of {F.CENTROID_ROUNDING}, got {centroid_rounding!r}")
        self.alpha, self.centroid_rounding = alpha, centroid_rounding

    def _stat_kwargs(self):
        return {"alpha": self.alpha, "centroid_rounding": self.centroid_rounding}


class EMeasure(_SODMetric):
    """E-measure: ``maxEm`` / ``meanEm`` of the image-averaged 256-threshold curve, ``adpEm`` (adaptive)."""

    groups = ("em",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("curve_sum", default=_zeros(F.NUM_BINS), dist_reduce_fx="sum")
        self.add_state("adp_sum", default=_zeros(), dist_reduce_fx="sum")
        self.add_state("n", default=_zeros(), dist_reduce_fx="sum")

    def _add(self, stats):
        self.curve_sum += self._sum(stats, "emeasure")
        self.adp_sum += self._sum(stats, "adp_em")
        self.n += len(stats)

    def compute(self) -> dict[str, Tensor]:
        curve = self.curve_sum / self.n
        return {"maxEm": curve.max(), "meanEm": curve.mean(), "adpEm": self.adp_sum / self.n, "curve": curve}


class WeightedFMeasure(_ImageMean):
    """``wF``: weighted F-measure (beta = 1), averaged over images; 0 for an image without foreground."""

    groups = ("wf",)
    stat, key = "wf", "wF"

    def __init__(self, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = beta

    def _stat_kwargs(self):
        return {"wf_beta": self.beta}


ENGINES = ("auto", "torch", "numpy")  # SODMetrics(engine=...)


class SODMetrics(MetricCollection):
    """All SOD metrics in one object; the per-image work is done once and shared by the members.

    ``update(preds, gts)`` as the single metrics (or a :class:`StatsBatch`); ``compute()`` returns a flat dict of
    python floats with the keys :data:`METRIC_KEYS`; ``curves()`` returns the averaged curves as plain lists:
    ``{"pr": {"precision", "recall"}, "pr_matlab": {"precision", "recall", "f"}, "f": [...]}``, 256 entries each,
    index i = threshold (255 - i) / 255. States reduce across DDP processes in ``compute()`` / ``curves()``
    (call them on every process).

    ``engine``: ``"numpy"`` scores image by image on the CPU (:func:`functional.image_statistics`);
    ``"torch"`` scores maps of one size as one batch where they lie (:mod:`functional.batched`, same values to
    ~1e-15); ``"auto"`` (default) takes the torch path when the maps are on an accelerator (CUDA; MPS has no
    float64), numpy otherwise, so a test loop on a GPU scores its maps without copying them to the host.
    """

    def __init__(self, beta2: float = 0.3, alpha: float = 0.5, wf_beta: float = 1.0,
                 centroid_rounding: str = "half_even", engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"SODMetrics engine must be one of {ENGINES}, got {engine!r}")
        super().__init__(
            {
                "fm": FMeasure(beta2),
                "pr_matlab": AveragedPRFMeasure(beta2),
                "mae": MeanAbsoluteError(),
                "sm": SMeasure(alpha, centroid_rounding),
                "em": EMeasure(),
                "wf": WeightedFMeasure(wf_beta),
            },
            compute_groups=False,
        )
        self.stat_kwargs = {"beta2": beta2, "alpha": alpha, "wf_beta": wf_beta, "centroid_rounding": centroid_rounding}
        self.engine = engine

    def update(self, preds, gts=None) -> None:
        if not isinstance(preds, StatsBatch):
            pairs = iter_pairs(preds, gts)
            if self._torch_engine(pairs):
                from salseg.metrics.functional.batched import pair_statistics

                preds = StatsBatch(pair_statistics(pairs, F.ALL_GROUPS, **self.stat_kwargs))
            else:
                preds = StatsBatch(F.image_statistics(p, g, F.ALL_GROUPS, **self.stat_kwargs) for p, g in pairs)
        for metric in self.values(copy_state=False):
            metric.update(preds)

    def _torch_engine(self, pairs) -> bool:
        """``engine="auto"``: the batched torch path when a map lies on an accelerator with float64 (not MPS)."""
        if self.engine != "auto":
            return self.engine == "torch"
        return any(isinstance(p, Tensor) and p.device.type not in ("cpu", "mps") for p, _ in pairs)

    def update_from_stats(self, stats: Iterable[dict[str, Tensor]]) -> None:
        self.update(StatsBatch(stats))

    def forward(self, preds, gts=None) -> None:
        """Accumulate only (the collection has no meaningful per-batch value); read results with compute()."""
        self.update(preds, gts)

    def compute(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for metric in self.values(copy_state=False):
            values.update({k: float(v) for k, v in metric.compute().items() if k in METRIC_KEYS})
        return {k: values[k] for k in METRIC_KEYS}

    def curves(self) -> dict[str, Any]:
        fm, pr = self["fm"].compute(), self["pr_matlab"].compute()
        return {
            "pr": {"precision": fm["precision"].tolist(), "recall": fm["recall"].tolist()},
            "pr_matlab": {"precision": pr["precision"].tolist(), "recall": pr["recall"].tolist(),
                          "f": pr["f"].tolist()},
            "f": fm["f"].tolist(),
        }

    def merge_state(self, other: SODMetrics) -> None:
        """Add another collection's states (e.g. computed on another shard of the data) to this one's."""
        for name, metric in self.items(keep_base=True, copy_state=False):
            metric.merge_state(other[name])
