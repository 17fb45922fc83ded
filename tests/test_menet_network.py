"""MEnet network (paper 003, Sec. II-A): paper layer count, 13 scales, sizes, CE-plain, input-size check."""

import pytest
import torch

from salseg.methods.menet.network import MEnetNetwork, accepted_sizes, check_input_size, describe


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_paper_configuration_has_52_layers_and_13_scales():
    net = MEnetNetwork()  # defaults = the paper configuration (224 px, depth 6)
    d = describe(net)
    assert d["layers"] == 52 and d["blocks"] == 13 and d["scales"] == 13
    assert d["params"] == 54_965_190  # stated in salseg.methods.menet.module's docstring and menet.yaml
    # one scale head per scale; bundle of 13 one-channel maps -> 16 kernels (f) and -> 2 kernels (CE)
    assert net.metric_conv.in_channels == 13 and net.metric_conv.out_channels == 16
    assert net.ce_conv.in_channels == 13 and net.ce_conv.out_channels == 2
    stacked = MEnetNetwork(image_size=32, depth=5, width=2, max_width=4, ce_from="f")
    assert stacked.ce_conv.in_channels == 16 and describe(stacked)["layers"] == 44


def test_thirteen_scales_come_out_at_full_size():
    net = MEnetNetwork(image_size=64, depth=6, width=4, max_width=16).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    assert len(out["scales"]) == 13
    assert all(s.shape == (2, 1, 64, 64) for s in out["scales"])
    assert out["f"].shape == (2, 16, 64, 64) and out["logits"].shape == (2, 2, 64, 64)
    # the first scale comes from the RGB image alone (one conv): changing the encoder does not move it
    with torch.no_grad():
        for p in net.encoder.parameters():
            p.add_(0.5)
        again = net(x)
    assert torch.equal(again["scales"][0], out["scales"][0])
    assert not torch.allclose(again["scales"][1], out["scales"][1])


def test_224_compresses_to_one_by_one():
    net = MEnetNetwork(image_size=224, depth=6, width=2, max_width=4).eval()
    seen = []
    net.encoder[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    with torch.no_grad():
        out = net(torch.rand(1, 3, 224, 224))
    assert seen == [torch.Size([1, 1])]
    assert out["logits"].shape == (1, 2, 224, 224) and len(out["scales"]) == 13


def test_depth_sets_scales_and_layers():
    d = describe(MEnetNetwork(image_size=32, depth=4, width=4, max_width=8))
    assert d["scales"] == 9 and d["layers"] == 36


def test_ce_plain_has_no_bundle():
    net = MEnetNetwork(image_size=32, depth=5, width=4, max_width=8, multiscale=False)
    out = net(torch.rand(2, 3, 32, 32))
    assert out["f"] is None and out["scales"] == [] and out["logits"].shape == (2, 2, 32, 32)
    assert describe(net)["scales"] == 0 and describe(net)["layers"] == 44


def test_input_size_check_says_which_sizes_are_accepted():
    assert check_input_size(224, 6) == 7 and check_input_size(64, 6) == 2
    assert 224 in accepted_sizes(6) and 256 in accepted_sizes(6) and 200 not in accepted_sizes(6)
    with pytest.raises(ValueError, match="multiple of 2\\^\\(depth-1\\) = 32"):
        MEnetNetwork(image_size=200, depth=6)
    net = MEnetNetwork(image_size=32, depth=4, width=4, max_width=8)
    with pytest.raises(ValueError, match="built for 32 x 32"):
        net(torch.rand(1, 3, 64, 64))
