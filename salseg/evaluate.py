"""Folder evaluation: saved saliency maps against ground-truth masks (``python -m salseg eval``).

``evaluate_folders(pred_dir, gt_dir)`` pairs files by stem (``0001.png`` with ``0001.jpg``; any format PIL reads),
reads both as 8-bit grayscale the way ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` does (the reading of
PySODMetrics and most Python SOD evaluation scripts), scores every pair with :class:`salseg.metrics.SODMetrics`
and returns ``{"n_images", "metrics", "curves", ...}``.

Speed: reading and per-image statistics run in worker processes (a torch ``DataLoader``, one worker per core by
default); only the small per-image statistics travel back and are summed into the metric states in this
process, so the result equals a sequential evaluation (up to float summation order, ~1e-16).

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
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from salseg.data import io
from salseg.data.io import CorruptFileError, DataError
from salseg.metrics import METRIC_KEYS, SODMetrics, functional

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".gif")
_BATCH = 4  # images per worker task: ~5-10% faster than 1 on SOD-300 (fewer transfers); 8 gains nothing more


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


def fit_to_gt(pred: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Resize ``pred`` to ``shape`` (bilinear, half-pixel centres; uint8 stays uint8); (map, resized?)."""
    if tuple(pred.shape) == tuple(shape):
        return pred, False
    t = torch.from_numpy(np.asarray(pred, dtype=np.float64))[None, None]
    out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]
    if pred.dtype == np.uint8:
        return out.round().clamp(0, 255).to(torch.uint8).numpy(), True
    return out.clamp(0, 1).numpy(), True


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
            raise ValueError(f"ambiguous: {by_stem[path.stem].name} and {path.name} in {folder} "
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
# Scoring in worker processes
# ---------------------------------------------------------------------------------------------------------------
class _PairScores(Dataset):
    """Item i: read (or take) pair i, fit the prediction to the GT, compute its statistics (numpy)."""

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
            # Returned, not raised: the main process stops cleanly and raises it (an exception raised inside a
            # DataLoader worker leaves the loader's queues to a slow, noisy teardown).
            return {"name": name, "error": str(exc)}
        pred, resized = fit_to_gt(pred, gt.shape)
        t1 = time.perf_counter()
        stats = functional.image_statistics(torch.from_numpy(pred), torch.from_numpy(gt), **self.stat_kwargs)
        t2 = time.perf_counter()
        return {
            "name": name,
            "stats": {k: v.numpy() for k, v in stats.items()},  # numpy pickles cheaper than shared-memory tensors
            "resized": resized,
            "read_s": t1 - t0,
            "score_s": t2 - t1,
        }


def _identity(x):
    """collate_fn (keep a batch as its list of items) and ``load`` for in-memory arrays; picklable."""
    return x


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _score(dataset: _PairScores, num_workers: int | None, metric_kwargs: dict) -> dict[str, Any]:
    workers = default_workers() if num_workers is None else int(num_workers)
    if workers > len(dataset):
        workers = len(dataset)
    loader = DataLoader(dataset, batch_size=_BATCH, shuffle=False, num_workers=workers, collate_fn=_identity)
    metrics = SODMetrics(**metric_kwargs)
    resized, read_s, score_s = [], 0.0, 0.0
    start = time.perf_counter()
    error = None
    for batch in loader:
        error = next((item["error"] for item in batch if "error" in item), None)
        if error is not None:
            break
        metrics.update_from_stats([{k: torch.from_numpy(v) for k, v in item["stats"].items()} for item in batch])
        resized += [item["name"] for item in batch if item["resized"]]
        read_s += sum(item["read_s"] for item in batch)
        score_s += sum(item["score_s"] for item in batch)
    if error is not None:
        raise ImageReadError(error)
    values, curves = metrics.compute(), metrics.curves()
    wall = time.perf_counter() - start
    n_resized = len(resized)
    if n_resized:
        shown = ", ".join(resized[:3]) + (", ..." if n_resized > 3 else "")
        warnings.warn(f"{n_resized} of {len(dataset)} predictions ({shown}) differ in size from their ground truth "
                      "and were resized to it (bilinear)", stacklevel=3)
    return {
        "n_images": len(dataset),
        "metrics": values,
        "curves": curves,
        "n_resized": n_resized,
        # read_s / score_s: summed over images (CPU seconds across workers); wall_s: elapsed, end to end.
        "timing": {"wall_s": wall, "read_s": read_s, "score_s": score_s, "workers": workers,
                   "maps_per_s": len(dataset) / wall if wall > 0 else math.inf},
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

    ``num_workers``: processes reading and scoring (default: one per available core; 0 = in this process).
    ``allow_missing``: skip GTs without a prediction (counted in ``n_missing``) instead of raising.
    ``metric_kwargs`` go to :class:`SODMetrics` (beta2, alpha, wf_beta, centroid_rounding).
    Returns ``{"n_images", "metrics" (flat floats), "curves", "n_missing", "missing", "n_resized", "timing"}``.
    """
    pairs, missing = pair_files(pred_dir, gt_dir, allow_missing)
    metric_kwargs = dict(metric_kwargs)
    stat_kwargs = {k: v for k, v in metric_kwargs.items() if k in ("beta2", "alpha", "wf_beta", "centroid_rounding")}
    result = _score(_PairScores(pairs, read_gray, read_gt, stat_kwargs), num_workers, metric_kwargs)
    result["n_missing"] = len(missing)
    result["missing"] = missing
    return result


def evaluate_arrays(preds: Sequence, gts: Sequence, *, num_workers: int | None = None,
                    **metric_kwargs) -> dict[str, Any]:
    """As :func:`evaluate_folders` for maps already in memory (numpy arrays; scoring only, no reading)."""
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predictions but {len(gts)} ground truths")
    pairs = [(str(i), np.asarray(p), np.asarray(g)) for i, (p, g) in enumerate(zip(preds, gts))]
    stat_kwargs = {k: v for k, v in metric_kwargs.items() if k in ("beta2", "alpha", "wf_beta", "centroid_rounding")}
    return _score(_PairScores(pairs, _identity, _identity, stat_kwargs), num_workers, dict(metric_kwargs))


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
