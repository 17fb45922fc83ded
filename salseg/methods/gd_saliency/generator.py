"""Saliency by gradient descent on the input image (papers 002, Algorithm 1, and 001, Algorithm 1).

Given a classifier (ANY ``nn.Module`` mapping images (B, 3, H, W) in [0, 1] to logits (B, K); it normalises its
own input) and the class l of each image (from CNN1, or the classifier's own top-1), the image is modified for T
steps to reduce a class-specific cost F, flooring negative gradients (Eq. 2 of both papers):

    X(t+1) = X(t) - eps_t * max(dF/dX, 0)

and the raw saliency map is the RGB mean of X(0) - X(T), pruned by theta and normalised.

Costs (``cost``), on the logits z of the modified image:

* ``F1`` (002 Eq. 1, CNN1):  ln softmax(z)_l -- lower it: the object of class l should disappear;
* ``F2`` (002 Eq. 3, CNN2, N masked classes): -ln softmax(z)_l -- raise the masked class of l;
* ``F3`` (002 Eq. 4, CNN3, 2N outputs): -ln softmax(z)_lbar, lbar the masked counterpart of l (default l + N);
* ``clamped`` (001 Eq. 1): a_l + gamma / 2 * sum_{k != l} (a_k - o_k)^2 on pre-softmax outputs, o = the outputs
  for the original image: lower a_l while the other outputs stay clamped to their initial values. Its error signal
  (001 Eq. 3) is dF/da_k = gamma (a_k - o_k), dF/da_l = 1: gamma is the authors' ``alpha`` (200 in
  examples/do_saliency.m; vl_nnsoftmaxloss_newsaliency_original_mb.m returns alpha * (X - target), 1 at the class).

The authors' code (mowangphy/cnn_based_saliency, examples/do_saliency.m) sets the defaults: 35 steps, step size 20
on the 0-255 scale (20/255 here, images in [0, 1]) decayed x0.999 after each step, gamma (their alpha) 200, and two
normalisations (``grad_norm`` / ``diff_norm``, default ``per_channel``):

* before each step, the positive gradient is min-max normalised per image AND colour channel, over H x W
  (``max(dataGradient, [], 1)`` then ``max(., [], 2)``: one (min, max) per channel); ``per_image`` normalises over
  C x H x W instead, ``none`` steps with the raw positive gradient;
* at the end, each colour channel of X(0) - X(T) is min-max normalised over H x W before the RGB mean
  (``gradient_hengyue_norm``); ``none`` takes the plain RGB mean. The authors' raw map is therefore in [0, 1], its
  peak at most 1 (:mod:`.refine`'s authors' recipe multiplies its Otsu level by that peak).

A constant channel (max = min) normalises to 0 here (MATLAB's 0 / 0 is NaN). Paper 002 gives no step size; the same
defaults apply to F1-F3.

Batching: images are independent (the model runs in eval mode: batch norm uses its running statistics), so the
gradient of the SUMMED cost with respect to the batch holds each image's own gradient. One forward and one
backward per step for the whole batch, never a loop over images; ``tests/test_gd_generator.py`` checks that
batched and per-image maps agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from salseg.maps import minmax_normalize

COSTS = ("F1", "F2", "F3", "clamped")
NORMALIZATIONS = ("max", "l2", "none")
GRAD_NORMS = ("per_channel", "per_image", "none")  # per_channel: the authors' code
DIFF_NORMS = ("per_channel", "none")  # per_channel: the authors' code


@dataclass
class GDResult:
    """``maps`` (B, 1, H, W) float32 saliency; ``labels`` (B,) the class l each map is for; ``target`` (B,) the
    output node the cost reads (l, or lbar for F3); ``costs`` (T + 1, B) the cost of each image before each step
    and after the last one (it should fall); ``final`` (B, 3, H, W) X(T); ``raw`` (B, 1, H, W) the RGB mean of
    X(0) - X(T) (each channel min-max normalised first with ``diff_norm: per_channel``), before pruning;
    ``unscaled`` the pruned map before the output normalisation (the authors' scale, what refinement reads)."""

    maps: Tensor
    labels: Tensor
    target: Tensor
    costs: Tensor
    final: Tensor
    raw: Tensor = field(repr=False, default=None)
    unscaled: Tensor = field(repr=False, default=None)


def as_image_batch(images: Tensor | Sequence[Tensor]) -> Tensor:
    """(B, 3, H, W) float from a tensor or a list of (3, H, W) / (1, H, W) images of ONE size. Grayscale (one
    channel) is repeated to RGB (a classifier trained on colour images sees a gray image as R = G = B)."""
    if not isinstance(images, Tensor):
        images = list(images)
        sizes = sorted({tuple(im.shape[-2:]) for im in images})
        if len(sizes) > 1:
            raise ValueError(f"GD saliency: the batch mixes image sizes {sizes}; one backward pass needs one size "
                             "(resize the images, or generate each size separately)")
        images = torch.stack(list(images))
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"GD saliency expects images (B, 3, H, W) (or 1 channel), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if not images.is_floating_point():
        raise ValueError(f"GD saliency expects float images in [0, 1], got dtype {images.dtype}")
    return images


def check_logits(z: Tensor, where: str = "the classifier") -> None:
    """Reject outputs that look like probabilities: every row in [0, 1] summing to 1. The costs are defined on
    logits (F1-F3 apply log-softmax themselves; the clamped cost reads pre-softmax outputs)."""
    if z.ndim != 2:
        raise ValueError(f"{where} must return logits of shape (B, K), got {tuple(z.shape)}")
    with torch.no_grad():
        zf = z.detach().float()
        if z.shape[1] > 1 and bool(((zf >= 0) & (zf <= 1)).all()) and bool(
                torch.allclose(zf.sum(1), torch.ones_like(zf[:, 0]), atol=1e-4)):
            raise ValueError(f"{where} returns probabilities (rows in [0, 1] summing to 1), but GD saliency needs "
                             "the logits before softmax; remove the final softmax layer")


def masked_targets(labels: Tensor, n_outputs: int, masked_class: Sequence[int] | None = None) -> Tensor:
    """lbar for F3: ``masked_class[l]`` when a table is given, else l + N with N = n_outputs / 2 (CNN3's layout:
    the N original classes, then the N masked ones)."""
    if masked_class is None:
        if n_outputs % 2:
            raise ValueError(f"F3 needs CNN3's 2N outputs (originals, then masked classes), got {n_outputs} outputs; "
                             "pass masked_class to map each class to its masked node")
        n = n_outputs // 2
        bad = labels[(labels < 0) | (labels >= n)]
        if bad.numel():
            raise ValueError(f"class {int(bad[0])} has no masked counterpart among CNN3's {n_outputs} outputs "
                             f"(classes 0..{n - 1} map to {n}..{n_outputs - 1})")
        return labels + n
    table = list(masked_class)
    out = []
    for i, lab in enumerate(labels.tolist()):
        if not 0 <= lab < len(table) or table[lab] is None or not 0 <= int(table[lab]) < n_outputs:
            raise ValueError(f"image {i}: predicted class {lab} has no masked counterpart in masked_class "
                             f"(length {len(table)}, {n_outputs} outputs)")
        out.append(int(table[lab]))
    return torch.tensor(out, dtype=torch.long, device=labels.device)


def cost_per_image(cost: str, z: Tensor, target: Tensor, z0: Tensor | None = None, gamma: float = 200.0) -> Tensor:
    """(B,) cost of each image: F1 / F2 / F3 / clamped (see the module docstring) for logits ``z`` (B, K). The
    clamped penalty is gamma / 2 * sum (a_k - o_k)^2, so its gradient is the authors' gamma (a_k - o_k)."""
    idx = target[:, None]
    if cost == "clamped":
        a_l = z.gather(1, idx)[:, 0]
        others = torch.ones_like(z, dtype=torch.bool).scatter_(1, idx, False)
        penalty = ((z - z0).pow(2) * others).sum(1)
        return a_l + 0.5 * gamma * penalty
    log_p = z.log_softmax(1).gather(1, idx)[:, 0]
    return log_p if cost == "F1" else -log_p


def minmax(g: Tensor, per: str = "per_channel") -> Tensor:
    """Min-max normalise (B, C, H, W) to [0, 1]: ``per_channel`` one (min, max) per image and channel over H x W
    (the authors' ``max(max(G, [], 1), [], 2)``), ``per_image`` one per image over C x H x W, ``none`` leaves g. A
    constant slice becomes 0."""
    if per == "none":
        return g
    return minmax_normalize(g, 2 if per == "per_channel" else 1)


def normalize_maps(s: Tensor, how: str = "max") -> Tensor:
    """Per image: ``max`` scales to [0, 1] (the suite's map contract), ``l2`` to unit norm (the papers' S / ||S||),
    ``none`` leaves S. An all-zero map stays zero."""
    if how == "none":
        return s
    flat = s.flatten(1)
    scale = flat.amax(1, keepdim=True) if how == "max" else flat.norm(dim=1, keepdim=True)
    return torch.where(scale > 0, flat / scale.clamp_min(1e-12), torch.zeros_like(flat)).view_as(s)


class GDSaliency:
    """Gradient-descent saliency generator; call it with a batch: ``GDSaliency(model, cost="F1")(images)``.

    Args:
        model: classifier returning logits (B, K) for images in [0, 1].
        cost: ``F1`` | ``F2`` | ``F3`` | ``clamped``.
        label_model: the classifier that names l (CNN1 for F2 / F3); default ``model`` (top-1 of the model itself,
            as for F1 and the clamped cost). Labels can also be passed to the call.
        steps: T. step_size: eps on the [0, 1] scale. decay: eps_t = step_size * decay^t.
        grad_norm: min-max of the positive gradient before each step: ``per_channel`` (the authors': per image and
            colour channel over H x W) | ``per_image`` (over C x H x W) | ``none``.
        diff_norm: ``per_channel`` (the authors': min-max each channel of X(0) - X(T) over H x W before the RGB
            mean) | ``none``.
        gamma: the clamping penalty's error-signal weight (clamped cost only): dF/da_k = gamma (a_k - o_k), the
            authors' alpha.
        theta: prune threshold, S = max(S - theta, 0), on the scale of ``prune_on``: ``raw`` (default, the papers'
            order: prune the RGB-mean difference, then normalise) or ``max`` (scale S to [0, 1] first, so theta is
            a fraction of each map's peak, independent of step size and T).
        normalize: ``max`` | ``l2`` | ``none`` for the output maps.
        clamp_images: keep X(t) in [0, 1] (a valid image) after each step; off by default (the papers do not).
        masked_class: F3 only, the masked output node of each class (default l + N).
    """

    def __init__(self, model: nn.Module, cost: str = "F1", *, label_model: nn.Module | None = None, steps: int = 35,
                 step_size: float = 20 / 255, decay: float = 0.999, grad_norm: str = "per_channel",
                 diff_norm: str = "per_channel", gamma: float = 200.0, theta: float = 0.0, prune_on: str = "raw",
                 normalize: str = "max", clamp_images: bool = False, masked_class: Sequence[int] | None = None):
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if grad_norm not in GRAD_NORMS:
            raise ValueError(f"grad_norm must be one of {GRAD_NORMS}, got {grad_norm!r}")
        if diff_norm not in DIFF_NORMS:
            raise ValueError(f"diff_norm must be one of {DIFF_NORMS}, got {diff_norm!r}")
        if prune_on not in ("max", "raw"):
            raise ValueError(f"prune_on must be 'max' or 'raw', got {prune_on!r}")
        if int(steps) < 1 or not step_size > 0 or not 0 < decay <= 1 or theta < 0:
            raise ValueError(f"need steps >= 1, step_size > 0, 0 < decay <= 1, theta >= 0; got steps={steps}, "
                             f"step_size={step_size}, decay={decay}, theta={theta}")
        self.model, self.label_model, self.cost = model, label_model, cost
        self.steps, self.step_size, self.decay = int(steps), float(step_size), float(decay)
        self.grad_norm, self.diff_norm = grad_norm, diff_norm
        self.gamma, self.theta = float(gamma), float(theta)
        self.prune_on, self.normalize, self.clamp_images = prune_on, normalize, bool(clamp_images)
        self.masked_class = masked_class

    @staticmethod
    def _eval(model: nn.Module) -> dict[nn.Module, bool]:
        modes = {m: m.training for m in model.modules()}
        model.eval()
        return modes

    def predict_labels(self, images: Tensor) -> Tensor:
        """Top-1 class of ``label_model`` (or the model) for each image."""
        net = self.label_model if self.label_model is not None else self.model
        modes = self._eval(net)
        try:
            with torch.no_grad():
                z = net(images)
            check_logits(z, "the label model")
            return z.argmax(1)
        finally:
            for m, training in modes.items():
                m.train(training)

    def __call__(self, images: Tensor | Sequence[Tensor], labels: Tensor | Sequence[int] | None = None) -> GDResult:
        # Lightning runs test/predict steps under inference mode, where no gradient exists: leave it here.
        with torch.inference_mode(False), torch.enable_grad():
            return self._generate(images, labels)

    def _generate(self, images, labels) -> GDResult:
        x0 = as_image_batch(images).detach().clone()
        if labels is None:
            labels = self.predict_labels(x0)
        labels = torch.as_tensor(labels, dtype=torch.long, device=x0.device).detach().clone().reshape(-1)
        if labels.numel() != x0.shape[0]:
            raise ValueError(f"got {labels.numel()} labels for {x0.shape[0]} images")
        modes = self._eval(self.model)
        # The descent needs dF/dX only: the parameters leave autograd, so no graph node asks for their gradients
        # (torch.autograd.grad to X already skipped them: benchmarks/bench_gd.py measures a step at about one
        # forward + one input-only backward either way). The flags are restored afterwards (a fine-tuned
        # classifier keeps training).
        frozen = [p for p in self.model.parameters() if p.requires_grad]
        try:
            for p in frozen:
                p.requires_grad_(False)
            return self._descend(x0, labels)
        finally:
            for p in frozen:
                p.requires_grad_(True)
            for m, training in modes.items():
                m.train(training)

    def _descend(self, x0: Tensor, labels: Tensor) -> GDResult:
        x = x0.clone().requires_grad_(True)
        z = self.model(x)
        check_logits(z)
        n_out = z.shape[1]
        if self.cost == "F3":
            target = masked_targets(labels, n_out, self.masked_class)
        else:
            bad = labels[(labels < 0) | (labels >= n_out)]
            if bad.numel():
                raise ValueError(f"class {int(bad[0])} is not among the model's {n_out} outputs")
            target = labels
        z0 = z.detach() if self.cost == "clamped" else None
        costs = []
        for t in range(self.steps + 1):
            if t == self.steps:  # X(T)'s cost is only recorded: no graph to keep
                with torch.no_grad():
                    z = self.model(x)
            elif t > 0:
                z = self.model(x)
            cost = cost_per_image(self.cost, z, target, z0, self.gamma)
            costs.append(cost.detach())
            if t == self.steps:
                break
            (grad,) = torch.autograd.grad(cost.sum(), x)  # one backward for the batch: images are independent
            step = minmax(grad.clamp_min(0), self.grad_norm)
            with torch.no_grad():
                x -= self.step_size * self.decay**t * step
                if self.clamp_images:
                    x.clamp_(0.0, 1.0)
        final = x.detach()
        # RGB mean of X(0) - X(T) (>= 0 without clamping), each channel min-max normalised first (authors)
        raw = minmax(x0 - final, self.diff_norm).mean(1, keepdim=True)
        if self.prune_on == "raw":
            unscaled = (raw - self.theta).clamp_min(0)
        else:
            unscaled = (normalize_maps(raw.clamp_min(0), "max") - self.theta).clamp_min(0)
        s = normalize_maps(unscaled, self.normalize)
        return GDResult(maps=s.float(), labels=labels, target=target, costs=torch.stack(costs), final=final,
                        raw=raw, unscaled=unscaled.float())


def average_maps(*maps: Tensor) -> Tensor:
    """CNN2 + CNN3 (paper 002, Sec. 3.2): the mean of maps each scaled to [0, 1] per image, rescaled to [0, 1]."""
    if not maps:
        raise ValueError("average_maps needs at least one map")
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) > 1:
        raise ValueError(f"maps of different shapes: {sorted(shapes)}")
    return normalize_maps(torch.stack([normalize_maps(m, "max") for m in maps]).mean(0), "max")

