"""Optional dense-CRF post-processing of DCSP's segmentation (the fully connected CRF of Kraehenbuehl and Koltun)
on the image at its own size. Kernels (``model.crf_kernels``): ``dcsp``, the authors' ``deeplab_resnet/utils.py``
``dense_crf`` (10 mean-field iterations, a Gaussian kernel sxy 3, weight 3, and a bilateral kernel sxy 49, srgb 5,
weight 4); ``deeplab_v2``, DeepLab-v2's published VOC values (bilateral sxy 80, srgb 13, weight 10; the suite's
former default).

The CRF itself comes from ``pydensecrf2`` (the maintained packaging of ``pydensecrf``, the Python binding of the
authors' C++ code): ``pip install -e ".[crf]"``; it builds from source (a C++ compiler is needed) and is not in the
default install. Without it, ``crf: true`` is an error that says how to install it.
"""

from __future__ import annotations

import numpy as np
import torch

CRF_PACKAGE = "pydensecrf2"
# (sxy_gauss, compat_gauss, sxy_bilateral, srgb_bilateral, compat_bilateral)
CRF_KERNELS = {"dcsp": (3, 3, 49, 5, 4), "deeplab_v2": (3, 3, 80, 13, 10)}


def require_crf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise ImportError(f"model.crf=true needs the dense CRF package {CRF_PACKAGE!r}, which is not installed: "
                          f"pip install -e '.[crf]' (it compiles C++; needs a compiler), or set model.crf=false"
                          ) from exc
    return dcrf


def dense_crf(images: torch.Tensor, probs: torch.Tensor, iterations: int = 10, kernels: str = "dcsp") -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] and class probabilities (B, C, H, W) -> labels (B, H, W) int64 after
    ``iterations`` of mean-field inference (per image, on the CPU) with the ``kernels`` of :data:`CRF_KERNELS`."""
    if kernels not in CRF_KERNELS:
        raise ValueError(f"model.crf_kernels must be one of {tuple(CRF_KERNELS)}, got {kernels!r}")
    sxy_gauss, compat_gauss, sxy_bilateral, srgb_bilateral, compat_bilateral = CRF_KERNELS[kernels]
    dcrf = require_crf()
    from pydensecrf.utils import unary_from_softmax

    out = []
    for img, p in zip(images.detach().cpu(), probs.detach().float().cpu()):
        c, h, w = p.shape
        crf = dcrf.DenseCRF2D(w, h, c)
        crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p.clamp_min(1e-8).numpy())))
        crf.addPairwiseGaussian(sxy=sxy_gauss, compat=compat_gauss)
        rgb = np.ascontiguousarray((img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb_bilateral, rgbim=rgb, compat=compat_bilateral)
        q = np.array(crf.inference(int(iterations))).reshape(c, h, w)
        out.append(torch.from_numpy(q.argmax(0)))
    return torch.stack(out).long().to(probs.device)
