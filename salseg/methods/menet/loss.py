"""MEnet losses (paper 003, Sec. II-B): L = L_ML + lambda * L_CE (Eq. 4) with hard-negative mining (Sec. III-B).

Everything is computed per image and vectorised over the batch (no Python loop over images):

* L_CE (Eq. 1): per-pixel 2-class softmax cross entropy.
* L_ML (Eq. 3, the equivalent form of Eq. 2): per pixel i, m_i = ||f_i - mean_own||^2 - ||f_i - mean_other||^2,
  where mean_own / mean_other are the means of f over ALL pixels of the image's region of i / the other region
  (salient or background, from the ground truth). By default f is L2-normalised per pixel first, as in the
  authors' code; then m_i lies in [-4, 4]. ``normalize=False`` is the literal Eq. 3, unbounded below (the
  network can push the two means apart without limit). Note: averaged over ALL pixels of an image, Eq. 3 is
  exactly -||mean_+ - mean_-||^2 (the pull terms cancel against the push terms); the per-pixel form only
  matters once mining selects a subset of pixels.
* Hard-negative mining (authors' code, after SSD): per image keep ALL pixels of the minority class and the
  k = (minority count) HARDEST pixels of the majority class, a 1:1 ratio. "Hardest" = highest per-pixel loss
  of the objective being trained, scored on detached values: ``mining_score="total"`` (default) ranks by
  m_i + lambda * ce_i (by ce_i alone for the CE-only variants), ``"ce"`` by ce_i only, ``"ml"`` by m_i only.
  The kept set applies to BOTH terms: L_ML and L_CE of an image are the means of m_i and ce_i over its kept
  pixels; the batch loss is the mean over images. (The region means are still taken over every pixel of the
  region: mining chooses which pixels are pulled/pushed, not where the centres are.)
* Degenerate masks: an image with no salient (or no background) pixel has no "other" region, so its other
  term is dropped (m_i = ||f_i - mean_own||^2) and, with no minority class to balance, all its pixels are kept.
  The loss stays finite and defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VARIANTS = ("menet", "ce_only", "ce_plain")
MINING_SCORES = ("total", "ce", "ml")


def _l2_normalize(f: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """f / max(||f||, eps) over dim 1 (a plain sum of squares: faster than F.normalize on (B,C,P) on CPUs)."""
    return f * f.pow(2).sum(1, keepdim=True).clamp_min(eps * eps).rsqrt()


def metric_terms(f: torch.Tensor, y: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Per-pixel L_ML term m_i (Eq. 3) of features ``f`` (B,C,P) and labels ``y`` (B,P) in {0,1} -> (B,P).

    ||f_i - mean||^2 is expanded as ||f_i||^2 - 2 f_i . mean + ||mean||^2, so no (B,C,P) difference tensor is
    built per region."""
    if normalize:
        f = _l2_normalize(f)
    n_pos = y.sum(1, keepdim=True)  # (B,1)
    n_neg = y.shape[1] - n_pos
    mean_pos = torch.einsum("bcp,bp->bc", f, y) / n_pos.clamp(min=1)  # (B,C)
    mean_neg = torch.einsum("bcp,bp->bc", f, 1 - y) / n_neg.clamp(min=1)
    sq = f.pow(2).sum(1)  # (B,P)
    d_pos = (sq - 2 * torch.einsum("bcp,bc->bp", f, mean_pos) + mean_pos.pow(2).sum(1, keepdim=True)).clamp_min(0)
    d_neg = (sq - 2 * torch.einsum("bcp,bc->bp", f, mean_neg) + mean_neg.pow(2).sum(1, keepdim=True)).clamp_min(0)
    pos = y > 0.5
    own = torch.where(pos, d_pos, d_neg)  # ||f_i - mean_own||^2
    other = torch.where(pos, d_neg, d_pos)  # ||f_i - mean_other||^2
    has_other = torch.where(pos, n_neg > 0, n_pos > 0)  # the other region exists in this image
    return own - other * has_other


