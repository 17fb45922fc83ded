"""Folder evaluation: saved saliency maps against ground-truth masks (``python -m salseg eval``).

``evaluate_folders(pred_dir, gt_dir)`` pairs files by stem (``0001.png`` with ``0001.jpg``; any format PIL reads),
reads both as 8-bit grayscale the way ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` does (the reading of
PySODMetrics and most Python SOD evaluation scripts), scores every pair with :class:`salseg.metrics.SODMetrics`
and returns ``{"n_images", "metrics", "curves", ...}``.

Speed: this path imports numpy, PIL and OpenCV only (no torch, torchmetrics or Lightning: their import alone costs
seconds, more than scoring 300 maps; scipy, 0.3 s, only where OpenCV cannot give exact distances). Reading and
per-image statistics (:func:`salseg.metrics.functional.image_statistics_numpy`) run in forked worker processes (one
per core by default) when there are at least ``MIN_PAIRS_PER_WORKER`` pairs per worker, in this process otherwise;
only the small per-image statistics travel back. They are averaged here the way PySODMetrics averages its per-image
lists (``np.mean`` over the stacked values), so the result equals :class:`salseg.metrics.SODMetrics` on the same
maps (up to float summation order, ~1e-16).

Reading: one grey reading for masks and maps, shared with training (``salseg.data.io``): ground truths through
``read_gt`` (= ``io.read_mask``, the training datasets' reader), maps through ``read_gray`` (= ``io.read_gray``);
both decode like OpenCV's IMREAD_GRAYSCALE (a coloured PNG through libpng's luminance, JPEG its Y channel, 16-bit
the high byte; a float ("F") map in [0, 1] is kept as a float map). See ``salseg.data.io`` for every mode.
A corrupt or truncated file, or a file that is not an image, raises :class:`ImageReadError` naming it (the CLI
prints it as one line).

Size: a prediction whose size differs from its GT is resized to the GT size, bilinear with half-pixel centres
(as ``cv2.resize(..., INTER_LINEAR)``, up to one level of OpenCV's fixed-point rounding) and rounded back to
8 bits; the count is reported (``n_resized``) and warned about. The MATLAB toolbox uses ``imresize`` (bicubic,
antialiased), so resized maps do not reproduce its numbers exactly; equal-size maps do.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salseg.data import io
from salseg.data.io import CorruptFileError, DataError
from salseg.metrics import METRIC_KEYS
from salseg.metrics.functional import CENTROID_ROUNDING, f_of_averages_numpy, image_statistics_numpy

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".gif")
# A worker process pays for itself from a few dozen maps: a fork without torch loaded costs ~10-30 ms, a map
# ~5-15 ms to read and score on one core.
MIN_PAIRS_PER_WORKER = 24
_CHUNK = 8  # pairs per worker task: fewer round trips; small enough to balance two workers
_STAT_KWARGS = ("beta2", "alpha", "wf_beta", "centroid_rounding")


class ImageReadError(CorruptFileError):
    """An image file could not be decoded (corrupt, truncated, not an image): the data loaders' error, named for
    ``salseg eval`` ("cannot read image <path>: <reason>")."""


# ---------------------------------------------------------------------------------------------------------------
# Reading: the data loaders' readers (salseg.data.io), resizing here
# ---------------------------------------------------------------------------------------------------------------
def _read(reader: Callable[[Path], np.ndarray], path: str | Path) -> np.ndarray:
    try:
        return reader(path)
    except DataError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.__cause__ or exc}") from exc


def read_gray(path: str | Path) -> np.ndarray:
    """A saliency map: (H, W) uint8, or float64 in [0, 1] for a float image, read like cv2.IMREAD_GRAYSCALE."""
    return _read(io.read_gray, path)


def read_gt(path: str | Path) -> np.ndarray:
    """A ground-truth mask read exactly as the training and test datasets read it (``salseg.data.io.read_mask``)."""
    return _read(io.read_mask, path)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 per output index: half-pixel centres, clamped at the borders
    (``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, ``cv2.INTER_LINEAR``)."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = src.astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def fit_to_gt(pred: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Resize ``pred`` to ``shape`` (bilinear, half-pixel centres, float64; uint8 stays uint8, rounded half to
    even); (map, resized?)."""
    if tuple(pred.shape) == tuple(shape):
        return pred, False
    x = np.asarray(pred, dtype=np.float64)
    r0, r1, wr = _linear_taps(x.shape[0], shape[0])
    c0, c1, wc = _linear_taps(x.shape[1], shape[1])
    wr, wc = wr[:, None], wc[None, :]

    def row(r: np.ndarray) -> np.ndarray:
        return (1 - wc) * x[r][:, c0] + wc * x[r][:, c1]

    out = (1 - wr) * row(r0) + wr * row(r1)
    if pred.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8), True
    return np.clip(out, 0, 1), True


