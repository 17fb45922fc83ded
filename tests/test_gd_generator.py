"""GD saliency generator (papers 002 / 001): the update rule, the costs, batching, and bad input."""

import pytest
import torch
from torch import nn

from salseg.methods.gd_saliency import (
    GDSaliency,
    average_maps,
    cost_per_image,
    masked_targets,
    normalize_maps,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _classifier(n_out=4, seed=0):
    """A small CNN with batch norm (eval mode must make the images of a batch independent)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_out))
    with torch.no_grad():  # non-trivial running statistics
        net.train()
        for _ in range(3):
            net(torch.rand(8, 3, 24, 24))
    return net


def _images(n=4, size=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 0.4
    x[:, :, 6:16, 8:18] += 0.5  # a bright object
    return x


@pytest.mark.parametrize("cost,n_out", [("F1", 4), ("F2", 4), ("F3", 8), ("clamped", 4)])
def test_cost_falls_over_the_steps_and_maps_are_valid(cost, n_out):
    model = _classifier(n_out)
    gen = GDSaliency(model, cost, steps=8, step_size=0.02, gamma=1.0)
    res = gen(_images(), labels=torch.tensor([0, 1, 2, 3]))
    assert res.costs.shape == (9, 4)
    assert (res.costs[-1] < res.costs[0]).all(), res.costs[[0, -1]]
    assert res.maps.shape == (4, 1, 24, 24) and res.maps.dtype == torch.float32
    assert res.maps.min() >= 0 and torch.allclose(res.maps.flatten(1).amax(1), torch.ones(4))
    assert (res.raw >= 0).all()  # only positive gradients are subtracted: X can only decrease
    if cost == "F3":
        assert res.target.tolist() == [4, 5, 6, 7]  # the masked counterpart l + N


def test_one_step_is_eq_2_exactly():
    model = _classifier().eval()
    x0, labels = _images(2), torch.tensor([1, 3])
    res = GDSaliency(model, "F1", steps=1, step_size=0.1, grad_norm="none", diff_norm="none")(x0, labels)
    x = x0.clone().requires_grad_(True)
    cost = model(x).log_softmax(1).gather(1, labels[:, None]).sum()  # F1 = ln y_l
    (grad,) = torch.autograd.grad(cost, x)
    assert torch.allclose(res.final, x0 - 0.1 * grad.clamp_min(0), atol=1e-7)
    expected = (0.1 * grad.clamp_min(0)).mean(1, keepdim=True)
    assert torch.allclose(res.raw, expected, atol=1e-7)


def test_step_decay_and_gradient_normalisation():
    model = _classifier().eval()
    x0 = _images(2)
    res = GDSaliency(model, "F1", steps=2, step_size=0.05, decay=0.5)(x0, torch.tensor([0, 1]))
    # each normalised step is in [0, 1]: the total change is at most eps * (1 + decay) per pixel
    assert (x0 - res.final).max() <= 0.05 * 1.5 + 1e-6
    assert (x0 - res.final).flatten(1).amax(1).min() > 0.05  # the max pixel of step 1 moved by the full eps


def test_batched_equals_per_image_and_model_mode_is_restored():
    model = _classifier()
    model.train()  # the generator must evaluate in eval mode and give the model back as it was
    x, labels = _images(4), torch.tensor([2, 0, 3, 1])
    gen = GDSaliency(model, "clamped", steps=5, step_size=0.03, gamma=10.0, theta=0.001)
    batched = gen(x, labels)
    assert model.training and all(m.training for m in model.modules())
    for i in range(4):
        single = gen(x[i:i + 1], labels[i:i + 1])
        assert torch.allclose(batched.maps[i], single.maps[0], atol=1e-5)
        assert torch.allclose(batched.costs[:, i], single.costs[:, 0], atol=1e-5)


def test_labels_default_to_the_label_models_top1_and_inference_mode_is_left():
    model, cnn1 = _classifier(8), _classifier(4, seed=3).eval()
    x = _images(3)
    with torch.no_grad():
        expected = cnn1(x).argmax(1)
    with torch.inference_mode():  # as in a Lightning test_step
        res = GDSaliency(model, "F3", label_model=cnn1, steps=2)(x)
    assert torch.equal(res.labels, expected) and torch.equal(res.target, expected + 4)
    assert res.maps.shape == (3, 1, 24, 24)
    assert torch.equal(GDSaliency(model, "F1", steps=1)(x).labels, model.eval()(x).argmax(1))


def test_clamped_cost_formula():
    z0 = torch.tensor([[2.0, 1.0, -1.0]])
    z = torch.tensor([[1.5, 1.2, -0.5]])
    target = torch.tensor([0])
    # a_l + gamma / 2 * sum_{k != l} (a_k - o_k)^2 = 1.5 + 3 / 2 * (0.2^2 + 0.5^2)
    assert cost_per_image("clamped", z, target, z0, gamma=3.0).item() == pytest.approx(1.5 + 1.5 * 0.29)
    assert cost_per_image("clamped", z0, target, z0, gamma=3.0).item() == pytest.approx(2.0)  # t = 0: a_l
    p = z.softmax(1)[0]
    assert cost_per_image("F1", z, target).item() == pytest.approx(p[0].log().item())
    assert cost_per_image("F2", z, torch.tensor([1])).item() == pytest.approx(-p[1].log().item())


def test_prune_and_normalisations():
    s = torch.tensor([[[[0.0, 0.2], [0.5, 1.0]]]])
    assert torch.allclose(normalize_maps(s, "l2").norm(), torch.tensor(1.0))
    assert torch.equal(normalize_maps(torch.zeros(1, 1, 2, 2), "max"), torch.zeros(1, 1, 2, 2))
    model = _classifier().eval()
    x, labels = _images(2), torch.tensor([0, 1])
    plain = GDSaliency(model, "F1", steps=3)(x, labels)
    pruned = GDSaliency(model, "F1", steps=3, theta=0.5, prune_on="max")(x, labels)
    kept = plain.maps > 0.5
    assert torch.equal(pruned.maps > 0, kept)  # theta as a fraction of each map's peak
    assert torch.allclose(pruned.maps[kept], ((plain.maps - 0.5) / 0.5)[kept], atol=1e-6)


def test_average_maps():
    a = torch.tensor([[[[0.0, 2.0]]]])
    b = torch.tensor([[[[1.0, 1.0]]]])
    assert torch.allclose(average_maps(a, b), torch.tensor([[[[0.5, 1.0]]]]) / 1.0)
    with pytest.raises(ValueError, match="different shapes"):
        average_maps(a, torch.zeros(1, 1, 1, 3))


def test_bad_input_gets_clear_errors():
    model = _classifier().eval()
    with pytest.raises(ValueError, match="mixes image sizes"):
        GDSaliency(model)([torch.rand(3, 24, 24), torch.rand(3, 20, 24)], labels=[0, 1])
    with pytest.raises(ValueError, match="probabilities"):
        GDSaliency(nn.Sequential(model, nn.Softmax(1)))(_images(2), labels=[0, 1])
    with pytest.raises(ValueError, match="class 5 is not among the model's 4 outputs"):
        GDSaliency(model)(_images(1), labels=[5])
    with pytest.raises(ValueError, match="F3 needs CNN3's 2N outputs"):
        GDSaliency(_classifier(5), "F3")(_images(1), labels=[0])
    with pytest.raises(ValueError, match="image 1: predicted class 2 has no masked counterpart"):
        masked_targets(torch.tensor([0, 2]), 8, masked_class=[4, 5, None, 7])
    with pytest.raises(ValueError, match="cost must be one of"):
        GDSaliency(model, "F4")
    with pytest.raises(ValueError, match="got 3 labels for 2 images"):
        GDSaliency(model)(_images(2), labels=[0, 1, 2])
    gray = torch.rand(2, 1, 24, 24)  # defined handling: one channel is repeated to RGB
    a = GDSaliency(model, steps=2)(gray, labels=[0, 1]).maps
    b = GDSaliency(model, steps=2)(gray.expand(-1, 3, -1, -1), labels=[0, 1]).maps
    assert torch.equal(a, b)


def test_gradient_baseline_is_the_channel_max_of_the_absolute_class_gradient():
    from salseg.methods.gd_saliency.gradient import gradient_saliency

    model = _classifier()
    model.train()
    x, labels = _images(3), torch.tensor([2, 0, 1])
    maps = gradient_saliency(model, x, labels)
    assert model.training  # mode restored
    xr = x.clone().requires_grad_(True)
    model.eval()
    (grad,) = torch.autograd.grad(model(xr).gather(1, labels[:, None]).sum(), xr)
    expected = normalize_maps(grad.abs().amax(1, keepdim=True), "max")
    assert maps.shape == (3, 1, 24, 24) and torch.allclose(maps, expected, atol=1e-6)
    single = gradient_saliency(model, x[1:2], labels[1:2])
    assert torch.allclose(single[0], maps[1], atol=1e-6)
    with torch.inference_mode():  # as in a Lightning test step, labels made there too
        assert torch.allclose(gradient_saliency(model, x, labels.clone()), maps, atol=1e-6)


# ---------------------------------------------------------------- the authors' descent (examples/do_saliency.m)
def _linear_model(weights: torch.Tensor) -> nn.Module:
    """z = W vec(X) for images (1, 3, 1, P): the input gradient of output k is row k of W, known by hand."""
    lin = nn.Linear(weights.shape[1], weights.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(weights)
    return nn.Sequential(nn.Flatten(), lin)


def test_clamped_cost_gradient_is_the_authors_error_signal():
    # z = W x, x in R^2, W = [[1, 2], [0, 1], [1, -1]]; x0 = (1, 1): o = (3, 1, 0); x = (1.5, 1): a = (3.5, 1, 0.5)
    w = torch.tensor([[1.0, 2.0], [0.0, 1.0], [1.0, -1.0]])
    x0, x = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.5, 1.0]], requires_grad=True)
    z = x @ w.T
    cost = cost_per_image("clamped", z, torch.tensor([0]), x0 @ w.T, gamma=200.0)
    (dz,) = torch.autograd.grad(cost.sum(), z, retain_graph=True)
    # error signal (paper 001 Eq. 3, vl_nnsoftmaxloss_newsaliency_original_mb.m): 1 at l, alpha (a_k - o_k) else
    assert torch.allclose(dz, torch.tensor([[1.0, 200.0 * 0.0, 200.0 * 0.5]]))
    (dx,) = torch.autograd.grad(cost.sum(), x)
    # W^T e = (101, -98); the old 2-gamma: (201, -198)
    assert torch.allclose(dx, torch.tensor([[1 + 100.0, 2 - 100.0]]))


def test_default_gamma_reproduces_alpha_200_over_two_steps():
    torch.manual_seed(0)
    w = torch.randn(3, 6)
    model = _linear_model(w)
    x0 = torch.rand(1, 3, 1, 2)
    res = GDSaliency(model, "clamped", steps=2, step_size=0.1, decay=0.5, grad_norm="none")(x0, [1])
    o = w @ x0.flatten()
    e0 = torch.tensor([0.0, 1.0, 0.0])  # t = 0: a = o, only the class node
    x1 = x0.flatten() - 0.1 * (w.T @ e0).clamp_min(0)
    e1 = 200.0 * (w @ x1 - o)
    e1[1] = 1.0
    x2 = x1 - 0.1 * 0.5 * (w.T @ e1).clamp_min(0)
    assert torch.allclose(res.final.flatten(), x2, atol=1e-5)


# The gradient of class l of the linear model, per channel over 3 pixels; its positive part per channel:
# R (1, 3, 2), G (0.5, 0.25, 0), B (0, 2, 1). Per channel min-max (the authors): R (0, 1, .5), G (1, .5, 0),
# B (0, 1, .5); per image (min 0, max 3): R (1/3, 1, 2/3), G (1/6, 1/12, 0), B (0, 2/3, 1/3).
_W_L = torch.tensor([[1.0, 3.0, 2.0], [0.5, 0.25, -1.0], [-1.0, 2.0, 1.0]])
_PER_CHANNEL = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
_PER_IMAGE = torch.tensor([[1 / 3, 1.0, 2 / 3], [1 / 6, 1 / 12, 0.0], [0.0, 2 / 3, 1 / 3]])


def _one_step(**kw):
    w = torch.stack([torch.zeros(9), _W_L.flatten()])  # output 1 = class l; output 0 is clamped
    x0 = torch.full((1, 3, 1, 3), 0.5)
    return x0, GDSaliency(_linear_model(w), "clamped", steps=1, step_size=0.1, **kw)(x0, [1])


def test_positive_gradient_is_min_max_normalised_per_channel():
    x0, res = _one_step()  # defaults: the authors' per-channel normalisation
    assert torch.allclose(res.final[0, :, 0], x0[0, :, 0] - 0.1 * _PER_CHANNEL, atol=1e-6)
    x0, res = _one_step(grad_norm="per_image")
    assert torch.allclose(res.final[0, :, 0], x0[0, :, 0] - 0.1 * _PER_IMAGE, atol=1e-6)


def test_each_channel_of_the_difference_is_min_max_normalised_before_the_rgb_mean():
    # X0 - X1 = 0.1 * _PER_IMAGE; per channel min-max gives _PER_CHANNEL, whose RGB mean is (1/3, 5/6, 1/3)
    _, res = _one_step(grad_norm="per_image")
    assert torch.allclose(res.raw.flatten(), torch.tensor([1 / 3, 5 / 6, 1 / 3]), atol=1e-6)
    assert torch.allclose(res.unscaled, res.raw) and torch.allclose(res.maps.flatten(), torch.tensor([.4, 1, .4]))
    _, plain = _one_step(grad_norm="per_image", diff_norm="none")  # the plain RGB mean: 0.1 (1/6, 7/12, 1/3)
    assert torch.allclose(plain.raw.flatten(), 0.1 * torch.tensor([1 / 6, 7 / 12, 1 / 3]), atol=1e-6)
    with pytest.raises(ValueError, match="grad_norm must be one of"):
        GDSaliency(_classifier(), grad_norm="channel")
