"""Figures people would rather look at than read: PR curves, metric bars, saliency grids (matplotlib, Agg)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def pr_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = "") -> Path:
    """Overlay precision-recall curves; ``curves`` maps a label to ``{"precision": [...], "recall": [...]}``.

    These are the per-image-averaged SOD curves (README "Metrics"), not torchmetrics' pixel-pooled PR curve.
    """
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    for label, c in curves.items():
        ax.plot(np.asarray(c["recall"]), np.asarray(c["precision"]), lw=1.8, label=label)
    _style_curve_axes(ax, "recall", "precision", 1, title or "precision-recall (per-image averaged)",
                      "lower left" if curves else None)
    return _save(fig, path)


def f_threshold_curves(curves: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> Path:
    """Overlay F-measure-vs-threshold curves; ``curves`` maps a label to its F curve, whose index ``i`` is the
    threshold ``(255 - i) / 255`` (salseg.metrics curve order); plotted against the threshold in 0..255."""
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    for label, f in curves.items():
        f = np.asarray(f, dtype=float)
        ax.plot(255 - np.arange(len(f)) * 255 / max(len(f) - 1, 1), f, lw=1.8, label=label)
    _style_curve_axes(ax, "threshold", "F-measure", 255, title or "F-measure vs threshold (per-image averaged)",
                      "lower center" if curves else None)
    return _save(fig, path)


def _style_curve_axes(ax, xlabel: str, ylabel: str, xmax: float, title: str, legend_loc: str | None) -> None:
    """The look every overlaid-curve plot shares: labels, x in [0, xmax], y in [0, 1.02], light grid, legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if legend_loc:
        ax.legend(fontsize=8, loc=legend_loc)


def metric_bars(table: Mapping[str, Mapping[str, float]], metrics: Sequence[str], path: str | Path,
                title: str = "") -> Path:
    """Grouped bars: one group per metric, one bar per row of ``table`` (variant -> metric -> value)."""
    rows = list(table)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(metrics), 3.6), dpi=110)
    for i, row in enumerate(rows):
        vals = [table[row].get(m, np.nan) for m in metrics]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=row)
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=2)
    return _save(fig, path)


def saliency_grid(images: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                  preds: Sequence[np.ndarray] | Mapping[str, Sequence[np.ndarray]], path: str | Path,
                  names: Sequence[str] | None = None, title: str = "") -> Path:
    """Rows of input / ground truth / prediction(s): ``preds`` is one map per image, or ``{map name: maps}`` for
    one column per map (e.g. GD's CNN2+3 / CNN1 / gradient side by side). Images HxWx3 in [0,1] or uint8, maps HxW
    (or HxWx3 colour label maps)."""
    columns = dict(preds) if isinstance(preds, Mapping) else {"prediction": preds}
    n = len(images)
    columns = {k: v for k, v in columns.items() if len(v) >= n}  # a map missing for some images is left out
    fig, axes = plt.subplots(n, 2 + len(columns), figsize=(2 * (2 + len(columns)), 2 * n + 0.3), dpi=100,
                             squeeze=False)
    for i in range(n):
        cells = [(images[i], "input"), (gts[i], "GT")] + [(maps[i], label) for label, maps in columns.items()]
        for j, (arr, label) in enumerate(cells):
            ax = axes[i, j]
            ax.imshow(arr, cmap=None if arr.ndim == 3 else "gray", vmin=0, vmax=255 if arr.dtype == np.uint8 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=9)
        if names is not None:
            axes[i, 0].set_ylabel(str(names[i])[:18], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (making the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


@functools.lru_cache(maxsize=1)
def label_palette() -> np.ndarray:
    """(256, 3) uint8 colours for label maps: PASCAL VOC's palette (0 black background, 1 dark red, ...: the bits
    of the label spread over the colour channels), 255 (ignore) white, so a grid reads like the VOC masks."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    palette[255] = (255, 255, 255)
    palette.setflags(write=False)  # cached: shared by every call
    return palette
