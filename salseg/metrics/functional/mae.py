"""Mean absolute error between the prepared map and the binary GT (Perazzi et al., "Saliency filters: contrast
based filtering for salient region detection", CVPR 2012; PySODMetrics 1.6.x ``MAE`` on the min-max normalised
map of :mod:`.inputs`).
"""

from __future__ import annotations

from salseg.metrics.functional.pixels import Group


def mae_from_groups(fg: Group, bg: Group, n: float) -> float:
    """Mean of |pred - gt| over ``n`` pixels: |1 - v| = 1 - v on the foreground ``fg``, |v| = v on ``bg``."""
    return ((fg.n() - fg.total()) + bg.total()) / n