def hard_negative_mask(y: torch.Tensor, score: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
    """Kept pixels (B,P) bool: all minority-class pixels + the k highest-``score`` majority pixels,
    k = round(ratio * minority count) (at most the majority count; ties broken by position). ``ratio`` 1 is the
    authors' 1:1; SSD, where the scheme comes from, keeps 3 negatives per positive. An image with only one class
    keeps every pixel."""
    pos = y > 0.5
    n_pos = pos.sum(1)
    n_neg = pos.shape[1] - n_pos
    minority_is_pos = n_pos <= n_neg  # (B,)
    minority = torch.where(minority_is_pos[:, None], pos, ~pos)
    n_min = torch.minimum(n_pos, n_neg)  # (B,)
    k = torch.minimum(torch.round(n_min * float(ratio)).long(), torch.maximum(n_pos, n_neg))
    majority_score = score.detach().masked_fill(minority, float("-inf"))
    order = majority_score.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    hardest = (ranks < k[:, None]) & ~minority
    keep = minority | hardest
    return keep | (n_min == 0)[:, None]


class MEnetLoss(torch.nn.Module):
    """``forward(logits (B,2,H,W), f (B,C,H,W) or None, mask (B,1,H,W)) -> dict(loss, L_ML, L_CE, kept)``.

    ``variant``: ``menet`` (L_ML + lambda L_CE), ``ce_only`` / ``ce_plain`` (L_CE only; Table III).
    """

    def __init__(self, variant: str = "menet", lambda_ce: float = 1.0, normalize: bool = True,
                 mining: bool = True, mining_score: str = "total", mining_ratio: float = 1.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if mining_score not in MINING_SCORES:
            raise ValueError(f"mining_score must be one of {MINING_SCORES}, got {mining_score!r}")
        self.variant, self.lambda_ce, self.normalize = variant, float(lambda_ce), bool(normalize)
        if not float(mining_ratio) > 0:
            raise ValueError(f"mining_ratio must be > 0 (majority pixels kept per minority pixel), got {mining_ratio}")
        self.mining, self.mining_score, self.mining_ratio = bool(mining), mining_score, float(mining_ratio)

    @property
    def uses_metric(self) -> bool:
        return self.variant == "menet"

    def forward(self, logits: torch.Tensor, f: torch.Tensor | None, mask: torch.Tensor) -> dict:
        b = logits.shape[0]
        y = (mask.reshape(b, -1) > 0.5).float()  # (B,P)
        ce = F.cross_entropy(logits.float().reshape(b, 2, -1), y.long(), reduction="none")  # (B,P), Eq. 1
        if self.uses_metric:
            if f is None:
                raise ValueError("variant 'menet' needs the metric feature f (the multi-scale head)")
            ml = metric_terms(f.float().reshape(b, f.shape[1], -1), y, self.normalize)
        elif f is not None:  # CE-only: L_ML is logged as a diagnostic, not trained
            with torch.no_grad():
                ml = metric_terms(f.float().reshape(b, f.shape[1], -1), y, self.normalize)
        else:
            ml = torch.zeros_like(ce)
        if self.mining:
            if self.mining_score == "ce" or not self.uses_metric:
                score = ce
            elif self.mining_score == "ml":
                score = ml
            else:
                score = ml + self.lambda_ce * ce
            keep = hard_negative_mask(y, score, self.mining_ratio).float()
        else:
            keep = torch.ones_like(ce)
        n_kept = keep.sum(1)  # >= 1 always (an image has >= 1 pixel)
        l_ce = ((ce * keep).sum(1) / n_kept).mean()
        l_ml = ((ml * keep).sum(1) / n_kept).mean()
        loss = l_ml + self.lambda_ce * l_ce if self.uses_metric else l_ce
        return {"loss": loss, "L_ML": l_ml, "L_CE": l_ce, "kept": n_kept}
