"""The MEnet network (paper 003, Sec. II-A, Figs. 2-3): a symmetric encoder-decoder, a 13-scale bundle, two heads.

Two readings, ``architecture``:

``authors`` (default): the network of the authors' released Caffe model (github.com/scutDACIM/MEnet,
``model/train.prototxt``, the "two_Loss" model that ``solver.prototxt`` trains). For ``depth = D`` (D = 6):

* level l = 0..D-1 works at S / 2^l with ``width * 2^l`` channels (32 ... 1024 at 224 -> 7). Every unit is a
  pre-activation residual unit (BN -> ReLU -> conv, twice, plus a shortcut; He et al. 2016) -- Fig. 3's
  "4-layer block" is two such 2-conv units.
* encoder: a stem conv 3x3 -> BN -> ReLU at full size, then level 0 = two identity units (e_0, full size);
  level l >= 1 = a down unit (3x3 stride-2 conv, 3x3 conv; shortcut BN-ReLU-1x1 stride-2 conv) and an
  identity unit (e_l).
* centre ("compress all feature information into feature maps whose size are 1x1", Sec. II-A): BN-ReLU ->
  r x r valid conv (r x r -> 1 x 1, r = S / 2^(D-1), 7 at 224) -> BN-ReLU -> r x r deconvolution back to
  r x r (u). Nothing else runs at 1 x 1, and no bundle map is taken there.
* decoder level l = D-2..0: concatenate the previous output (u, then d) with e_(l+1) (the "short connection"),
  an up unit (4x4 stride-2 deconvolution, 3x3 conv; shortcut BN-ReLU-2x2 stride-2 deconvolution) and an
  identity unit (d_l). e_0 feeds only the bundle.
* bundle, 13 = 2D + 1 maps in the prototxt's order: the RGB image, e_0 .. e_(D-1), d_0 .. d_(D-2), u; each
  BN -> ReLU -> conv 3x3 to ``scale_channels`` map(s), up-sampled to S x S by pixel replication (its
  ``resize_to_same_size`` layer: ``upsample="nearest"``).
* heads on the bundle, in parallel: f = tanh(BN(conv 3x3, 16 kernels)) (so f lies in [-1, 1]^16) and the CE
  logits = BN(conv 3x3, 2 kernels). Caffe "xavier" initialisation (uniform, variance 1 / fan_in), zero biases;
  deconvolutions have no bias. 224 px, width 32: 184,959,166 parameters (72 conv/deconv layers, 72 BN).

``paper_text``: salseg's earlier reading of the text and Fig. 3 -- plain 4-conv blocks (a resampling conv + 3
convs, conv-BN-ReLU) down to 1 x 1, a 4-conv centre block at 1 x 1, the 13 maps = the image, the D encoder
outputs (the last one at 1 x 1: a constant map once up-sampled) and the D decoder outputs, each one 1x1 conv;
plain conv heads; He initialisation. With ``width=16, max_width=512, upsample="bilinear", bundle_norm=True``
it is the model salseg shipped before (54,965,190 parameters at 224 px).

Both: ``multiscale=False`` (Table III "CE-plain") drops the bundle; the CE head reads the last full-size decoder
output. ``ce_from="f"`` stacks the CE conv on f instead of the bundle. Input sides: multiples of 2^(D-1).

Layer counts (:func:`describe`): the paper says "a 4 convolutional layer block in the upsample and downsample
operations. Therefore the depth of our MEnet is 52 layers" (Sec. III-B). ``layers`` is the trunk's main-path
conv/deconv count: 52 = 13 blocks x 4 for ``paper_text``; for ``authors`` 47 (stem 1 + 2 x 2 x D encoder +
centre 2 + 2 x 2 x (D-1) decoder at D = 6) -- the prototxt does not give 52 by any count we found;
``conv_layers`` counts every conv/deconv (72 for the authors' D = 6 model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURES = ("authors", "paper_text")
UPSAMPLES = ("nearest", "bilinear")


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


# ---------------------------------------------------------------------------------------------- authors
def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class Subsample(nn.Module):
    """Every second row and column: with a 1x1 conv after it, the prototxt's 1x1 stride-2 shortcut conv (the same
    function and weights; torch 2.14's CPU backward of a strided 1x1 conv on channels-last tensors segfaults)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2, ::2]


