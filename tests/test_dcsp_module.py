"""DCSP end to end on tiny shapes (attention -> cues -> segmentation -> adapt -> mIoU), the saliency checkpoint
checks, the joint image + cue augmentation of native-size images (the authors' DeepLab readers), native-size test
scores, frozen trunk batch norm, the per-phase poly schedule and the configuration errors."""

import json
from types import SimpleNamespace

import pytest
import torch

from salseg.config import compose
from salseg.methods.dcsp.cache import CueCache, StaleCueCache
from salseg.methods.dcsp.module import DCSP
from salseg.methods.dcsp.saliency_source import SaliencyCheckpointError, SaliencySource

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_DATA = ["logger=csv", "data.num_workers=0", "data.image_size=32", "data.batch_size=8", "data.eval_batch_size=8",
             "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def saliency_ckpt(tmp_path_factory):
    """A real saliency checkpoint of this suite: a Region Contrast run (it trains nothing, so it is quick)."""
    from salseg.runner import run

    out = tmp_path_factory.mktemp("rc")
    result = run(compose("rc_shapes", TINY_DATA + ["data.test.shapes.size=2", f"runs_dir={out}"]))
    return result.run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def dcsp_run(saliency_ckpt, tmp_path_factory):
    from salseg.runner import run

    out = tmp_path_factory.mktemp("dcsp")
    cfg = compose("dcsp_shapes", TINY_DATA + [
        "data.train.size=24", "data.val.size=8", "data.test.shapes_multi.size=6", "model.attention_epochs=1",
        "model.seg_epochs=1", "model.adapt_epochs=1", "model.cue_batch_size=12", "model.crop_size=24",
        "trainer.log_every_n_steps=1",
        f"model.saliency_checkpoint={saliency_ckpt}", f"runs_dir={out}"])
    return run(cfg)


def test_short_run_makes_both_cue_rounds_trains_and_scores_miou_per_class(dcsp_run):
    doc = json.loads((dcsp_run.run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and doc["primary_map"] == "segmentation"
    scores = doc["datasets"]["shapes_multi"]
    for key in ("mIoU", "pixAcc", "IoU_background", "IoU_disc", "IoU_square", "IoU_triangle", "IoU_cross",
                "train_cues_mIoU", "train_adapted_cues_mIoU"):
        assert key in scores, key
    assert 0.0 <= scores["mIoU"] <= 1.0 and 0.0 <= scores["train_cues_mIoU"] <= 1.0
    for k in (0, 1):
        root = dcsp_run.run_dir / "cues" / f"round{k}"
        manifest = json.loads((root / "manifest.json").read_text())
        assert manifest["complete"] and len(manifest["names"]) == 24
        assert len(list(root.glob("*.png"))) == 24
    assert (dcsp_run.run_dir / "plots" / "grid_shapes_multi.png").is_file()
    ckpt = torch.load(dcsp_run.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["salseg_model"] == "dcsp" and ckpt["epoch"] == 2          # three phases of one epoch each
    logged = (dcsp_run.run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/attention_loss", "train/seg_loss", "train/cls_loss", "val/mIoU"):
        assert key in logged


def test_saliency_only_cues_leave_several_class_images_unlabelled_and_still_train(saliency_ckpt, tmp_path):
    from salseg.runner import run

    cfg = compose("dcsp_shapes", TINY_DATA + [
        "data.train.size=16", "data.val.size=4", "data.test.shapes_multi.size=4", "model.attention_epochs=1",
        "model.seg_epochs=1", "model.adapt_epochs=0", "model.cue_batch_size=16", "model.crop_size=24",
        "model.cue_source=saliency", f"model.saliency_checkpoint={saliency_ckpt}", f"runs_dir={tmp_path}"])
    result = run(cfg)
    scores = result.metrics["segmentation"]["shapes_multi"]
    assert 0.0 <= scores["train_cues_mIoU"] <= 1.0 and "train_adapted_cues_mIoU" not in scores
    import numpy as np
    from PIL import Image

    from salseg.data.shapes import ShapesDataset

    ds = ShapesDataset(split="train", size=16, image_size=64, max_objects=2, min_radius=0.15, clutter=0.0,
                       camouflage=0.0)
    several = [s["name"] for s in (ds[i] for i in range(16)) if s["labels"].sum() > 1]
    assert several                                                          # the tiny set has some
    for name in several:
        cue = np.array(Image.open(result.run_dir / "cues" / "round0" / f"{name}.png"))
        assert set(np.unique(cue)) <= {0, 255}                              # salient pixels: which class? unknown


def test_a_cue_cache_made_with_other_settings_is_refused_naming_the_key(dcsp_run):
    root = dcsp_run.run_dir / "cues" / "round0"
    settings = json.loads((root / "manifest.json").read_text())["settings"]
    assert CueCache(root, settings).complete
    with pytest.raises(StaleCueCache, match=r"background_threshold: 0.4 -> 0.5"):
        CueCache(root, {**settings, "background_threshold": 0.5})


def test_testing_the_checkpoint_again_gives_the_same_scores(dcsp_run):
    from salseg.runner import run

    first = json.loads((dcsp_run.run_dir / "metrics.json").read_text())["datasets"]["shapes_multi"]
    cfg = compose("dcsp_shapes", TINY_DATA + [
        "data.test.shapes_multi.size=6", "test_only=true",
        f"ckpt_path={dcsp_run.run_dir / 'checkpoints' / 'last.ckpt'}",
        f"model.saliency_checkpoint={dcsp_run.run_dir / 'checkpoints' / 'last.ckpt'}",
        f"runs_dir={dcsp_run.run_dir.parent.parent / 'retest'}"])
    again = run(cfg).metrics["segmentation"]["shapes_multi"]
    for key in ("mIoU", "IoU_disc", "train_cues_mIoU"):
        assert again[key] == pytest.approx(first[key], nan_ok=True), key


def test_the_saliency_checkpoint_must_hold_a_saliency_model(saliency_ckpt, dcsp_run, tmp_path):
    source = SaliencySource(saliency_ckpt)
    assert source.kind == "region_contrast"
    maps = source(torch.rand(2, 3, 20, 24))
    assert maps.shape == (2, 1, 20, 24) and 0 <= maps.min() and maps.max() <= 1
    with pytest.raises(SaliencyCheckpointError, match=r"holds a 'dcsp' model, which makes no saliency map"):
        SaliencySource(dcsp_run.run_dir / "checkpoints" / "last.ckpt")
    junk = tmp_path / "notes.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(SaliencyCheckpointError, match=r"notes.ckpt is not a readable PyTorch checkpoint"):
        SaliencySource(junk)
    with pytest.raises(SaliencyCheckpointError, match=r"no file .*missing.ckpt"):
        SaliencySource(tmp_path / "missing.ckpt")


def _module(**kw) -> DCSP:
    args = {"num_classes": 4, "class_names": "shapes", "backbone": "mini_vgg", "weights": None, "aspp_rates": (1, 2),
            "aspp_width": 16, "freeze_bn": False, "cue_source": "attention", "crop_size": 16,
            "scale_range": (0.5, 1.5)}
    return DCSP(**{**args, **kw})


def test_augmentation_moves_image_and_cue_together():
    torch.manual_seed(3)
    cue = torch.randint(0, 5, (4, 3, 3)).repeat_interleave(8, 1).repeat_interleave(8, 2)   # 8 px blocks, 24 x 24
    image = (cue.float() / 4)[:, None].expand(-1, 3, -1, -1).contiguous()   # the image spells out its cue
    exact = _module(scale_range=(1.0, 1.0))                                # crops and flips only: exact
    for _ in range(5):
        img, c = exact._augment(image, cue)
        assert img.shape == (4, 3, 16, 16) and c.shape == (4, 16, 16) and c.dtype == torch.int64
        assert torch.equal((img[:, 0] * 4).round().long(), c)
    scaled = _module()                                                     # scales 0.5-1.5: bilinear vs nearest
    for _ in range(5):
        img, c = scaled._augment(image, cue)
        known = c != 255                                                   # padding is ignored, not trained
        assert known.any()
        agree = ((img[:, 0] * 4).round().long() == c)[known].float().mean()
        assert agree > 0.7                      # they differ only on block edges (chance would be about 0.2)


def test_native_size_images_are_scaled_mirrored_padded_and_cropped_as_the_authors_readers():
    from salseg.methods.dcsp.cues import AUTHORS_MEAN

    mean = torch.tensor(AUTHORS_MEAN).view(3, 1, 1)
    torch.manual_seed(0)
    images = [torch.rand(3, 20, 28), torch.rand(3, 40, 24)]            # two native sizes: a list, as collated
    cues = [torch.randint(1, 5, (20, 28)), torch.randint(1, 5, (40, 24))]   # no background in the cues themselves
    m = _module(crop_size=32, scale_range=(1.0, 1.0), hflip=False)
    img, cue = m._augment(images, cues)
    assert img.shape == (2, 3, 32, 32) and cue.shape == (2, 32, 32) and cue.dtype == torch.int64
    # 20 x 28 -> padded at the bottom and right to 32 x 32 with the authors' mean colour and background cues
    assert torch.equal(img[0, :, :20, :28], images[0]) and torch.equal(cue[0, :20, :28], cues[0])
    assert torch.allclose(img[0, :, 20:, :], mean.expand(3, 12, 32)) and torch.allclose(img[0, :, :, 28:],
                                                                                         mean.expand(3, 32, 4))
    assert (cue[0, 20:] == 0).all() and (cue[0, :, 28:] == 0).all()
    # 40 x 24 -> padded on the right to 40 x 32, a random 32-row window
    y = [k for k in range(9) if torch.equal(img[1, :, :, :24], images[1][:, k : k + 32])]
    assert len(y) == 1 and torch.equal(cue[1, :, :24], cues[1][y[0] : y[0] + 32])
    assert torch.allclose(img[1, :, :, 24:], mean.expand(3, 32, 8)) and (cue[1, :, 24:] == 0).all()
    # pad_cue: ignore (DeepLab's own reader) puts 255 there instead
    _, ignored = _module(crop_size=32, scale_range=(1.0, 1.0), hflip=False, pad_cue="ignore")._augment(images, cues)
    assert (ignored[0, 20:] == 255).all() and (ignored[1, :, 24:] == 255).all()
    # the scaled size is truncated as the authors' tf.to_int32: 0.59 x (20, 28) = (11.8, 16.52) -> 11 x 16
    _, small = _module(crop_size=32, scale_range=(0.59, 0.59), hflip=False)._augment(images[:1], cues[:1])
    assert (small[0, :11, :16] > 0).all() and (small[0, 11:] == 0).all() and (small[0, :, 16:] == 0).all()
    # mirrored BEFORE the padding: the padding stays at the bottom and right, the content is mirrored
    flips, mirroring = 0, _module(crop_size=32, scale_range=(1.0, 1.0))
    for seed in range(6):
        torch.manual_seed(seed)
        img, cue = mirroring._augment(images[:1], cues[:1])
        flipped = torch.equal(cue[0, :20, :28], cues[0].flip(-1))
        assert flipped or torch.equal(cue[0, :20, :28], cues[0])
        assert (cue[0, 20:] == 0).all() and (cue[0, :, 28:] == 0).all()
        flips += flipped
    assert 0 < flips < 6


def test_native_size_test_scores_match_batched_and_one_image_at_a_time():
    from salseg.methods.dcsp.network import multiscale_seg_scores

    torch.manual_seed(0)
    m = _module().eval()
    images = [torch.rand(3, 20, 28), torch.rand(3, 40, 24), torch.rand(3, 20, 28)]
    out = m.test_step({"image": images}, 0)["segmentation"]
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [(5, 20, 28), (5, 40, 24), (5, 20, 28)]
    for img, probs in zip(images, out):
        alone = m.test_step({"image": img[None]}, 0)["segmentation"]
        assert alone.shape == (1, *probs.shape)
        assert torch.allclose(alone[0], probs, atol=1e-5) and torch.equal(alone[0].argmax(0), probs.argmax(0))
    # the authors' evaluate.py: the softmax of the logits max-fused over the scales 1, 0.75, 0.5
    x = images[1][None]
    assert m.hparams.test_scales == (1.0, 0.75, 0.5) and m.hparams.test_fusion == "max"
    assert torch.allclose(m.segment(x), multiscale_seg_scores(m.net, x, (1.0, 0.75, 0.5)).softmax(1), atol=1e-6)
    same = torch.stack([images[0], images[2]])                         # one size: stacked in, stacked out
    assert m.test_step({"image": same}, 0)["segmentation"].shape == (2, 5, 20, 28)


def test_the_dense_crf_sees_each_image_at_its_native_size(monkeypatch):
    """The CRF (the authors' evaluate.py: on the native image) is given the images of one size together."""
    import salseg.methods.dcsp.crf as crf

    seen = []

    def fake_crf(images, probs, iterations, kernels):
        seen.append((tuple(images.shape), tuple(probs.shape), iterations, kernels))
        return probs.argmax(1)

    monkeypatch.setattr(crf, "require_crf", lambda: None)
    monkeypatch.setattr(crf, "dense_crf", fake_crf)
    m = _module(crf=True, crf_iterations=7).eval()
    images = [torch.rand(3, 20, 28), torch.rand(3, 40, 24), torch.rand(3, 20, 28)]
    out = m.test_step({"image": images}, 0)
    assert seen == [((2, 3, 20, 28), (2, 5, 20, 28), 7, "dcsp"), ((1, 3, 40, 24), (1, 5, 40, 24), 7, "dcsp")]
    assert [tuple(t.shape) for t in out["segmentation_crf"]] == [(20, 28), (40, 24), (20, 28)]
    assert all(torch.equal(c, p.argmax(0)) for c, p in zip(out["segmentation_crf"], out["segmentation"]))


def test_freeze_bn_keeps_the_trunk_batch_norm_as_pretrained_and_trains_the_heads():
    from torch.nn.modules.batchnorm import _BatchNorm

    m = _module(freeze_bn=True).train()
    trunk_bn = [b for b in m.net.trunk.modules() if isinstance(b, _BatchNorm)]
    head_bn = [b for b in m.net.seg_head.modules() if isinstance(b, _BatchNorm)]
    assert trunk_bn and head_bn
    assert not any(b.training for b in trunk_bn) and all(b.training for b in head_bn)
    # the authors' trainable variables exclude every batch-norm beta / gamma: the trunk's scale and offset stay
    assert not any(p.requires_grad for b in trunk_bn for p in b.parameters())
    m.trainer = SimpleNamespace(estimated_stepping_batches=4)
    trained = {id(p) for g in m.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not trained & {id(p) for b in trunk_bn for p in b.parameters()}
    assert {id(p) for b in head_bn for p in b.parameters()} <= trained
    before_trunk, before_head = trunk_bn[0].running_mean.clone(), head_bn[-1].running_mean.clone()
    m.net(torch.rand(2, 3, 24, 24))
    assert torch.equal(trunk_bn[0].running_mean, before_trunk)           # pretrained statistics kept
    assert not torch.equal(head_bn[-1].running_mean, before_head)        # the new head learns its own
    unfrozen = _module(freeze_bn=False).train()
    assert all(b.training and b.weight.requires_grad for b in unfrozen.net.modules() if isinstance(b, _BatchNorm))


def test_freeze_trunk_trains_only_the_heads_and_builds_no_graph_through_the_trunk():
    m = _module(freeze_trunk=True, freeze_bn=True).train()
    assert not m.net.trunk.training and all(p.requires_grad for p in m.net.head_parameters())
    m.trainer = SimpleNamespace(estimated_stepping_batches=4)
    opt = m.configure_optimizers()["optimizer"]
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert len(opt.param_groups) == 1 and trained == {id(p) for p in m.net.head_parameters()}
    assert m.net.features(torch.rand(2, 3, 24, 24)).grad_fn is None          # no graph kept: cheaper steps
    trunk = {k: v.clone() for k, v in m.net.trunk.state_dict().items()}
    head = m.net.classifier.weight.clone()
    logits, seg = m.net(torch.rand(2, 3, 24, 24))
    (logits.sum() + seg.sum()).backward()
    opt.step()
    assert all(torch.equal(v, m.net.trunk.state_dict()[k]) for k, v in trunk.items())   # weights and statistics
    assert not torch.equal(head, m.net.classifier.weight)
    assert _module(freeze_trunk=False).net.features(torch.rand(1, 3, 24, 24)).grad_fn is not None


def test_the_learning_rate_restarts_its_poly_decay_in_each_phase():
    m = _module(attention_epochs=2, seg_epochs=1, adapt_epochs=1, lr=0.1, head_lr_mult=10.0, poly_power=1.0)
    m.trainer = SimpleNamespace(estimated_stepping_batches=40)              # 4 epochs of 10 steps
    conf = m.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1 * 0.5)   # attention: 20 steps
    assert lrs[20] == pytest.approx(0.1) and lrs[25] == pytest.approx(0.05)       # segmentation restarts
    assert lrs[30] == pytest.approx(0.1)                                          # adapt restarts
    assert opt.param_groups[1]["lr"] == pytest.approx(10 * opt.param_groups[0]["lr"])
    head = {id(p) for p in opt.param_groups[1]["params"]}
    assert head == {id(p) for p in m.net.head_parameters()}


def test_configuration_errors_name_the_key():
    with pytest.raises(ValueError, match="model.saliency_checkpoint is not set"):
        _module(cue_source="both")
    with pytest.raises(ValueError, match=r"model.cue_source must be one of"):
        _module(cue_source="colour")
    with pytest.raises(ValueError, match="gives 2 names for num_classes=4"):
        _module(class_names=["a", "b"])
    with pytest.raises(ValueError, match="model.scale_range"):
        _module(scale_range=(1.5, 0.5))
    with pytest.raises(ValueError, match=r"model.hide_fill must be one of"):
        _module(hide_fill="black")
    with pytest.raises(ValueError, match=r"model.pad_cue must be one of"):
        _module(pad_cue="zero")
    with pytest.raises(ValueError, match=r"model.test_fusion must be one of"):
        _module(test_fusion="vote")
    with pytest.raises(ValueError, match=r"model.saliency_passes=3 needs .* got \[0.7\]"):
        _module(saliency_passes=3, saliency_thresholds=[0.7])
    from lightning.pytorch.strategies import DDPStrategy

    m = _module()
    m.trainer = SimpleNamespace(fit_loop=SimpleNamespace(max_epochs=3), strategy=SimpleNamespace(),
                                datamodule=SimpleNamespace(augment={"hflip": True}, image_size=32))
    with pytest.raises(ValueError, match=r"data.augment=.*set data.augment=null"):
        m.setup("fit")
    m.trainer.strategy = DDPStrategy()                                      # the heads train in turns
    with pytest.raises(ValueError, match="trainer.strategy=ddp_find_unused_parameters_true"):
        m.setup("fit")
    m.trainer.strategy = DDPStrategy(find_unused_parameters=True)
    m.trainer.datamodule.augment = None
    m.setup("fit")
    assert m.trainer.fit_loop.max_epochs == m.total_epochs == 3
    m.trainer.datamodule.image_size = None                                 # native sizes need a crop
    uncropped = _module(crop_size=None)
    uncropped.trainer = m.trainer
    with pytest.raises(ValueError, match="data.image_size=null .* set model.crop_size"):
        uncropped.setup("fit")


def test_dcsp_voc_has_the_authors_settings_and_runs_on_a_tiny_voc_tree(tmp_path):
    import importlib.util

    import numpy as np
    from PIL import Image
    from test_data_voc import TRAIN, VAL, write_voc

    from salseg.data import VOC_CLASSES
    from salseg.runner import run

    cfg = compose("dcsp_voc")
    m, d = cfg.model, cfg.data
    assert (m.backbone, m.crop_size, d.batch_size, m.lr, m.poly_power, m.momentum, m.weight_decay, m.head_lr_mult,
            m.optimizer, m.crf) == ("resnet101", 321, 10, 1e-3, 0.9, 0.9, 5e-4, 10.0, "sgd", True)
    # native size (the authors' readers and evaluate.py), the authors' scale range, padding, passes and test fusion
    assert d.image_size is None and list(m.scale_range) == [0.5, 1.5] and m.hflip and m.pad_cue == "background"
    assert (m.saliency_passes, m.hide_fill, m.test_fusion, list(m.test_scales)) == (2, "dataset_mean", "max",
                                                                                   [1.0, 0.75, 0.5])
    assert m.freeze_bn and list(m.pixel_mean) == pytest.approx([122.679 / 255, 116.669 / 255, 104.007 / 255],
                                                                 abs=1e-5)
    assert (d.train.split, [k for k, v in d.test.items() if v is not None]) == ("train_aug", ["voc_val"])
    voc = write_voc(tmp_path / "data")
    for name in (TRAIN[1], VAL[0], VAL[3]):        # some images of another native size (20 x 16 -> 24 x 18)
        for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
            path = voc / folder / f"{name}.{ext}"
            with Image.open(path) as im:
                im.resize((18, 24), Image.NEAREST).save(path)
    has_crf = importlib.util.find_spec("pydensecrf") is not None
    result = run(compose("dcsp_voc", [
        "logger=csv", "trainer=cpu", f"data.root={tmp_path / 'data'}", "data.num_workers=0",
        "data.batch_size=2", "data.eval_batch_size=4", "model.backbone=mini_vgg", "model.weights=null",
        "model.aspp_rates=[1,2]", "model.aspp_width=8", "model.crop_size=24", "model.cue_source=attention",
        "model.attention_epochs=1", "model.seg_epochs=1", "model.adapt_epochs=1", f"model.crf={has_crf}",
        "trainer.enable_progress_bar=false", f"runs_dir={tmp_path / 'runs'}", "save_maps=true"]))
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["n_images"] == {"voc_val": len(VAL)}
    scores = doc["datasets"]["voc_val"]
    assert {f"IoU_{c}" for c in ("background", *VOC_CLASSES)} <= set(scores)
    assert 0.0 <= scores["mIoU"] <= 1.0 and "train_cues_mIoU" in scores   # train_aug has masks to score cues
    manifest = json.loads((result.run_dir / "cues" / "round0" / "manifest.json").read_text())
    assert len(manifest["names"]) == len(TRAIN) + 1                        # train_aug: TRAIN + the SBD image
    assert not set(manifest["names"]) & set(VAL)                          # no val image is trained on
    # cues at each training image's native size; test maps at each val image's
    assert np.array(Image.open(result.run_dir / "cues" / "round0" / f"{TRAIN[1]}.png")).shape == (24, 18)
    assert np.array(Image.open(result.run_dir / "cues" / "round0" / f"{TRAIN[0]}.png")).shape == (16, 20)
    maps = result.run_dir / "maps" / "segmentation" / "voc_val"
    assert np.array(Image.open(maps / f"{VAL[0]}.png")).shape == (24, 18)
    assert np.array(Image.open(maps / f"{VAL[1]}.png")).shape == (16, 20)
    if has_crf:
        assert "segmentation_crf" in doc["maps"]
