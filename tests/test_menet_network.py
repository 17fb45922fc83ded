"""MEnet network (paper 003, Sec. II-A; the authors' released prototxt): parameter count from the prototxt, the 13
bundle maps (full-size encoder scale, no 1x1 map), residual units, the tanh(BN) metric head; the paper-text
variant; sizes, CE-plain, input-size check."""

import pytest
import torch
from torch import nn

from salseg.methods.menet import network
from salseg.methods.menet.network import MEnetNetwork, accepted_sizes, check_input_size, describe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prototxt_params(w: int = 32, r: int = 7, k: int = 1) -> int:
    """Parameters of the authors' train.prototxt, layer by layer (Caffe conv: cin*cout*kh*kw + cout bias;
    Deconvolution: no bias; BatchNorm's mean/var/factor are not learned, each Scale adds 2 * C)."""
    conv = lambda cin, cout, ks, bias=True: cin * cout * ks * ks + (cout if bias else 0)  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    ch = [w * 2**i for i in range(6)]  # 32 .. 1024
    unit = lambda c: bn(c) + conv(c, c, 3) + bn(c) + conv(c, c, 3)  # noqa: E731  identity unit
    total = conv(3, ch[0], 3) + bn(ch[0])  # stem Convolution2 + BatchNorm2/Scale2
    total += 2 * unit(ch[0])  # level 0 (224): Eltwise1, Eltwise2
    for lv in range(1, 6):  # down unit (3x3 s2 + 3x3, shortcut BN + 1x1 s2) + identity unit
        a, b = ch[lv - 1], ch[lv]
        total += bn(a) + conv(a, b, 3) + bn(b) + conv(b, b, 3) + bn(a) + conv(a, b, 1) + unit(b)
    c = ch[5]
    total += bn(c) + conv(c, c, r) + bn(c) + conv(c, c, r, bias=False)  # Convolution38 (7x7 -> 1x1), Deconvolution1
    for lv in range(4, -1, -1):  # up unit (deconv 4x4 s2 + 3x3, shortcut deconv 2x2 s2) + identity unit
        a, b = 2 * ch[lv + 1], ch[lv]
        total += bn(a) + conv(a, b, 4, bias=False) + bn(b) + conv(b, b, 3) + bn(a) + conv(a, b, 2, bias=False) + unit(b)
    sources = [3] + ch + ch[:5] + [c]  # image, e_0..e_5, d_0..d_4, the 7x7 expansion of 1x1
    total += sum(bn(s) + conv(s, k, 3) for s in sources)  # BN-ReLU-conv 3x3 per scale
    total += conv(13 * k, 16, 3) + bn(16) + conv(13 * k, 2, 3) + bn(2)  # f = tanh(BN(conv)), logits = BN(conv)
    return total


def test_default_is_the_authors_prototxt():
    with torch.device("meta"):  # structure and counts only: no 740 MB of weights to fill
        net = MEnetNetwork()  # defaults = configs/model/menet.yaml: 224 px, depth 6, width 32
    d = describe(net)
    assert _prototxt_params() == 184_959_166  # counted by hand above; the same figure parsing the prototxt gives
    assert d["params"] == 184_959_166 and d["architecture"] == "authors"
    assert d["conv_layers"] == 72 and d["bn_layers"] == 72  # Convolution1..61 + Deconvolution1..11; BatchNorm1..72
    assert d["layers"] == 47 and d["scales"] == 13 and d["channels"] == [32, 64, 128, 256, 512, 1024]
    units = [m for m in net.modules() if isinstance(m, network.ResidualUnit)]
    assert len(units) == 2 * 6 + 2 * 5  # two 2-conv residual units per encoder and per decoder level
    assert sum(u.shortcut is not None for u in units) == 10  # a projection shortcut where the size changes
    # pre-activation order: BN -> ReLU -> conv -> BN -> ReLU -> conv, then + shortcut
    kinds = [type(m) for m in units[0].body.modules() if not isinstance(m, nn.Sequential)]
    assert kinds == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    # the decoder up-samples by deconvolution (4x4 stride 2; shortcut 2x2 stride 2), no bias as in the prototxt
    up = net.trunk.decoder[0][0]
    assert isinstance(up.body[1], nn.ConvTranspose2d) and up.body[1].stride == (2, 2) and up.body[1].bias is None
    assert isinstance(up.shortcut[1], nn.ConvTranspose2d) and up.shortcut[1].kernel_size == (2, 2)


