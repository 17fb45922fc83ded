"""The F-measure family: PySOD's per-threshold precision / recall / F_beta, the adaptive F and the MATLAB PR curve.

F_beta = (1 + beta^2) P R / (beta^2 P + R) with beta^2 = 0.3, and the adaptive threshold twice the map's mean
saliency: Achanta et al., "Frequency-tuned salient region detection", CVPR 2009 (its comparison by adaptive
thresholding). Per-image curves follow PySODMetrics 1.6.x ``Fmeasure`` (``cal_pr``, ``cal_adaptive_fm``);
``maxF_pr``'s averaged-PR curve follows the MATLAB benchmark sal_eval_toolbox
(``tools/Curve_BenchCode/performCalcu.m`` and ``Fmeasure_Curve``). Curves have 256 entries in descending threshold
order (:mod:`.pixels`).

Each curve function has a numpy core (``*_numpy``: float64 arrays in, arrays out), which
:func:`salseg.metrics.functional.image_stats.image_statistics` calls directly on its numpy counts, and a public
wrapper that also takes torch tensors and then returns CPU float64 tensors (torch is imported only then).
"""

from __future__ import annotations

import numpy as np

from salseg.metrics.functional.inputs import to_numpy
from salseg.metrics.functional.pixels import descending_cumsum


def _is_tensor(x) -> bool:
    return hasattr(x, "detach") and not isinstance(x, np.ndarray)


def _on_numpy(core, *args):
    """Run a numpy curve core on float64 arrays; torch inputs give torch (CPU, float64) outputs."""
    was_torch = any(_is_tensor(a) for a in args)
    args = [to_numpy(a).astype(np.float64) if _is_tensor(a) else a for a in args]
    out = core(*args)
    if not was_torch:
        return out
    import torch  # a tensor was given, so torch is loaded already

    return tuple(torch.from_numpy(o) for o in out)


def fmeasure_curves_numpy(tp: np.ndarray, fp: np.ndarray, n_fg: int, beta2: float = 0.3):
    """:func:`fmeasure_curves` on numpy float64 arrays."""
    n_pos = tp + fp
    precision = tp / np.where(n_pos == 0, 1.0, n_pos)
    recall = tp / max(n_fg, 1)
    num = (1 + beta2) * precision * recall
    den = np.where(num == 0, 1.0, beta2 * precision + recall)
    return precision, recall, num / den


def fmeasure_curves(tp, fp, n_fg: int, beta2: float = 0.3):
    """PySOD ``Fmeasure.cal_pr``: precision, recall and F_beta per threshold.

    Precision where nothing is predicted is TP / 1 = 0 (PySOD sets Ps[Ps == 0] = 1); recall of an empty GT is
    TP / 1 = 0; F is 0 where its numerator is 0.
    """
    return _on_numpy(fmeasure_curves_numpy, tp, fp, n_fg, beta2)


def adaptive_fmeasure(tp: float, n_pos: float, n_fg: float, beta2: float = 0.3) -> float:
    """F_beta of the adaptively binarised map; 0 when it hits no foreground pixel (PySOD and MATLAB)."""
    if tp == 0:
        return 0.0
    pre, rec = tp / n_pos, tp / n_fg
    return (1 + beta2) * pre * rec / (beta2 * pre + rec)


def matlab_pr_curve_numpy(fg_hist: np.ndarray, bg_hist: np.ndarray, n_fg: float):
    """:func:`matlab_pr_curve` on numpy float64 arrays."""
    tp, fp = descending_cumsum(fg_hist), descending_cumsum(bg_hist)
    n_pos = tp + fp
    precision = np.where(n_pos > 0, tp / np.maximum(n_pos, 1), 0.0)
    recall = tp / n_fg if n_fg > 0 else np.zeros_like(tp)
    return precision, recall


def matlab_pr_curve(fg_hist, bg_hist, n_fg: float):
    """Per-image precision (NaN -> 0, as performCalcu.m) and recall at thresholds (255 - i) / 255.

    An empty GT gets recall 0 here; MATLAB divides by zero and its averaged recall curve becomes NaN.
    """
    return _on_numpy(matlab_pr_curve_numpy, fg_hist, bg_hist, n_fg)


def f_of_averages_numpy(precision: np.ndarray, recall: np.ndarray, beta2: float = 0.3) -> np.ndarray:
    """:func:`f_of_averages` on numpy float64 arrays (same operations, same values)."""
    num = (1 + beta2) * precision * recall
    den = beta2 * precision + recall
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def f_of_averages(precision, recall, beta2: float = 0.3):
    """F_beta of averaged precision and recall (MATLAB Fmeasure_Curve); 0 where both are 0 (MATLAB's NaN)."""
    if isinstance(precision, np.ndarray):
        return f_of_averages_numpy(precision, recall, beta2)
    import torch  # tensors were given, so torch is loaded already

    num = (1 + beta2) * precision * recall
    den = beta2 * precision + recall
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
