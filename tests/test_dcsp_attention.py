"""DCSP attention: the fully convolutional multi-label classifier, its loss, the multi-scale fused maps."""

import pytest
import torch

from salseg.backbones import build_trunk
from salseg.methods.dcsp.attention import (
    AttentionNet,
    multilabel_loss,
    multiscale_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("backbone", ["resnet18", "mini_vgg"])
def test_logits_are_the_mean_of_the_class_maps(backbone):
    torch.manual_seed(0)
    net = AttentionNet(5, backbone, weights=None).eval()
    x = torch.rand(2, 3, 64, 64)
    maps = net.class_maps(x)
    assert maps.shape[:2] == (2, 5) and maps.shape[2] < 64
    assert torch.allclose(net(x), maps.mean(dim=(2, 3)))


def test_loss_is_sigmoid_cross_entropy_and_training_lowers_it():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0]])
    want = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(1 - torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert multilabel_loss(logits, labels).item() == pytest.approx(want.item())
    net = AttentionNet(3, "mini_vgg", weights=None)
    # four images of different colours (i.i.d. noise images would all have the same average features)
    x = (torch.rand(4, 3, 1, 1) + 0.05 * torch.randn(4, 3, 32, 32)).clamp(0, 1)
    y = torch.tensor([[1.0, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]])
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = multilabel_loss(net(x), y).item()
    for _ in range(60):
        loss = multilabel_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert torch.equal((net.eval()(x) > 0).float(), y)  # it memorised the four label sets


def test_multiscale_attention_is_image_sized_and_normalised():
    torch.manual_seed(0)
    net = AttentionNet(4, "mini_vgg", weights=None).eval()
    att = multiscale_attention(net, torch.rand(2, 3, 48, 40))
    assert att.shape == (2, 4, 48, 40)
    flat = att.flatten(2)
    assert torch.allclose(flat.amax(2), torch.ones(2, 4)) and torch.allclose(flat.amin(2), torch.zeros(2, 4))


def test_a_backbone_without_a_trunk_is_named():
    with pytest.raises(ValueError, match="backbone 'vit_b_16': no convolutional trunk"):
        build_trunk("vit_b_16", None, 32)
