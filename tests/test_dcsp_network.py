"""DCSP's network (one trunk, a class head and a DeepLab ASPP head), its output strides, the multi-scale scores of
the adapt round, and the optional dense CRF (run when pydensecrf2 is installed; its absence is a clear error)."""

import sys

import pytest
import torch

from salseg.methods.dcsp.network import DCSPNet, multiscale_seg_scores


def test_both_heads_share_the_trunk_and_segment_at_the_input_size():
    net = DCSPNet(4, "mini_vgg", None, output_stride=8, aspp_rates=(1, 2), aspp_width=16).eval()
    x = torch.rand(2, 3, 40, 48)
    logits, seg = net(x)
    assert logits.shape == (2, 4) and seg.shape == (2, 5, 40, 48)
    assert net.class_maps(x).shape == (2, 4, 5, 6)              # stride 8: two of mini_vgg's four pools dropped
    assert torch.allclose(logits, net.class_maps(x).mean((2, 3)), atol=1e-6)
    heads = {id(p) for p in net.head_parameters()}
    assert heads.isdisjoint({id(p) for p in net.trunk_parameters()})
    assert heads | {id(p) for p in net.trunk_parameters()} == {id(p) for p in net.parameters()}
    fused = multiscale_seg_scores(net, x, (1.0, 0.5))
    single = multiscale_seg_scores(net, x, (1.0,))
    assert fused.shape == (2, 5, 40, 48) and (fused >= single - 1e-6).all()   # a max over scales


def test_resnets_are_dilated_to_the_output_stride_and_basic_blocks_refuse():
    net = DCSPNet(3, "resnet50", None, output_stride=8, aspp_rates=(1,), aspp_width=8).eval()
    assert net.class_maps(torch.rand(1, 3, 64, 64)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="cannot be dilated"):
        DCSPNet(3, "resnet18", None, output_stride=8)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        DCSPNet(3, "mini_vgg", None, output_stride=4)


def test_dense_crf_cleans_noisy_probabilities_along_colour_edges():
    pytest.importorskip("pydensecrf.densecrf")
    from salseg.methods.dcsp.crf import dense_crf

    torch.manual_seed(0)
    image = torch.zeros(1, 3, 32, 32)
    image[..., 16:] = 1.0                                      # two flat regions, left black, right white
    truth = torch.zeros(32, 32, dtype=torch.long)
    truth[:, 16:] = 1
    probs = torch.full((1, 2, 32, 32), 0.35)
    probs[0, 1][truth == 1] = 0.65
    probs[0, 0] = 1 - probs[0, 1]
    flip = torch.rand(32, 32) < 0.2                            # 20 % of the pixels lean the wrong way
    probs[0, :, flip] = probs[0, :, flip].flip(0)
    noisy = probs.argmax(1)[0]
    out = dense_crf(image, probs, iterations=10)
    assert out.shape == (1, 32, 32) and out.dtype == torch.int64
    assert (noisy != truth).float().mean() > 0.15 and (out[0] != truth).float().mean() < 0.02


def test_crf_without_its_package_is_a_clear_error(monkeypatch):
    from salseg.methods.dcsp.crf import require_crf

    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"model.crf=true needs the dense CRF package 'pydensecrf2'"):
        require_crf()