def test_small_widths_follow_the_same_count():
    for w, size in ((4, 64), (2, 96)):
        r = check_input_size(size, 6)
        assert describe(MEnetNetwork(image_size=size, width=w, max_width=32 * w))["params"] == _prototxt_params(w, r)


def test_bundle_has_a_full_size_encoder_map_and_none_from_1x1():
    net = MEnetNetwork(image_size=64, width=2, max_width=64).eval()
    sizes = {}
    for i, conv in enumerate(net.scale_convs):
        conv.register_forward_hook(lambda m, inp, out, i=i: sizes.__setitem__(i, tuple(inp[0].shape[-2:])))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    # the prototxt's order: image, e_0 (64) .. e_5 (2), d_0 (64) .. d_4 (4), u (2, the expansion of 1x1)
    assert [sizes[i][0] for i in range(13)] == [64, 64, 32, 16, 8, 4, 2, 64, 32, 16, 8, 4, 2]
    assert min(s[0] for s in sizes.values()) == 2  # nothing at 1x1
    assert len(out["scales"]) == 13 and all(s.shape == (2, 1, 64, 64) for s in out["scales"])
    # e_0 is a full-size encoder map: changing level 0 moves it, the image map (scale 0) stays put
    with torch.no_grad():
        for p in net.trunk.encoder[0].parameters():
            p.add_(0.3)
        again = net(x)
    assert torch.equal(again["scales"][0], out["scales"][0])
    assert not torch.allclose(again["scales"][1], out["scales"][1])
    # no map of the bundle is constant over the image (the paper-text reading's 1x1 map is)
    assert all(s.flatten(1).std(1).min() > 0 for s in out["scales"])
    paper = MEnetNetwork(image_size=64, width=2, max_width=8, architecture="paper_text").eval()
    with torch.no_grad():
        p_scales = paper(x)["scales"]
    assert p_scales[6].flatten(1).std(1).max() < 1e-6  # e_D at 1x1, up-sampled: constant


def test_metric_head_is_tanh_of_batch_norm():
    torch.manual_seed(0)
    net = MEnetNetwork(image_size=32, depth=5, width=2, max_width=16)
    assert [type(m) for m in net.metric_head] == [nn.Conv2d, nn.BatchNorm2d, nn.Tanh]
    assert [type(m) for m in net.ce_head] == [nn.Conv2d, nn.BatchNorm2d]  # CE logits = BN(conv), on the bundle
    assert net.metric_head[0].in_channels == net.ce_head[0].in_channels == 11  # 2 * 5 + 1 maps, in parallel
    out = net(torch.rand(3, 3, 32, 32) * 50)  # train mode: batch statistics
    f = out["f"]
    assert f.shape == (3, 16, 32, 32) and f.min() >= -1 and f.max() <= 1
    pre = net.metric_head[1](net.metric_head[0](torch.cat(out["scales"], 1)))
    assert torch.allclose(f, torch.tanh(pre), atol=1e-6)


def test_paper_text_variant_keeps_the_earlier_model():
    with torch.device("meta"):
        net = MEnetNetwork(architecture="paper_text", width=16, max_width=512, upsample="bilinear", bundle_norm=True)
    d = describe(net)
    assert d["params"] == 54_965_190 and d["layers"] == 52 and d["scales"] == 13  # 13 four-conv blocks
    stacked = MEnetNetwork(image_size=32, depth=5, width=2, max_width=4, ce_from="f", architecture="paper_text")
    assert stacked.ce_head.in_channels == 16 and describe(stacked)["layers"] == 44


