"""E-measure: enhanced-alignment measure of a binarised map (Fan et al., "Enhanced-alignment measure for binary
foreground map evaluation", IJCAI 2018), in PySODMetrics 1.6.x's ``Emeasure`` form (one binarisation per
threshold of the quantised map, counted by :func:`.pixels.descending_cumsum`; ``adpEm`` at the adaptive
threshold of :mod:`.fmeasure`).
"""

from __future__ import annotations

from salseg.metrics.functional.inputs import EPS


def emeasure_from_counts(fg_fg, fg_bg, n_fg: float, n: float):
    """E-measure (Fan et al., IJCAI 2018) of a binarised map from its counts, as PySOD's cumsum-histogram form.

    ``fg_fg`` / ``fg_bg``: predicted-foreground pixels on GT foreground / background (python numbers or tensors,
    one entry per threshold). A binary map and a binary GT take 2 values each, so the enhanced-alignment matrix
    has at most 4 distinct entries: its sum is each entry times its pixel count, divided by (N - 1 + eps).
    """
    pred_fg = fg_fg + fg_bg
    pred_bg = n - pred_fg
    if n_fg == 0:  # all-background GT: the matrix is 1 where the prediction is background
        total = pred_bg
    elif n_fg == n:  # all-foreground GT
        total = pred_fg
    else:
        bg_fg = n_fg - fg_fg
        bg_bg = pred_bg - bg_fg
        mean_pred, mean_gt = pred_fg / n, n_fg / n
        p_fg, p_bg = 1 - mean_pred, 0 - mean_pred  # demeaned prediction values
        g_fg, g_bg = 1 - mean_gt, 0 - mean_gt  # demeaned GT values

        def part(a, b, count):
            align = 2 * (a * b) / (a * a + b * b + EPS)
            return (align + 1) * (align + 1) / 4 * count

        total = part(p_fg, g_fg, fg_fg) + part(p_fg, g_bg, fg_bg) + part(p_bg, g_fg, bg_fg) + part(p_bg, g_bg, bg_bg)
    return total / (n - 1 + EPS)
