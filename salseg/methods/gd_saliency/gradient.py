"""The gradient baseline both GD papers compare with (Simonyan et al., ICLR-W 2014, "Deep inside convolutional
networks"): one backward pass of the class score to the input, the map = max over colour channels of |dS_l/dX|.
Captum's ``Saliency`` computes the gradient (``abs=True``); the channel max and the per-image scaling to [0, 1]
are the paper's and the suite's map contract.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from salseg.errors import import_extra

from .generator import as_image_batch, check_logits, normalize_maps


def gradient_saliency(model: nn.Module, images: Tensor, labels: Tensor | None = None) -> Tensor:
    """(B, 1, H, W) maps in [0, 1] for ``labels`` (default: the model's top-1), the model in eval mode."""
    # captum is the `attribution` extra: imported here, so only this map needs it
    saliency = import_extra("captum.attr", "attribution", "the GD 'gradient' baseline map").Saliency
    modes = {m: m.training for m in model.modules()}
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]  # the input gradient alone, as GDSaliency
    try:
        for p in frozen:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():  # usable from a Lightning test step
            x = as_image_batch(images).detach().clone()
            with torch.no_grad():
                z = model(x)
            check_logits(z)
            target = z.argmax(1) if labels is None else torch.as_tensor(labels, device=x.device).long().reshape(-1)
            target = target.clone()  # labels made under inference mode cannot enter autograd
            grad = saliency(model).attribute(x.requires_grad_(True), target=target, abs=True)
        return normalize_maps(grad.amax(1, keepdim=True).detach().float(), "max")
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m, training in modes.items():
            m.train(training)
