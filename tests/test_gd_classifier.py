"""CNN1 / CNN2 / CNN3 classifiers: outputs, masking, fine-tune strategies, weights loading, learning."""

import types

import pytest
import torch
import torchvision

from salseg.methods.gd_saliency.classifier import (
    GDClassifier,
    WeightsNotFound,
    build_backbone,
    build_classifier,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"backbone": "resnet18", "weights": None, "num_classes": 3}


def _batch(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, size, size, generator=g)
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 8:20, 8:20] = 1
    return {"image": image, "mask": mask, "label": torch.tensor([0, 1, 2, 1])[:n]}


@pytest.mark.parametrize("kind,n_out", [("CNN1", 3), ("CNN2", 3), ("CNN3", 6)])
def test_outputs_inputs_and_targets_per_kind(kind, n_out):
    model = GDClassifier(cnn=kind, fill=(0.5, 0.25, 0.0), **SMALL).eval()
    batch = _batch()
    x, y = model.inputs_and_targets(batch)
    assert model(x).shape == (len(y), n_out)
    fill = torch.tensor([0.5, 0.25, 0.0]).view(3, 1, 1)
    if kind == "CNN1":
        assert torch.equal(x, batch["image"]) and torch.equal(y, batch["label"])
    masked = x if kind == "CNN2" else x[4:]
    if kind != "CNN1":
        assert torch.equal(masked[:, :, 8:20, 8:20], fill.expand(4, 3, 12, 12))  # object pixels -> fill
        assert torch.equal(masked[:, :, :8], batch["image"][:, :, :8])  # background kept
    if kind == "CNN3":
        assert torch.equal(x[:4], batch["image"]) and y.tolist() == [0, 1, 2, 1, 3, 4, 5, 4]  # masked: N + l
    pre = dict(batch, original=batch["image"], image=torch.zeros_like(batch["image"]))  # dataset masked already
    x2, _ = model.inputs_and_targets(pre)
    assert torch.equal(x2[:4], batch["image"] if kind != "CNN2" else torch.zeros_like(batch["image"]))


def test_masked_images_hide_void_pixels_too():
    """VOC-like batch: a 255 band around the object (void) must be masked with it; a class-less image (has_mask
    false: its class map is all void) is left as it is."""
    from salseg.methods.gd_saliency.classifier import cnn_inputs

    image = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    cm = torch.zeros(2, 6, 6, dtype=torch.int64)
    cm[0, 2:4, 2:4] = 13  # the object (class 12)
    cm[0, 1, 1:5], cm[0, 4, 1:5], cm[0, 2:4, 1], cm[0, 2:4, 4] = 255, 255, 255, 255  # its void outline
    cm[1] = 255  # no pixel annotation
    batch = {"image": image, "mask": ((cm > 0) & (cm != 255)).float()[:, None], "class_mask": cm,
             "has_mask": torch.tensor([True, False]), "label": torch.tensor([12, 3])}
    fill = torch.tensor([0.1, 0.2, 0.3])
    masked, y = cnn_inputs("CNN2", batch, fill, 20)
    hidden = cm[0] != 0  # 4 object + 12 void pixels
    assert int(hidden.sum()) == 16 and y.tolist() == [12, 3]
    assert torch.equal(masked[0][:, hidden], fill[:, None].expand(3, 16))  # no void pixel survives
    assert torch.equal(masked[0][:, ~hidden], image[0][:, ~hidden])
    assert torch.equal(masked[1], image[1])
    no_classes = {k: v for k, v in batch.items() if k not in ("class_mask", "has_mask")}  # saliency data: the mask
    assert torch.equal(cnn_inputs("CNN2", no_classes, fill, 20)[0][0][:, cm[0] == 255], image[0][:, cm[0] == 255])


def test_finetune_strategies_set_what_trains_and_the_learning_rates():
    body_lr = 0.01
    with pytest.raises(ValueError, match="fine-tunes pretrained weights"):
        GDClassifier(finetune="last", **SMALL)
    model = GDClassifier(finetune="all_boost_last", lr=body_lr, head_lr_mult=10, **SMALL)
    opt = model.configure_optimizers()
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([body_lr, 10 * body_lr])
    assert opt.param_groups[0]["params"] == list(model.head.parameters())


