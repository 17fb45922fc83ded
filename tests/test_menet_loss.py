"""MEnet loss (paper 003, Eqs. 1-4) and hard-negative mining as the authors' layers/pyloss.py does it (ranking by
L_ML only, L_ML mined, CE over every pixel, both over the full pixel count, constant means in the backward); the
earlier kept-set mean as an option; the two saliency maps (Eq. 5)."""

import math

import pytest
import torch
import torch.nn.functional as F

from salseg.methods.menet.loss import MEnetLoss, hard_negative_mask, metric_terms
from salseg.methods.menet.saliency import (
    authors_metric_saliency,
    border_band,
    ce_saliency,
    metric_saliency,
    sequential_two_clusters,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _img(values, h=2, w=2):
    """(C, P) feature list -> (1, C, h, w)."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, h, w)


def _mask(values, h=2, w=2):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, h, w)


# ------------------------------------------------------------------------------------------ L_ML by hand
def test_metric_loss_unnormalised_by_hand():
    # C = 1, f = [1, 0, 2, 4], salient = pixel 0: mean_+ = 1, mean_- = 2
    # m = [(1-1)^2-(1-2)^2, (0-2)^2-(0-1)^2, (2-2)^2-(2-1)^2, (4-2)^2-(4-1)^2] = [-1, 3, -1, -5]
    f, y = _img([[1, 0, 2, 4]]), _mask([1, 0, 0, 0])
    m = metric_terms(f.reshape(1, 1, 4), y.reshape(1, 4), normalize=False)
    assert m.tolist() == [[-1.0, 3.0, -1.0, -5.0]]
    logits = torch.zeros(1, 2, 2, 2)  # CE = ln 2 at every pixel
    plain = MEnetLoss(normalize=False, mining=False)(logits, f, y)
    assert plain["L_ML"].item() == pytest.approx(-1.0)  # (-1 + 3 - 1 - 5) / 4
    assert plain["L_CE"].item() == pytest.approx(math.log(2))
    assert plain["loss"].item() == pytest.approx(-1.0 + math.log(2))
    # mining: 1 salient pixel -> keep it + the hardest background pixel (pixel 1, m = 3); authors: / all 4 pixels
    mined = MEnetLoss(normalize=False, mining=True)(logits, f, y)
    assert mined["L_ML"].item() == pytest.approx((-1 + 3) / 4)
    assert mined["loss"].item() == pytest.approx(0.5 + math.log(2))
    assert mined["kept"].tolist() == [2.0]
    kept_mean = MEnetLoss(normalize=False, mining=True, mining_loss="kept_mean")(logits, f, y)
    assert kept_mean["L_ML"].item() == pytest.approx((-1 + 3) / 2)


def test_metric_loss_normalised_by_hand():
    # f = (1,0), (0,1), (0,2) -> (0,1), (3,0) -> (1,0); salient = pixel 0
    # mean_+ = (1,0), mean_- = (1/3, 2/3); m = [-8/9, -16/9, -16/9, 8/9]
    f, y = _img([[1, 0, 0, 3], [0, 1, 2, 0]]), _mask([1, 0, 0, 0])
    m = metric_terms(f.reshape(1, 2, 4), y.reshape(1, 4), normalize=True)
    assert m[0].tolist() == pytest.approx([-8 / 9, -16 / 9, -16 / 9, 8 / 9], abs=1e-6)
    logits = torch.zeros(1, 2, 2, 2)
    assert MEnetLoss(mining=False)(logits, f, y)["L_ML"].item() == pytest.approx(-8 / 9, abs=1e-6)
    # mining keeps pixel 0 and the hardest negative, pixel 3: (-8/9 + 8/9) / 4 = 0
    assert MEnetLoss(mining=True)(logits, f, y)["L_ML"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_unmined_metric_loss_is_minus_the_squared_distance_of_the_region_means(normalize):
    torch.manual_seed(3)
    f = torch.randn(3, 5, 6, 6)
    y = (torch.rand(3, 1, 6, 6) > 0.6).float()
    out = MEnetLoss(normalize=normalize, mining=False)(torch.zeros(3, 2, 6, 6), f, y)
    g = f / f.norm(dim=1, keepdim=True) if normalize else f
    g, w = g.flatten(2), y.flatten(1)
    mu_pos = (g * w[:, None]).sum(-1) / w.sum(1, keepdim=True)
    mu_neg = (g * (1 - w)[:, None]).sum(-1) / (1 - w).sum(1, keepdim=True)
    expected = -(mu_pos - mu_neg).pow(2).sum(1).mean()
    assert out["L_ML"].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


def test_normalised_loss_is_bounded_and_literal_form_is_not():
    torch.manual_seed(0)
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    f = torch.randn(2, 4, 8, 8)
    big = 1000 * f
    logits = torch.zeros(2, 2, 8, 8)
    norm = MEnetLoss(mining=False)
    assert norm(logits, big, y)["L_ML"].item() == pytest.approx(norm(logits, f, y)["L_ML"].item(), abs=1e-4)
    assert -4 <= norm(logits, big, y)["L_ML"].item() <= 4
    literal = MEnetLoss(normalize=False, mining=False)
    assert abs(literal(logits, big, y)["L_ML"].item()) > 100 * abs(literal(logits, f, y)["L_ML"].item())


def test_ce_only_variants_train_the_ce_term_only():
    torch.manual_seed(0)
    f = torch.randn(1, 16, 4, 4, requires_grad=True)
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    y = (torch.rand(1, 1, 4, 4) > 0.5).float()
    out = MEnetLoss(variant="ce_only")(logits, f, y)
    assert out["loss"].item() == pytest.approx(out["L_CE"].item())
    out["loss"].backward()
    assert f.grad is None and logits.grad is not None  # L_ML is logged but not trained
    out = MEnetLoss(variant="ce_plain")(logits, None, y)
    assert out["L_ML"].item() == 0.0 and out["loss"].item() == pytest.approx(out["L_CE"].item())
    with pytest.raises(ValueError, match="needs the metric feature"):
        MEnetLoss(variant="menet")(logits, None, y)
    with pytest.raises(ValueError, match="variant"):
        MEnetLoss(variant="ml_only")


# ------------------------------------------------------------------------------------------ mining
@pytest.mark.parametrize("seed,ratio", [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 3.0), (5, 0.5)])
def test_mining_keeps_minority_plus_k_hardest(seed, ratio):
    g = torch.Generator().manual_seed(seed)
    b, p = 6, 50
    frac = torch.tensor([0.02, 0.1, 0.3, 0.5, 0.7, 0.95])[:, None]
    y = (torch.rand(b, p, generator=g) < frac).float()
    score = torch.rand(b, p, generator=g)
    score[0, :10] = 0.5  # ties
    keep = hard_negative_mask(y, score, ratio)
    for i in range(b):
        pos, neg = y[i] > 0.5, y[i] < 0.5
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        minority, majority = (pos, neg) if n_pos <= n_neg else (neg, pos)
        if min(n_pos, n_neg) == 0:
            assert keep[i].all()
            continue
        k = min(round(ratio * min(n_pos, n_neg)), max(n_pos, n_neg))  # ratio majority pixels per minority pixel
        assert int(keep[i].sum()) == min(n_pos, n_neg) + k
        assert keep[i][minority].all()
        kept_major = score[i][majority & keep[i]]
        dropped_major = score[i][majority & ~keep[i]]
        assert len(kept_major) == k
        if len(dropped_major) and k:
            assert kept_major.min() >= dropped_major.max()  # the k HARDEST


def test_mining_ratio_must_be_positive():
    with pytest.raises(ValueError, match="mining_ratio must be > 0"):
        MEnetLoss(mining_ratio=0)


def _ranking_case(ce_on_pixel_3: float = 10.0):
    """f = [1, 0, 2, 4] (C = 1, unnormalised), salient = pixel 0: m = [-1, 3, -1, -5]. Pixel 3 (background) is
    called salient with logit margin 10: ce_3 = softplus(10) ~ 10.00005, the other pixels ln 2. The hardest
    background pixel is pixel 1 by m alone (3 > -1 > -5) but pixel 3 by m + ce (5.00005 > 3.69 > -0.31)."""
    f, y = _img([[1, 0, 2, 4]]), _mask([1, 0, 0, 0])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 1, 1] = ce_on_pixel_3
    return f, y, logits


def test_authors_mining_ranks_by_the_metric_term_only():
    f, y, logits = _ranking_case()
    ce = [math.log(2)] * 3 + [F.softplus(torch.tensor(10.0)).item()]
    out = MEnetLoss(normalize=False)(logits, f, y)  # defaults: pyloss.py
    assert out["L_ML"].item() == pytest.approx((-1 + 3) / 4)  # pixels 0 and 1, over all 4 pixels
    assert out["L_CE"].item() == pytest.approx(sum(ce) / 4)  # every pixel, the unmined pixel 3 included
    assert out["loss"].item() == pytest.approx(0.5 + sum(ce) / 4)
    total = MEnetLoss(normalize=False, mining_score="total")(logits, f, y)
    assert total["L_ML"].item() == pytest.approx((-1 - 5) / 4)  # pixels 0 and 3
    by_ce = MEnetLoss(normalize=False, mining_score="ce")(logits, f, y)
    assert by_ce["L_ML"].item() == pytest.approx((-1 - 5) / 4)
    earlier = MEnetLoss(normalize=False, mining_score="total", mining_loss="kept_mean")(logits, f, y)
    assert earlier["L_ML"].item() == pytest.approx((-1 - 5) / 2)  # salseg's earlier loss: both terms on the kept set
    assert earlier["L_CE"].item() == pytest.approx((ce[0] + ce[3]) / 2)


def test_authors_ce_covers_every_pixel_and_metric_only_the_mined_ones():
    f, y, logits = _ranking_case()
    f, logits = f.requires_grad_(), logits.requires_grad_()
    MEnetLoss(normalize=False)(logits, f, y)["loss"].backward()
    # CE gradient (softmax - onehot) / P at every pixel: the unmined pixels 2 and 3 get it too
    assert (logits.grad[0, 1].flatten().abs() > 0).all()
    assert logits.grad[0, 1].flatten()[2].item() == pytest.approx(0.5 / 4)  # p_fg = 1/2, y = 0
    # metric gradient (means constant): 2 (mean_other - mean_own) / P on the kept pixels 0 and 1 only
    # mean_+ = 1, mean_- = 2: pixel 0: 2 (2 - 1) / 4; pixel 1: 2 (1 - 2) / 4
    assert f.grad.flatten().tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    f2, logits2 = f.detach().requires_grad_(), logits.detach().requires_grad_()
    MEnetLoss(normalize=False, mining_loss="kept_mean", metric_grad="autograd")(logits2, f2, y)["loss"].backward()
    assert logits2.grad[0, 1].flatten()[2].item() == 0.0  # the kept-set loss ignores unmined pixels' CE
    assert f2.grad.flatten()[2].item() != 0.0  # autograd: pixel 2 still moves the background mean


def test_authors_metric_gradient_passes_the_normalisation_straight_through():
    # f = (1,0), (0,1), (0,2), (3,0) -> normalised (1,0), (0,1), (0,1), (1,0); salient = pixel 0
    # mean_+ = (1,0), mean_- = (1/3, 2/3); m = [-8/9, -16/9, -16/9, 8/9]: mining keeps pixels 0 and 3
    f = _img([[1, 0, 0, 3], [0, 1, 2, 0]]).requires_grad_()
    y = _mask([1, 0, 0, 0])
    out = MEnetLoss()(torch.zeros(1, 2, 2, 2), f, y)
    assert out["L_ML"].item() == pytest.approx((-8 / 9 + 8 / 9) / 4, abs=1e-6)
    out["loss"].backward()
    g = f.grad[0].reshape(2, 4).T  # (pixel, channel)
    # pixel 0: 2 (mean_- - mean_+) / 4 = (-1/3, 1/3); pixel 3: the opposite -- NOT divided by ||f_3|| = 3
    assert g.flatten().tolist() == pytest.approx([-1 / 3, 1 / 3, 0, 0, 0, 0, 1 / 3, -1 / 3], abs=1e-6)
    f2 = f.detach().requires_grad_()
    MEnetLoss(metric_grad="autograd")(torch.zeros(1, 2, 2, 2), f2, y)["loss"].backward()
    assert not torch.allclose(f2.grad, f.grad, atol=1e-3)


def test_mining_and_gradient_options_are_checked():
    with pytest.raises(ValueError, match="mining_loss must be one of"):
        MEnetLoss(mining_loss="mean")
    with pytest.raises(ValueError, match="metric_grad must be one of"):
        MEnetLoss(metric_grad="exact")


# ------------------------------------------------------------------------------------------ degenerate masks
@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("mining_loss", ["authors", "kept_mean"])
def test_one_class_masks_give_finite_loss_and_gradients(value, normalize, mining_loss):
    torch.manual_seed(0)
    f = torch.randn(2, 16, 8, 8, requires_grad=True)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    y = torch.full((2, 1, 8, 8), value)
    out = MEnetLoss(normalize=normalize, mining_loss=mining_loss)(logits, f, y)
    assert all(torch.isfinite(out[k]).all() for k in ("loss", "L_ML", "L_CE"))
    if mining_loss == "authors":  # pyloss.py: no minority, k = 0 -> no L_ML pixel; CE still on all 64
        assert out["kept"].tolist() == [0.0, 0.0] and out["L_ML"].item() == 0.0
        ce = F.cross_entropy(logits, y[:, 0].long())
        assert out["L_CE"].item() == pytest.approx(ce.item(), rel=1e-5)
    else:
        assert out["kept"].tolist() == [64.0, 64.0]  # nothing to balance: every pixel kept
        assert out["L_ML"].item() >= 0  # only the pull-to-own-centre term is left
    out["loss"].backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(logits.grad).all()


def test_batched_equals_per_image():
    torch.manual_seed(1)
    f = torch.randn(4, 16, 8, 8)
    logits = torch.randn(4, 2, 8, 8)
    y = (torch.rand(4, 1, 8, 8) < torch.tensor([0.0, 0.1, 0.5, 1.0]).view(4, 1, 1, 1)).float()
    loss = MEnetLoss()
    batched = loss(logits, f, y)
    single = [loss(logits[i:i + 1], f[i:i + 1], y[i:i + 1]) for i in range(4)]
    for key in ("loss", "L_ML", "L_CE"):
        assert batched[key].item() == pytest.approx(sum(s[key].item() for s in single) / 4, abs=1e-5)


# ------------------------------------------------------------------------------------------ saliency maps
def test_metric_saliency_by_hand_and_fallback():
    f = _img([[1, 1, 0, 0], [0, 0, 1, 1]])  # background pixels (1,0), salient pixels (0,1)
    p = _mask([0.1, 0.2, 0.9, 0.8])
    s = metric_saliency(f, p)
    assert s.flatten().tolist() == pytest.approx([0, 0, 1, 1], abs=1e-6)
    # the CE head labels nothing background: soft weights (1 - p) -> still background-centred
    s_soft = metric_saliency(f, _mask([0.6, 0.6, 0.99, 0.99]))
    assert s_soft.flatten()[:2].max() < 0.05 and s_soft.flatten()[2:].min() == pytest.approx(1.0)
    # p == 1 everywhere: plain mean, still finite and in [0, 1]
    s_all = metric_saliency(f, torch.ones(1, 1, 2, 2))
    assert torch.isfinite(s_all).all() and s_all.min() >= 0 and s_all.max() <= 1
    # a constant feature map gives zeros, not NaN
    assert metric_saliency(torch.ones(1, 16, 2, 2), p).abs().sum() == 0


def test_saliency_batched_equals_per_image_shapes_range():
    torch.manual_seed(2)
    f = torch.randn(3, 16, 8, 8)
    logits = torch.randn(3, 2, 8, 8)
    logits[1, 1] += 10.0  # image 1: the CE head labels no pixel background -> fallback path
    p = ce_saliency(logits)
    s = metric_saliency(f, p)
    assert p.shape == s.shape == (3, 1, 8, 8) and p.dtype == s.dtype == torch.float32
    for m in (p, s):
        assert m.min() >= 0 and m.max() <= 1 and torch.isfinite(m).all()
    for i in range(3):
        assert torch.allclose(metric_saliency(f[i:i + 1], p[i:i + 1]), s[i:i + 1], atol=1e-6)
        assert torch.allclose(ce_saliency(logits[i:i + 1]), p[i:i + 1])
    assert s.flatten(1).amax(1).tolist() == pytest.approx([1, 1, 1])  # min-max normalised per image


def test_sequential_two_clusters_by_hand():
    """pyloss.py's test-phase clustering: (1,0) starts cluster 1; (0.9,0.1) and (0,1) join it (squared distances
    0.02 and 1.805 < 2 opens no second cluster); (-1,0) is 2.8 from cluster 1's mean (0.633, 0.367) > 2: cluster 2;
    the last (0,1) is 0.80 from cluster 1, 2.0 from cluster 2: cluster 1. Cluster 1 (4 samples) is the larger."""
    samples = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [-1, 0], [0, 1]])
    assert sequential_two_clusters(samples).tolist() == pytest.approx([1.9 / 4, 2.1 / 4])
    # the larger cluster wins even when it starts second
    assert sequential_two_clusters(torch.tensor([[1.0, 0], [-1, 0], [-1, 0]])).tolist() == pytest.approx([-1, 0])


def test_authors_metric_readout_uses_border_background_and_squared_distance():
    """8 x 8 image, 1-pixel border band (20/224 of 8 rounds to 1). Border: feature e0; interior background (CE
    p < 0.5): e2; the object (p > 0.5): e1. The authors' background mean is e0 (border only), so interior
    background is as far as the object (squared distance 2 -> 1 after min-max) and the border is 0. Eq. 5 as
    written averages all CE-background pixels (28 e0 + 32 e2), which puts the border and the interior background
    between the two."""
    band = border_band(8, 8)
    assert band.sum() == 28 and not band[1:7, 1:7].any()
    f = torch.zeros(1, 16, 8, 8)
    f[0, 0][band] = 1.0
    obj = torch.zeros(8, 8, dtype=torch.bool)
    obj[2:4, 2:4] = True
    f[0, 1][obj] = 1.0
    f[0, 2][~band & ~obj] = 1.0
    p = torch.where(obj, 0.9, 0.1).reshape(1, 1, 8, 8)
    s = authors_metric_saliency(f, p)[0, 0]
    assert s[band].tolist() == pytest.approx([0.0] * 28) and s[obj].tolist() == pytest.approx([1.0] * 4)
    assert s[~band & ~obj].tolist() == pytest.approx([1.0] * 32)
    paper = metric_saliency(f, p)[0, 0]
    # mean_b = (28 e0 + 32 e2) / 60: distances 0.754 (border), 0.660 (interior), 1.222 (object) -> min-max
    assert paper[~band & ~obj].abs().max() < 1e-6 and paper[obj].min() == pytest.approx(1.0)
    assert paper[band].tolist() == pytest.approx([0.1667] * 28, abs=1e-3)
    # squared, not the norm: an interior pixel (e0 + e1) / sqrt 2 lies at squared distance 2 - sqrt 2 of e0, so
    # (2 - sqrt 2) / 2 after min-max (the norm would give sqrt(2 - sqrt 2) / sqrt 2 = 0.541)
    f[0, :, 6, 6] = 0.0
    f[0, 0, 6, 6], f[0, 1, 6, 6] = 1.0, 1.0  # (0.707, 0.707) after normalisation
    s = authors_metric_saliency(f, p)[0, 0]
    assert s[6, 6].item() == pytest.approx((2 - 2 ** 0.5) / 2, abs=1e-5)


def test_authors_metric_readout_falls_back_to_eq5_without_border_background():
    torch.manual_seed(3)
    f = torch.randn(2, 16, 8, 8)
    p = torch.full((2, 1, 8, 8), 0.9)
    p[:, :, 3:5, 3:5] = 0.1  # only interior pixels are CE background
    s = authors_metric_saliency(f, p)
    fl = f * f.pow(2).sum(1, keepdim=True).rsqrt()
    mean_b = fl[:, :, 3:5, 3:5].mean((2, 3), keepdim=True)
    d = (fl - mean_b).pow(2).sum(1, keepdim=True)
    ref = (d - d.amin((2, 3), keepdim=True)) / (d.amax((2, 3), keepdim=True) - d.amin((2, 3), keepdim=True))
    assert torch.allclose(s, ref, atol=1e-5) and torch.isfinite(s).all()