# ---------------------------------------------------------------------------------------------------------------
# Pairing
# ---------------------------------------------------------------------------------------------------------------
def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files of a folder (not recursive) by stem; two files with one stem are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in by_stem:
            raise DataError(f"ambiguous: {by_stem[path.stem].name} and {path.name} in {folder} "
                            f"share the stem {path.stem!r}")
        by_stem[path.stem] = path
    return by_stem


def pair_files(pred_dir, gt_dir, allow_missing: bool = False) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """([(stem, pred_path, gt_path)] in sorted GT order, [GT stems without a prediction])."""
    gts, preds = list_images(gt_dir), list_images(pred_dir)
    if not gts:
        raise FileNotFoundError(f"no ground-truth images ({', '.join(IMAGE_EXTENSIONS)}) in {gt_dir}")
    missing = [stem for stem in gts if stem not in preds]
    if missing and not allow_missing:
        shown = ", ".join(gts[s].name for s in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} of {len(gts)} ground-truth masks in {gt_dir} have no prediction in {pred_dir}: {shown} "
            "(allow_missing=True skips them)"
        )
    pairs = [(stem, preds[stem], path) for stem, path in gts.items() if stem in preds]
    if not pairs:
        raise FileNotFoundError(f"no prediction in {pred_dir} matches a ground truth in {gt_dir}")
    return pairs, missing


# ---------------------------------------------------------------------------------------------------------------
# Scoring: per-image statistics (numpy), in worker processes when they pay
# ---------------------------------------------------------------------------------------------------------------
class _PairScores:
    """Task i: read (or take) pair i, fit the prediction to the GT, compute its statistics (numpy)."""

    def __init__(self, pairs: Sequence[tuple[str, Any, Any]], load_pred: Callable[[Any], np.ndarray],
                 load_gt: Callable[[Any], np.ndarray], stat_kwargs: dict):
        self.pairs, self.load_pred, self.load_gt, self.stat_kwargs = pairs, load_pred, load_gt, stat_kwargs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name, pred_src, gt_src = self.pairs[i]
        t0 = time.perf_counter()
        try:
            pred, gt = self.load_pred(pred_src), self.load_gt(gt_src)
        except DataError as exc:
            # Returned, not raised: the parent stops at the first error and raises it (one line, no traceback
            # from a worker).
            return {"name": name, "error": str(exc)}
        pred, resized = fit_to_gt(pred, gt.shape)
        t1 = time.perf_counter()
        stats = image_statistics_numpy(pred, gt, **self.stat_kwargs)
        t2 = time.perf_counter()
        return {"name": name, "stats": stats, "resized": resized, "read_s": t1 - t0, "score_s": t2 - t1}

    def chunk(self, bounds: tuple[int, int]) -> list[dict[str, Any]]:
        return [self[i] for i in range(*bounds)]


def _identity(x):
    """``load`` for in-memory arrays."""
    return x


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_TASKS: _PairScores | None = None  # the forked workers' copy of the tasks (inherited, not pickled)


def _run_chunk(bounds: tuple[int, int]) -> list[dict[str, Any]]:
    assert _TASKS is not None
    return _TASKS.chunk(bounds)


def _items(tasks: _PairScores, workers: int):
    """Per-image results in pair order; forked processes when ``workers > 1``."""
    chunks = [(i, min(i + _CHUNK, len(tasks))) for i in range(0, len(tasks), _CHUNK)]
    if workers <= 1:
        for bounds in chunks:
            yield from tasks.chunk(bounds)
        return
    global _TASKS
    _TASKS = tasks
    try:
        # fork: the children inherit the tasks and the imported modules (numpy, PIL, OpenCV with its thread pool
        # off: no threads that a fork could leave locked, unlike torch's thread pool) and start in milliseconds.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for batch in pool.imap(_run_chunk, chunks):
                yield from batch
    finally:
        _TASKS = None


