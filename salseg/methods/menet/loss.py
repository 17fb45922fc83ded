"""MEnet losses (paper 003, Sec. II-B): L = L_ML + lambda * L_CE (Eq. 4) with hard-negative mining (Sec. III-B).

Everything is computed per image and vectorised over the batch (no Python loop over images):

* L_CE (Eq. 1): per-pixel 2-class softmax cross entropy.
* L_ML (Eq. 3, the equivalent form of Eq. 2): per pixel i, m_i = ||f_i - mean_own||^2 - ||f_i - mean_other||^2,
  where mean_own / mean_other are the means of f over ALL pixels of the image's region of i / the other region
  (salient or background, from the ground truth). By default f is L2-normalised per pixel first, as in the
  authors' code (``layers/pyloss.py``); then m_i lies in [-4, 4]. ``normalize=False`` is the literal Eq. 3,
  unbounded below. Averaged over ALL pixels of an image, Eq. 3 is exactly -||mean_+ - mean_-||^2; the per-pixel
  form matters once mining selects a subset of pixels.
* ``metric_grad``: ``authors`` (default) back-propagates m_i as ``pyloss.py`` does: the region means are
  constants and the L2 normalisation is passed straight through, so the gradient reaching the network's f_i
  is 2 (mean_other - mean_own) of the normalised features; ``autograd`` differentiates everything (the means
  and the normalisation included).
* Hard-negative mining (authors' code, after SSD): per image keep ALL pixels of the minority class and the
  k = (minority count) HARDEST pixels of the majority class, a 1:1 ratio (``mining_ratio``). Ties in the counts
  make the background the majority. "Hardest" = highest detached per-pixel score: ``mining_score="ml"``
  (authors: m_i alone -- their CE term in the ranking is commented out), ``"total"`` m_i + lambda * ce_i,
  ``"ce"`` ce_i (the CE-only variants always rank by ce_i).
* ``mining_loss``: ``authors`` (default): the kept set selects the L_ML pixels only; L_CE covers every pixel;
  both are summed per image and divided by the image's full pixel count P (``pyloss.py`` divides both
  gradients by the blob size). An image with one class only has no minority and so no mined L_ML pixel (as in
  ``pyloss.py``). ``kept_mean``: the kept set applies to both terms, each the mean over the kept pixels; a
  one-class image keeps all its pixels and its m_i drops the missing other term. Without mining every pixel
  is kept and the two agree. The batch loss is the mean over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VARIANTS = ("menet", "ce_only", "ce_plain")
MINING_SCORES = ("ml", "total", "ce")
MINING_LOSSES = ("authors", "kept_mean")
METRIC_GRADS = ("authors", "autograd")


def _l2_normalize(f: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """f / max(||f||, eps) over dim 1 (a plain sum of squares: faster than F.normalize on (B,C,P) on CPUs)."""
    return f * f.pow(2).sum(1, keepdim=True).clamp_min(eps * eps).rsqrt()


def metric_terms(f: torch.Tensor, y: torch.Tensor, normalize: bool = True, grad: str = "autograd") -> torch.Tensor:
    """Per-pixel L_ML term m_i (Eq. 3) of features ``f`` (B,C,P) and labels ``y`` (B,P) in {0,1} -> (B,P).

    ``grad="authors"``: the same values; the region means are detached and the normalisation is straight-through
    (value normalised, gradient the identity), so d m_i / d f_i = 2 (mean_other - mean_own) as ``pyloss.py``'s
    backward. ||f_i - mean||^2 is expanded as ||f_i||^2 - 2 f_i . mean + ||mean||^2, so no (B,C,P) difference
    tensor is built per region."""
    authors = grad == "authors"
    if normalize:
        f = f + (_l2_normalize(f) - f).detach() if authors else _l2_normalize(f)
    fm = f.detach() if authors else f  # what the region means are taken of
    n_pos = y.sum(1, keepdim=True)  # (B,1)
    n_neg = y.shape[1] - n_pos
    mean_pos = torch.einsum("bcp,bp->bc", fm, y) / n_pos.clamp(min=1)  # (B,C)
    mean_neg = torch.einsum("bcp,bp->bc", fm, 1 - y) / n_neg.clamp(min=1)
    sq = f.pow(2).sum(1)  # (B,P)
    d_pos = (sq - 2 * torch.einsum("bcp,bc->bp", f, mean_pos) + mean_pos.pow(2).sum(1, keepdim=True)).clamp_min(0)
    d_neg = (sq - 2 * torch.einsum("bcp,bc->bp", f, mean_neg) + mean_neg.pow(2).sum(1, keepdim=True)).clamp_min(0)
    pos = y > 0.5
    own = torch.where(pos, d_pos, d_neg)  # ||f_i - mean_own||^2
    other = torch.where(pos, d_neg, d_pos)  # ||f_i - mean_other||^2
    has_other = torch.where(pos, n_neg > 0, n_pos > 0)  # the other region exists in this image
    return own - other * has_other


def hard_negative_mask(y: torch.Tensor, score: torch.Tensor, ratio: float = 1.0,
                       one_class_keeps_all: bool = True) -> torch.Tensor:
    """Kept pixels (B,P) bool: all minority-class pixels + the k highest-``score`` majority pixels,
    k = round(ratio * minority count) (at most the majority count; ties broken by position). ``ratio`` 1 is the
    authors' 1:1; SSD, where the scheme comes from, keeps 3 negatives per positive. An image with only one class
    keeps every pixel, or none with ``one_class_keeps_all=False`` (``pyloss.py``: k = 0 and no minority)."""
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
    return keep | (n_min == 0)[:, None] if one_class_keeps_all else keep


class MEnetLoss(torch.nn.Module):
    """``forward(logits (B,2,H,W), f (B,C,H,W) or None, mask (B,1,H,W)) -> dict(loss, L_ML, L_CE, kept)``.

    ``variant``: ``menet`` (L_ML + lambda L_CE), ``ce_only`` / ``ce_plain`` (L_CE only; Table III).
    ``kept``: per image, the pixels L_ML is taken over.
    """

    def __init__(self, variant: str = "menet", lambda_ce: float = 1.0, normalize: bool = True,
                 mining: bool = True, mining_score: str = "ml", mining_ratio: float = 1.0,
                 mining_loss: str = "authors", metric_grad: str = "authors"):
        super().__init__()
        for key, value, allowed in (("variant", variant, VARIANTS), ("mining_score", mining_score, MINING_SCORES),
                                    ("mining_loss", mining_loss, MINING_LOSSES),
                                    ("metric_grad", metric_grad, METRIC_GRADS)):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
        self.variant, self.lambda_ce, self.normalize = variant, float(lambda_ce), bool(normalize)
        if not float(mining_ratio) > 0:
            raise ValueError(f"mining_ratio must be > 0 (majority pixels kept per minority pixel), got {mining_ratio}")
        self.mining, self.mining_score, self.mining_ratio = bool(mining), mining_score, float(mining_ratio)
        self.mining_loss, self.metric_grad = mining_loss, metric_grad

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
            ml = metric_terms(f.float().reshape(b, f.shape[1], -1), y, self.normalize, self.metric_grad)
        elif f is not None:  # CE-only: L_ML is logged as a diagnostic, not trained
            with torch.no_grad():
                ml = metric_terms(f.float().reshape(b, f.shape[1], -1), y, self.normalize)
        else:
            ml = torch.zeros_like(ce)
        authors = self.mining_loss == "authors"
        if self.mining:
            if self.mining_score == "ce" or not self.uses_metric:
                score = ce
            elif self.mining_score == "ml":
                score = ml
            else:
                score = ml + self.lambda_ce * ce
            keep = hard_negative_mask(y, score, self.mining_ratio, one_class_keeps_all=not authors).float()
        else:
            keep = torch.ones_like(ce)
        n_kept = keep.sum(1)
        if authors:  # pyloss.py: mined L_ML, CE over every pixel, both over the full pixel count P
            l_ml = ((ml * keep).sum(1) / ml.shape[1]).mean()
            l_ce = ce.mean()
        else:  # both terms over the kept pixels (>= 1: a one-class image keeps all)
            l_ce = ((ce * keep).sum(1) / n_kept).mean()
            l_ml = ((ml * keep).sum(1) / n_kept).mean()
        loss = l_ml + self.lambda_ce * l_ce if self.uses_metric else l_ce
        return {"loss": loss, "L_ML": l_ml, "L_CE": l_ce, "kept": n_kept}
