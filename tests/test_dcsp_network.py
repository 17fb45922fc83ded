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


def test_the_crf_uses_the_authors_kernels_by_default(monkeypatch):
    """deeplab_resnet/utils.py's dense_crf: Gaussian sxy 3 / weight 3, bilateral sxy 49 / srgb 5 / weight 4."""
    import numpy as np

    import salseg.methods.dcsp.crf as crf

    calls = []

    class FakeCRF:
        def __init__(self, w, h, c):
            self.shape = (c, h, w)

        def setUnaryEnergy(self, u):
            pass

        def addPairwiseGaussian(self, sxy, compat):
            calls.append(("gauss", sxy, compat))

        def addPairwiseBilateral(self, sxy, srgb, rgbim, compat):
            calls.append(("bilateral", sxy, srgb, compat, rgbim.shape))

        def inference(self, n):
            return np.ones((self.shape[0], self.shape[1] * self.shape[2]), np.float32)

    fake = type("dcrf", (), {"DenseCRF2D": FakeCRF})
    utils = type("utils", (), {"unary_from_softmax": staticmethod(lambda p: -np.log(p).reshape(p.shape[0], -1))})
    monkeypatch.setattr(crf, "require_crf", lambda: fake)
    monkeypatch.setitem(sys.modules, "pydensecrf", type(sys)("pydensecrf"))
    monkeypatch.setitem(sys.modules, "pydensecrf.utils", utils)
    out = crf.dense_crf(torch.rand(1, 3, 6, 8), torch.full((1, 2, 6, 8), 0.5))
    assert out.shape == (1, 6, 8)
    assert calls == [("gauss", 3, 3), ("bilateral", 49, 5, 4, (6, 8, 3))]
    calls.clear()
    crf.dense_crf(torch.rand(1, 3, 6, 8), torch.full((1, 2, 6, 8), 0.5), kernels="deeplab_v2")
    assert calls == [("gauss", 3, 3), ("bilateral", 80, 13, 10, (6, 8, 3))]
    with pytest.raises(ValueError, match="model.crf_kernels must be one of"):
        crf.dense_crf(torch.rand(1, 3, 6, 8), torch.full((1, 2, 6, 8), 0.5), kernels="strong")