def _workers_for(n_pairs: int, num_workers: int | None) -> int:
    if num_workers is not None:
        return max(0, min(int(num_workers), n_pairs))
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return max(0, min(default_workers(), n_pairs // MIN_PAIRS_PER_WORKER))


def summarize(stats: Sequence[dict[str, np.ndarray]], beta2: float = 0.3) -> tuple[dict[str, float], dict]:
    """(metrics, curves) of per-image statistics, as :class:`salseg.metrics.SODMetrics` ``compute()`` /
    ``curves()`` (sums over images, then the same averages) and PySODMetrics (``np.mean`` of the stacked lists)."""
    def mean(key: str) -> np.ndarray:
        return np.mean(np.stack([s[key] for s in stats]), axis=0)

    f = mean("fmeasure")
    n_valid = float(np.sum([s["pr_valid"] for s in stats]))
    pr_p = np.sum(np.stack([s["pr_precision"] for s in stats]), axis=0) / n_valid
    pr_r = np.sum(np.stack([s["pr_recall"] for s in stats]), axis=0) / n_valid
    pr_f = f_of_averages_numpy(pr_p, pr_r, beta2)
    em = mean("emeasure")
    values = {
        "maxF": f.max(), "meanF": f.mean(), "adpF": mean("adp_f"), "maxF_pr": pr_f.max(), "MAE": mean("mae"),
        "Sm": mean("sm"), "maxEm": em.max(), "meanEm": em.mean(), "adpEm": mean("adp_em"), "wF": mean("wf"),
    }
    curves = {
        "pr": {"precision": mean("precision").tolist(), "recall": mean("recall").tolist()},
        "pr_matlab": {"precision": pr_p.tolist(), "recall": pr_r.tolist(), "f": pr_f.tolist()},
        "f": f.tolist(),
    }
    return {k: float(values[k]) for k in METRIC_KEYS}, curves


def _check_metric_kwargs(metric_kwargs: dict) -> dict:
    unknown = sorted(set(metric_kwargs) - set(_STAT_KWARGS))
    if unknown:
        raise TypeError(f"unknown metric arguments {unknown}; expected some of {list(_STAT_KWARGS)}")
    rounding = metric_kwargs.get("centroid_rounding", "half_even")
    if rounding not in CENTROID_ROUNDING:
        raise ValueError(f"centroid_rounding must be one of {CENTROID_ROUNDING}, got {rounding!r}")
    return dict(metric_kwargs)


def _score(tasks: _PairScores, num_workers: int | None, metric_kwargs: dict) -> dict[str, Any]:
    workers = _workers_for(len(tasks), num_workers)
    stats, resized, read_s, score_s = [], [], 0.0, 0.0
    start = time.perf_counter()
    for item in _items(tasks, workers):
        if "error" in item:
            raise ImageReadError(item["error"])
        stats.append(item["stats"])
        if item["resized"]:
            resized.append(item["name"])
        read_s += item["read_s"]
        score_s += item["score_s"]
    values, curves = summarize(stats, metric_kwargs.get("beta2", 0.3))
    wall = time.perf_counter() - start
    n_resized = len(resized)
    if n_resized:
        shown = ", ".join(resized[:3]) + (", ..." if n_resized > 3 else "")
        warnings.warn(f"{n_resized} of {len(tasks)} predictions ({shown}) differ in size from their ground truth "
                      "and were resized to it (bilinear)", stacklevel=3)
    return {
        "n_images": len(tasks),
        "metrics": values,
        "curves": curves,
        "n_resized": n_resized,
        # read_s / score_s: summed over images (CPU seconds across workers); wall_s: elapsed, end to end.
        "timing": {"wall_s": wall, "read_s": read_s, "score_s": score_s, "workers": workers,
                   "maps_per_s": len(tasks) / wall if wall > 0 else math.inf},
    }


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    num_workers: int | None = None,
    allow_missing: bool = False,
    **metric_kwargs,
) -> dict[str, Any]:
    """Score every GT in ``gt_dir`` against the prediction of the same stem in ``pred_dir``.

    ``num_workers``: processes reading and scoring (default: one per available core, at most one per
    ``MIN_PAIRS_PER_WORKER`` pairs; 0 or 1 = in this process).
    ``allow_missing``: skip GTs without a prediction (counted in ``n_missing``) instead of raising.
    ``metric_kwargs`` go to :class:`SODMetrics` (beta2, alpha, wf_beta, centroid_rounding).
    Returns ``{"n_images", "metrics" (flat floats), "curves", "n_missing", "missing", "n_resized", "timing"}``.
    """
    pairs, missing = pair_files(pred_dir, gt_dir, allow_missing)
    metric_kwargs = _check_metric_kwargs(metric_kwargs)
    result = _score(_PairScores(pairs, read_gray, read_gt, metric_kwargs), num_workers, metric_kwargs)
    result["n_missing"] = len(missing)
    result["missing"] = missing
    return result


def evaluate_arrays(preds: Sequence, gts: Sequence, *, num_workers: int | None = None,
                    **metric_kwargs) -> dict[str, Any]:
    """As :func:`evaluate_folders` for maps already in memory (numpy arrays; scoring only, no reading)."""
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predictions but {len(gts)} ground truths")
    if not preds:
        raise ValueError("no maps to evaluate (empty preds and gts)")
    pairs = [(str(i), np.asarray(p), np.asarray(g)) for i, (p, g) in enumerate(zip(preds, gts))]
    metric_kwargs = _check_metric_kwargs(metric_kwargs)
    return _score(_PairScores(pairs, _identity, _identity, metric_kwargs), num_workers, metric_kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------
def format_table(metrics: dict[str, dict[str, float]], digits: int = 4) -> str:
    """Markdown table: one row per name, one column per metric (canonical order first), 4 decimals."""
    columns = [k for k in METRIC_KEYS if any(k in row for row in metrics.values())]
    columns += sorted({k for row in metrics.values() for k in row} - set(columns))

    def cell(value) -> str:
        if value is None:
            return "-"
        try:
            return f"{float(value):.{digits}f}"
        except (TypeError, ValueError):
            return str(value)

    lines = ["| name | " + " | ".join(columns) + " |", "| --- | " + " | ".join("---:" for _ in columns) + " |"]
    for name, row in metrics.items():
        lines.append(f"| {name} | " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