class ResidualUnit(nn.Module):
    """Pre-activation unit of the prototxt: x + conv(BN-ReLU(conv(BN-ReLU(x)))). ``resample``: ``None``
    (identity shortcut), ``"down"`` (first conv 3x3 stride 2; shortcut BN-ReLU-conv 1x1 stride 2) or ``"up"``
    (first layer a 4x4 stride-2 deconvolution; shortcut BN-ReLU-deconvolution 2x2 stride 2). The shortcut has
    its own BN (the prototxt normalises the unit input twice)."""

    def __init__(self, cin: int, cout: int, resample: str | None = None):
        super().__init__()
        if resample == "down":
            first = nn.Conv2d(cin, cout, 3, 2, 1)
            self.shortcut = nn.Sequential(_bn_relu(cin), Subsample(), nn.Conv2d(cin, cout, 1))
        elif resample == "up":
            first = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
            self.shortcut = nn.Sequential(_bn_relu(cin), nn.ConvTranspose2d(cin, cout, 2, 2, bias=False))
        else:
            first, self.shortcut = nn.Conv2d(cin, cout, 3, 1, 1), None
        self.body = nn.Sequential(_bn_relu(cin), first, _bn_relu(cout), nn.Conv2d(cout, cout, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class AuthorsTrunk(nn.Module):
    """Encoder, centre and decoder of the prototxt; ``forward`` -> (bundle sources, last decoder output)."""

    def __init__(self, depth: int, r: int, ch: list[int]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1), nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
        self.encoder = nn.ModuleList(
            nn.Sequential(ResidualUnit(ch[0], ch[0]) if lv == 0 else ResidualUnit(ch[lv - 1], ch[lv], "down"),
                          ResidualUnit(ch[lv], ch[lv]))
            for lv in range(depth))
        c = ch[depth - 1]
        self.center = nn.Sequential(_bn_relu(c), nn.Conv2d(c, c, r), _bn_relu(c),
                                    nn.ConvTranspose2d(c, c, r, bias=False))
        self.decoder = nn.ModuleList(  # level lv = depth-2 .. 0: [prev, e_(lv+1)] -> d_lv
            nn.Sequential(ResidualUnit(2 * ch[lv + 1], ch[lv], "up"), ResidualUnit(ch[lv], ch[lv]))
            for lv in range(depth - 2, -1, -1))
        # bundle order of the prototxt's resize layer: image, e_0..e_(D-1), d_0..d_(D-2), u
        self.bundle_channels = [3] + ch[:depth] + ch[:depth - 1] + [c]
        self.out_channels = ch[0] if depth > 1 else c

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h, enc = self.stem(x), []
        for block in self.encoder:
            h = block(h)
            enc.append(h)
        u = self.center(h)
        h, dec = u, []
        for j, block in enumerate(self.decoder):
            h = block(torch.cat([h, enc[-1 - j]], 1))
            dec.append(h)
        return [x] + enc + dec[::-1] + [u], h


class PretrainedEncoderTrunk(AuthorsTrunk):
    """``encoder: <backbone>`` (a departure from paper 003, which trains MEnet from scratch): the authors' trunk with
    encoder levels 1..D-1 replaced by a pretrained network's feature maps at strides 2 .. 2^(D-1) (timm
    ``features_only``), each projected to the level's width by BN-ReLU-1x1 conv; the full-size level 0, the
    centre, the decoder and the bundle stay the authors'."""

    def __init__(self, depth: int, r: int, ch: list[int], encoder: str, weights: str | None):
        super().__init__(depth, r, ch)
        import timm

        from salseg.backbones import build_backbone, input_normalization, library_of

        library, bare = library_of(encoder)
        if library != "timm":
            raise ValueError(f"model.encoder {encoder!r}: a timm backbone is needed (features at every stride)")
        self.features = timm.create_model(bare, features_only=True)
        reductions = self.features.feature_info.reduction()
        want = [2 ** lv for lv in range(1, depth)]
        if [x for x in reductions if x in want] != want:
            raise ValueError(f"MEnet: encoder {encoder!r} gives strides {reductions}, depth {depth} needs {want}")
        self.levels = [reductions.index(x) for x in want]
        if weights is not None:  # the classifier's weights, minus its head
            missing, _ = self.features.load_state_dict(build_backbone(encoder, weights).state_dict(), strict=False)
            if missing:
                raise ValueError(f"model.encoder_weights {weights!r}: {len(missing)} feature tensors not in the "
                                 f"weights, first {missing[0]!r}")
        channels = self.features.feature_info.channels()
        self.encoder = nn.ModuleList([self.encoder[0]] + [
            nn.Sequential(nn.BatchNorm2d(channels[i]), nn.ReLU(inplace=True), nn.Conv2d(channels[i], ch[lv], 1))
            for lv, i in enumerate(self.levels, start=1)])
        mean, std = input_normalization(encoder)
        self.register_buffer("enc_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("enc_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, images: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        raw = x if images is None else images
        feats = self.features((raw - self.enc_mean) / self.enc_std)
        enc = [self.encoder[0](self.stem(x))] + [proj(feats[i]) for proj, i in zip(self.encoder[1:], self.levels)]
        u = self.center(enc[-1])
        h, dec = u, []
        for j, block in enumerate(self.decoder):
            h = block(torch.cat([h, enc[-1 - j]], 1))
            dec.append(h)
        return [x] + enc + dec[::-1] + [u], h


# ---------------------------------------------------------------------------------------------- paper text
def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int | None = None) -> nn.Sequential:
    pad = k // 2 if pad is None else pad
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _dbr(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class EncoderBlock(nn.Module):
    """Down-sampling conv (doubles the channels) + 3 convs (Fig. 3, left): 4 conv layers. The last block's
    "down-sampling" is an r x r valid conv to 1 x 1, after which 1x1 kernels do what 3x3 ones could."""

    def __init__(self, cin: int, cout: int, compress: int | None = None):
        super().__init__()
        if compress is None:
            self.down, k = _cbr(cin, cout, 3, 2, 1), 3
        else:
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
        self.up = _dbr(cmid, cout, 4, 2, 1) if expand is None else _dbr(cmid, cout, expand, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.convs(x))


class PaperTextTrunk(nn.Module):
    """4-conv blocks down to 1 x 1, a 4-conv centre block, 4-conv decoder blocks (salseg's earlier reading)."""

    def __init__(self, depth: int, r: int, ch: list[int]):
        super().__init__()
        last = depth - 1
        self.encoder = nn.ModuleList(
            EncoderBlock(3 if i == 0 else ch[i], ch[i + 1], compress=r if i == last else None) for i in range(depth))
        self.center = nn.Sequential(*[_cbr(ch[depth], ch[depth], 1) for _ in range(4)])
        self.decoder = nn.ModuleList(
            DecoderBlock(2 * ch[depth - j], ch[depth - j], ch[depth - j - 1], expand=r if j == 0 else None)
            for j in range(depth))
        self.bundle_channels = [3] + ch[1:depth + 1] + [ch[depth - j - 1] for j in range(depth)]
        self.out_channels = ch[0]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h, skips = x, []
        for block in self.encoder:
            h = block(h)
            skips.append(h)
        h, dec = self.center(h), []
        for j, block in enumerate(self.decoder):
            h = block(torch.cat([h, skips[-1 - j]], 1))
            dec.append(h)
        return [x] + skips + dec, h


# ---------------------------------------------------------------------------------------------- network
class MEnetNetwork(nn.Module):
    """Returns ``{"logits": (B,2,S,S), "f": (B,C,S,S) or None, "scales": [13 x (B,k,S,S)] or []}``.

    Args:
        image_size: input side S (a multiple of 2^(depth-1), see :func:`check_input_size`).
        depth: levels D (6: 13 scales).
        width: channels at full resolution; level i has min(width * 2^i, max_width) (authors: 32, 1024).
        feature_dim: C of the metric feature f (paper 16).
        scale_channels: maps per scale in the bundle (paper: one).
        head_kernel: kernel of the 16-kernel and 2-kernel output convs (authors 3).
        multiscale: False = Table III's CE-plain (CE prediction from the last decoder output; no f).
        normalize_input: ImageNet mean / std inside the network (inputs are [0, 1]; the authors feed 0-255
            pixels -- the stem conv is followed by batch norm, so this changes only the padding value).
        bundle_norm: batch norm on the concatenated bundle (the ``paper_text`` head needs it at lr 0.1; the
            authors' scale convs and heads carry their own batch norms).
        ce_from: input of the 2-kernel CE conv: ``bundle`` (authors: parallel to the 16-kernel conv) or ``f``.
        architecture: ``authors`` | ``paper_text`` (module docstring).
        upsample: ``nearest`` (authors' pixel replication) | ``bilinear`` -- how scale maps reach S x S.
    """

    def __init__(self, image_size: int = 224, depth: int = 6, width: int = 32, max_width: int = 1024,
                 feature_dim: int = 16, scale_channels: int = 1, head_kernel: int = 3, multiscale: bool = True,
                 normalize_input: bool = True, bundle_norm: bool = False, ce_from: str = "bundle",
                 architecture: str = "authors", upsample: str = "nearest", encoder: str = "authors",
                 encoder_weights: str | None = "lite0_imagenet"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        for key, value, allowed in (("ce_from", ce_from, ("bundle", "f")), ("architecture", architecture,
                                    ARCHITECTURES), ("upsample", upsample, UPSAMPLES)):
            if value not in allowed:
                raise ValueError(f"model.{key} must be one of {list(allowed)}, got {value!r}")
        self.ce_from, self.architecture, self.upsample = ce_from, architecture, upsample
        self.image_size, self.depth, self.multiscale = int(image_size), int(depth), bool(multiscale)
        r = check_input_size(self.image_size, self.depth)
        authors = architecture == "authors"
        ch = [min(width * 2**i, max_width) for i in range(depth + 1)]
        self.channels = ch[:depth] if authors else ch
        self.normalize_input = bool(normalize_input)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if encoder != "authors" and not authors:
            raise ValueError("model.encoder needs model.architecture: authors")
        self.encoder = encoder
        self.trunk = (PaperTextTrunk(depth, r, ch) if not authors else AuthorsTrunk(depth, r, ch)
                      if encoder == "authors" else PretrainedEncoderTrunk(depth, r, ch, encoder, encoder_weights))

        pad = head_kernel // 2
        if self.multiscale:
            if authors:  # BN -> ReLU -> conv 3x3 per scale (the image's BN included)
                self.scale_convs = nn.ModuleList(nn.Sequential(_bn_relu(c), nn.Conv2d(c, scale_channels, 3, 1, 1))
                                                 for c in self.trunk.bundle_channels)
            else:
                self.scale_convs = nn.ModuleList(nn.Conv2d(c, scale_channels, 1) for c in self.trunk.bundle_channels)
            bundle = scale_channels * len(self.trunk.bundle_channels)
            # "the components from these features with 13 scales are uneven to each other ... should be balanced"
            # (Sec. II-A). Without a norm the paper-text head is a linear chain that diverged at lr 0.1.
            self.bundle_norm = nn.BatchNorm2d(bundle) if bundle_norm else nn.Identity()
            metric = nn.Conv2d(bundle, feature_dim, head_kernel, padding=pad)  # 16 kernels -> f
            ce = nn.Conv2d(bundle if ce_from == "bundle" else feature_dim, 2, head_kernel, padding=pad)
            # authors: f = tanh(BN(conv)), logits = BN(conv)
            self.metric_head = nn.Sequential(metric, nn.BatchNorm2d(feature_dim), nn.Tanh()) if authors else metric
            self.ce_head = nn.Sequential(ce, nn.BatchNorm2d(2)) if authors else ce
        else:
            self.scale_convs, self.bundle_norm, self.metric_head = nn.ModuleList(), None, None
            ce = nn.Conv2d(self.trunk.out_channels, 2, head_kernel, padding=pad)
            self.ce_head = nn.Sequential(ce, nn.BatchNorm2d(2)) if authors else ce
        self._init_weights()

    def _init_weights(self) -> None:
        """authors: Caffe "xavier" (uniform, variance 1 / fan_in; torch's fan_in of a deconvolution is Caffe's
        too); paper_text: He ("msra"). Zero biases."""
        pretrained = {id(m) for m in getattr(self.trunk, "features", nn.Identity()).modules()}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and id(m) not in pretrained:
                if self.architecture == "authors":
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                else:
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
        feats, last = self.trunk(x) if self.encoder == "authors" else self.trunk(x, images)
        if not self.multiscale:
            return {"logits": self.ce_head(last), "f": None, "scales": []}
        size = (self.image_size, self.image_size)
        scales = []
        for conv, feat in zip(self.scale_convs, feats):
            s = conv(feat)
            if s.shape[-2:] != size:
                kw = {"align_corners": False} if self.upsample == "bilinear" else {}
                s = F.interpolate(s, size=size, mode=self.upsample, **kw)
            scales.append(s)
        bundle = self.bundle_norm(torch.cat(scales, 1))
        f = self.metric_head(bundle)
        logits = self.ce_head(bundle if self.ce_from == "bundle" else f)
        return {"logits": logits, "f": f, "scales": scales}


def describe(net: MEnetNetwork) -> dict:
    """Parameter count and layer counts: ``layers`` = the trunk's main-path conv/deconv layers (shortcut
    projections excluded; 52 for ``paper_text`` D = 6, 47 for ``authors``), ``conv_layers`` = every conv/deconv
    of the network, ``scales`` = maps in the bundle, ``channels`` = per level."""

    def n_conv(module: nn.Module) -> int:
        return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())

    trunk = n_conv(net.trunk)
    shortcuts = sum(n_conv(m.shortcut) for m in net.trunk.modules()
                    if isinstance(m, ResidualUnit) and m.shortcut is not None)
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "layers": trunk - shortcuts,
        "conv_layers": n_conv(net),
        "bn_layers": sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()),
        "scales": net.n_scales,
        "architecture": net.architecture,
        "channels": list(net.channels),
    }
