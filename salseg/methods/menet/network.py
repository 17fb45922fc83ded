"""The MEnet network (paper 003, Sec. II-A, Figs. 2-3): a symmetric encoder-decoder, a 13-scale bundle, two heads.

Layout for ``depth = D`` (paper: D = 6, input 224):

* encoder block i = 1..D (Fig. 3 left): a down-sampling conv that doubles the channels, then 3 conv 3x3, each
  conv + batch norm + ReLU. Steps 1..D-1 are stride-2 3x3 convs (S -> S/2); step D compresses the remaining
  r x r map (r = S / 2^(D-1), 7 for 224) to 1 x 1 with an r x r convolution ("compress all feature
  information into feature maps whose size are 1x1", Sec. II-A). For S = 2^D, r = 2 and step D is an ordinary
  stride-2 halving too. Output e_i at S / 2^i (e_D at 1 x 1).
* centre block (the 1 x 1 "white box" of Fig. 2): 4 convs at 1 x 1.
* decoder block j = 1..D (Fig. 3 right): concatenate the short connection e_i (i = D + 1 - j) with the input,
  3 conv 3x3, then a stride-2 deconvolution that halves the channels and doubles the size (block 1: an r x r
  deconvolution 1 x 1 -> r x r). Output d_j at S / 2^(i-1); d_D is at full size S.
* 13 scales (2D + 1): the RGB image, e_1..e_D, d_1..d_D. Each gives ``scale_channels`` (paper: one "output
  feature map") maps via one conv, bilinearly up-sampled to S x S; the concatenated bundle (batch-normed,
  ``bundle_norm``) -> conv with 16 kernels = the metric feature f (C = 16), and -> conv with 2 kernels = the CE
  prediction (Sec. II-B, Eq. 1). The two heads are parallel by default (``ce_from="bundle"``); ``ce_from="f"``
  stacks the CE conv on f instead (Fig. 2 is not legible here; the text supports either reading).
* ``multiscale=False`` (Table III "CE-plain"): no bundle; the CE prediction comes from d_D only.

At the 1 x 1 level 3x3 kernels would only ever use their centre tap, so 1x1 kernels are used there (the same
function, fewer dead weights).

Layer count as the paper counts it (Sec. III-B: "a 4 convolutional layer block in the upsample and downsample
operations. Therefore the depth of our MEnet is 52 layers"): the conv/deconv layers of the (2D + 1) four-layer
blocks, 13 x 4 = 52 for D = 6. The one-conv scale heads and the two output convs are counted apart
(:func:`describe`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def accepted_sizes(depth: int, lo: int = 1, hi: int = 1024) -> list[int]:
    """Input sides the encoder takes down to 1 x 1: multiples of 2^(depth-1) (in [lo, hi])."""
    step = 2 ** (depth - 1)
    return [s for s in range(step, hi + 1, step) if s >= lo]


def check_input_size(size: int, depth: int) -> int:
    """The remaining side r before the last (compressing) encoder step; a clear error when ``size`` is not
    accepted."""
    step = 2 ** (depth - 1)
    if size < 2 or size % step:
        examples = ", ".join(str(s) for s in accepted_sizes(depth, hi=8 * step)[:8])
        raise ValueError(
            f"MEnet with depth={depth} needs an input side that is a multiple of 2^(depth-1) = {step} (the "
            f"{depth - 1} stride-2 steps halve it exactly, the last step compresses the remaining r x r map to "
            f"1 x 1); got {size}. Accepted sides: {examples}, ... (the paper's 224 = 7 * 32 with depth 6; a power "
            f"of two 2^depth makes every step a halving). Set model.image_size = data.image_size, or change depth."
        )
    return size // step


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int | None = None) -> nn.Sequential:
    pad = k // 2 if pad is None else pad
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _dbr(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class EncoderBlock(nn.Module):
    """Down-sampling conv (doubles the channels) + 3 convs (Fig. 3, left): 4 conv layers."""

    def __init__(self, cin: int, cout: int, compress: int | None = None):
        super().__init__()
        if compress is None:  # stride-2 3x3: S -> S/2
            self.down, k = _cbr(cin, cout, 3, 2, 1), 3
        else:  # r x r valid conv: r -> 1
            self.down, k = _cbr(cin, cout, compress, 1, 0), 1
        self.convs = nn.Sequential(*[_cbr(cout, cout, k) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.down(x))


class DecoderBlock(nn.Module):
    """Concatenated input + short connection -> 3 convs -> deconv (halves the channels, up-samples): 4 layers."""

    def __init__(self, cin: int, cmid: int, cout: int, expand: int | None = None):
        super().__init__()
        k = 1 if expand is not None else 3
        self.convs = nn.Sequential(_cbr(cin, cmid, k), _cbr(cmid, cmid, k), _cbr(cmid, cmid, k))
        if expand is None:  # stride-2 deconvolution: S -> 2S
            self.up = _dbr(cmid, cout, 4, 2, 1)
        else:  # r x r deconvolution: 1 -> r
            self.up = _dbr(cmid, cout, expand, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.convs(x))


class MEnetNetwork(nn.Module):
    """Returns ``{"logits": (B,2,S,S), "f": (B,C,S,S) or None, "scales": [13 x (B,k,S,S)] or []}``.

    Args:
        image_size: input side S (a multiple of 2^(depth-1), see :func:`check_input_size`).
        depth: encoder steps D (paper 6: 13 scales, 52 layers).
        width: channels at full resolution; level i has min(width * 2^i, max_width).
        feature_dim: C of the metric feature f (paper 16).
        scale_channels: maps per scale in the bundle (paper: one).
        head_kernel: kernel of the 16-kernel and 2-kernel output convs.
        multiscale: False = Table III's CE-plain (CE prediction from the last decoder output; no f).
        normalize_input: subtract the ImageNet mean / divide by std inside the network (inputs are [0, 1]).
        bundle_norm: batch norm on the concatenated multi-scale bundle (see below; False = the bare conv).
        ce_from: input of the 2-kernel CE conv: ``bundle`` (default; parallel to the 16-kernel conv: "these
            extracted features are then used in a metric loss and cross entropy function by convolutions",
            Sec. II) or ``f`` (stacked on the metric feature).
    """

    def __init__(self, image_size: int = 224, depth: int = 6, width: int = 16, max_width: int = 512,
                 feature_dim: int = 16, scale_channels: int = 1, head_kernel: int = 3, multiscale: bool = True,
                 normalize_input: bool = True, bundle_norm: bool = True, ce_from: str = "bundle"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if ce_from not in ("bundle", "f"):
            raise ValueError(f"ce_from must be 'bundle' or 'f', got {ce_from!r}")
        self.ce_from = ce_from
        self.image_size, self.depth, self.multiscale = int(image_size), int(depth), bool(multiscale)
        r = check_input_size(self.image_size, self.depth)
        ch = [min(width * 2**i, max_width) for i in range(depth + 1)]
        self.channels = ch
        self.normalize_input = bool(normalize_input)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        last = depth - 1
        self.encoder = nn.ModuleList(
            EncoderBlock(3 if i == 0 else ch[i], ch[i + 1], compress=r if i == last else None) for i in range(depth))
        self.center = nn.Sequential(*[_cbr(ch[depth], ch[depth], 1) for _ in range(4)])
        # decoder block j works at level i = depth - j: input (prev, ch[i+1]) + short connection e_(i+1)
        self.decoder = nn.ModuleList(
            DecoderBlock(2 * ch[depth - j], ch[depth - j], ch[depth - j - 1], expand=r if j == 0 else None)
            for j in range(depth))

        pad = head_kernel // 2
        if self.multiscale:
            scale_in = [3] + ch[1:] + [ch[depth - j - 1] for j in range(depth)]  # RGB, e_1..e_D, d_1..d_D
            self.scale_convs = nn.ModuleList(nn.Conv2d(c, scale_channels, 1) for c in scale_in)
            bundle = scale_channels * len(scale_in)
            # Batch norm on the bundle: the 13 scales are "uneven to each other" and must be "balanced" before
            # the 16-kernel conv (Sec. II-A). Without it the scale convs and the output convs form a linear chain
            # with no normalisation; measured on the small model at the paper's lr 0.1 (CE conv on f), the logits
            # exploded to NaN within ~150 steps.
            self.bundle_norm = nn.BatchNorm2d(bundle) if bundle_norm else nn.Identity()
            self.metric_conv = nn.Conv2d(bundle, feature_dim, head_kernel, padding=pad)  # 16 kernels -> f
            ce_in = bundle if ce_from == "bundle" else feature_dim
            self.ce_conv = nn.Conv2d(ce_in, 2, head_kernel, padding=pad)  # 2 kernels -> CE prediction
        else:
            self.scale_convs = nn.ModuleList()
            self.bundle_norm = None
            self.metric_conv = None
            self.ce_conv = nn.Conv2d(ch[0], 2, head_kernel, padding=pad)
        self._init_weights()

    def _init_weights(self) -> None:
        """He ("msra" in Caffe) initialisation of every conv / deconv, zero biases: trained from scratch."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def n_scales(self) -> int:
        return len(self.scale_convs)

    def forward(self, images: torch.Tensor) -> dict:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"MEnet expects images of shape (B, 3, S, S), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"MEnet was built for {self.image_size} x {self.image_size} inputs (model.image_size; the last "
                f"encoder step is a fixed-size compression to 1 x 1), got {tuple(images.shape[-2:])}; set "
                f"model.image_size to data.image_size")
        x = (images - self.mean) / self.std if self.normalize_input else images
        feats = [x]
        skips = []
        h = x
        for block in self.encoder:
            h = block(h)
            skips.append(h)
        feats += skips
        h = self.center(h)
        for j, block in enumerate(self.decoder):
            h = block(torch.cat([h, skips[-1 - j]], 1))
            feats.append(h)
        if not self.multiscale:
            return {"logits": self.ce_conv(h), "f": None, "scales": []}
        size = (self.image_size, self.image_size)
        scales = []
        for conv, feat in zip(self.scale_convs, feats):
            s = conv(feat)
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            scales.append(s)
        bundle = self.bundle_norm(torch.cat(scales, 1))
        f = self.metric_conv(bundle)
        logits = self.ce_conv(bundle if self.ce_from == "bundle" else f)
        return {"logits": logits, "f": f, "scales": scales}


def describe(net: MEnetNetwork) -> dict:
    """Parameter count and layer counts. ``layers`` counts as the paper does: the conv/deconv layers of the
    four-layer encoder, centre and decoder blocks (52 for depth 6); ``head_layers`` the scale convs and output
    convs; ``scales`` the number of maps in the multi-scale bundle."""

    def n_conv(module: nn.Module) -> int:
        return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())

    trunk = n_conv(net.encoder) + n_conv(net.center) + n_conv(net.decoder)
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "layers": trunk,
        "head_layers": n_conv(net) - trunk,
        "scales": net.n_scales,
        "blocks": len(net.encoder) + 1 + len(net.decoder),
        "channels": list(net.channels),
    }