def test_224_compresses_to_one_by_one():
    net = MEnetNetwork(image_size=224, depth=6, width=1, max_width=4).eval()
    seen = []
    net.trunk.center[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    net.trunk.center[3].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        out = net(torch.rand(1, 3, 224, 224))
    assert seen == [(1, 1), (7, 7)]  # 7x7 conv to 1x1, 7x7 deconvolution back
    assert out["logits"].shape == (1, 2, 224, 224) and len(out["scales"]) == 13


def test_depth_sets_scales():
    assert describe(MEnetNetwork(image_size=32, depth=4, width=4, max_width=8))["scales"] == 9
    assert describe(MEnetNetwork(image_size=32, depth=4, width=4, max_width=8, architecture="paper_text"))[
        "layers"] == 36


@pytest.mark.parametrize("architecture", ["authors", "paper_text"])
def test_ce_plain_has_no_bundle(architecture):
    net = MEnetNetwork(image_size=32, depth=5, width=4, max_width=8, multiscale=False, architecture=architecture)
    out = net(torch.rand(2, 3, 32, 32))
    assert out["f"] is None and out["scales"] == [] and out["logits"].shape == (2, 2, 32, 32)
    assert describe(net)["scales"] == 0


def test_input_size_and_option_checks():
    assert check_input_size(224, 6) == 7 and check_input_size(64, 6) == 2
    assert 224 in accepted_sizes(6) and 256 in accepted_sizes(6) and 200 not in accepted_sizes(6)
    with pytest.raises(ValueError, match="multiple of 2\\^\\(depth-1\\) = 32"):
        MEnetNetwork(image_size=200, depth=6)
    net = MEnetNetwork(image_size=32, depth=4, width=4, max_width=8)
    with pytest.raises(ValueError, match="built for 32 x 32"):
        net(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"model.architecture must be one of \['authors', 'paper_text'\]"):
        MEnetNetwork(image_size=32, depth=4, architecture="resnet")
    with pytest.raises(ValueError, match="model.upsample must be one of"):
        MEnetNetwork(image_size=32, depth=4, upsample="cubic")


def test_a_pretrained_encoder_replaces_the_encoder_levels_and_keeps_its_weights():
    """model.encoder (a departure: paper 003 trains from scratch): timm features at strides 2..32 feed encoder
    levels 1..5; level 0, the centre, the decoder and the 13-map bundle stay the authors'."""
    from salseg.backbones import build_backbone
    from salseg.methods.menet.network import MEnetNetwork

    net = MEnetNetwork(image_size=64, depth=6, width=4, max_width=64, encoder="tf_efficientnet_lite0").eval()
    lite0 = build_backbone("tf_efficientnet_lite0", "lite0_imagenet")
    assert torch.equal(net.trunk.features.conv_stem.weight, lite0.conv_stem.weight)  # not re-initialised
    assert torch.equal(net.trunk.features.blocks[6][0].conv_pwl.weight, lite0.blocks[6][0].conv_pwl.weight)
    out = net(torch.rand(2, 3, 64, 64))
    assert out["logits"].shape == (2, 2, 64, 64) and out["f"].shape == (2, 16, 64, 64) and len(out["scales"]) == 13
    with pytest.raises(ValueError, match="model.encoder 'resnet18': a timm backbone is needed"):
        MEnetNetwork(image_size=64, depth=6, width=4, max_width=64, encoder="resnet18", encoder_weights=None)
    with pytest.raises(ValueError, match="model.encoder needs model.architecture: authors"):
        MEnetNetwork(image_size=64, depth=6, width=4, encoder="tf_efficientnet_lite0", architecture="paper_text")