def test_last_layer_only_freezes_the_backbone_and_its_batch_norm(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = GDClassifier(finetune="last", **{**SMALL, "weights": str(path)})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.backbone.fc.weight", "net.backbone.fc.bias"]
    model.train()
    assert not model.net.backbone.bn1.training and model.head.training
    assert len(model.configure_optimizers().param_groups) == 1


def test_weights_from_the_hub_cache_or_a_path_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound, match=r"expected .*hub/checkpoints/resnet18-.*\.pth.*model.weights=null"):
        build_backbone("resnet18", "imagenet")
    reference = torchvision.models.resnet18(weights=None)
    enum = torchvision.models.ResNet18_Weights.DEFAULT
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / enum.url.rsplit("/", 1)[1])
    loaded = build_backbone("resnet18", "imagenet")  # from the cache, no download
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    torch.save(reference.state_dict(), tmp_path / "mine.pth")
    assert torch.equal(build_backbone("resnet18", str(tmp_path / "mine.pth")).fc.weight, reference.fc.weight)
    with pytest.raises(ValueError,
                       match="not a state dict of backbone .resnet34.: first mismatching key .layer1.2.conv1.weight."):
        build_backbone("resnet34", str(tmp_path / "mine.pth"))
    with pytest.raises(WeightsNotFound, match="no file"):
        build_backbone("resnet18", str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'.*close names: .*resnet18"):
        build_backbone("resnet19", None)


def test_mini_vgg_is_built_from_scratch_or_a_path_and_never_from_imagenet(tmp_path):
    from salseg.methods.gd_saliency.classifier import MiniVGG

    net = build_backbone("mini_vgg", None)
    assert isinstance(net, MiniVGG) and net(torch.rand(2, 3, 64, 64)).shape == (2, 1000)
    model, head = build_classifier("CNN3", 4, "mini_vgg", None)
    assert head == "classifier" and model.eval()(torch.rand(2, 3, 40, 56)).shape == (2, 8)  # any size
    torch.save(net.state_dict(), tmp_path / "mini.pth")
    assert torch.equal(build_backbone("mini_vgg", str(tmp_path / "mini.pth")).classifier.weight,
                       net.classifier.weight)
    with pytest.raises(ValueError, match="suite's own small network: it has no ImageNet weights"):
        build_backbone("mini_vgg", "imagenet")
    with pytest.raises(ValueError, match="unknown backbone 'mini_vggg'.*close names: mini_vgg"):
        build_backbone("mini_vggg", None)


def test_fill_defaults_to_the_training_sets_mean_colour():
    model = GDClassifier(cnn="CNN2", **SMALL)
    with pytest.raises(RuntimeError, match="no fill colour"):
        model.inputs_and_targets(_batch())
    images = [torch.full((3, 8, 8), v) for v in (0.2, 0.4)]
    dataset = [{"image": im} for im in images]
    fake = types.SimpleNamespace(datamodule=types.SimpleNamespace(train_dataset=dataset))
    with monkeypatch_trainer(model, fake):
        model.on_fit_start()
    assert torch.allclose(model.fill_colour, torch.full((3,), 0.3))


class monkeypatch_trainer:
    def __init__(self, model, trainer):
        self.model, self.trainer = model, trainer

    def __enter__(self):
        self.saved = type(self.model).trainer
        type(self.model).trainer = property(lambda _: self.trainer)

    def __exit__(self, *exc):
        type(self.model).trainer = self.saved


def test_a_few_steps_reduce_the_loss_and_errors_are_logged():
    torch.manual_seed(0)
    model = GDClassifier(cnn="CNN3", lr=0.005, fill=(0.5, 0.5, 0.5), **SMALL)
    opt = model.configure_optimizers()
    batch = _batch()
    losses = []
    for _ in range(8):
        x, y = model.inputs_and_targets(batch)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5
    model.eval()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    with torch.no_grad():
        model.validation_step(batch, 0)
    model.on_validation_epoch_end()
    assert set(logged) == {"val/loss", "val/top1_error", "val/top5_error"}
    assert 0 <= logged["val/top5_error"] <= logged["val/top1_error"] <= 1


def test_bad_config_values():
    with pytest.raises(ValueError, match="model.cnn must be one of"):
        GDClassifier(cnn="CNN4", **SMALL)
    with pytest.raises(ValueError, match="model.finetune"):
        GDClassifier(finetune="some", **SMALL)


def test_channels_last_gives_the_same_logits_and_input_gradient():
    """model.channels_last: NHWC weights and inputs (faster on CPU for EfficientNet-Lite0 and mini_vgg), the same
    logits and the same input gradient (the descent's signal) up to float rounding, in the input's own layout."""
    from salseg.methods.gd_saliency.classifier import pretrained_classifier

    torch.manual_seed(0)
    nchw = pretrained_classifier("tf_efficientnet_lite0", "lite0_imagenet").eval()
    nhwc = pretrained_classifier("tf_efficientnet_lite0", "lite0_imagenet").eval().use_channels_last()
    assert nhwc.backbone.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    grads = []
    for net in (nchw, nhwc):
        x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        logits = net(x)
        logits[:, 3].sum().backward()
        grads.append((logits.detach(), x.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-3)
    assert grads[1][1].is_contiguous()  # the image keeps NCHW: the maps downstream see no other layout
