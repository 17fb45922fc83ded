"""MEnet LightningModule: optimiser contract, learning, config -> registry, a short run through the runner."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from salseg import registry
from salseg.config import compose
from salseg.methods.menet import MEnet
from salseg.studies.plan import ablation_variants, load_ablation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"image_size": 32, "depth": 5, "width": 4, "max_width": 16}
RUN_SMALL = ["logger=csv", "data.num_workers=0", "data.train.size=8", "data.batch_size=4", "data.val.size=4",
             "data.test.shapes.size=4", "data.eval_batch_size=4", "trainer.max_epochs=1", "data.image_size=32",
             "trainer.log_every_n_steps=1"]


def _batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 8:20, 10:24] = 1.0
    images = images * 0.3 + mask * 0.7  # a bright salient box
    return {"image": images, "mask": mask}


def test_optimizer_and_step_scheduler_follow_the_config():
    model = MEnet(**TINY, lr=0.1, momentum=0.9, weight_decay=1e-8, milestones=[3, 5], gamma=0.1)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    assert isinstance(opt, torch.optim.SGD) and sched["interval"] == "step"
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-8)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    assert MEnet.trainable is True


def test_adam_and_onecycle_schedule_over_the_run():
    model = MEnet(**TINY, lr=0.01, weight_decay=0.0, optimizer="adam", schedule="onecycle", warmup=0.25)
    model.trainer = type("T", (), {"estimated_stepping_batches": 8})()  # the one number the schedule reads
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.Adam) and isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(8), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.01) and peak == 1  # rises over the first quarter, then anneals
    assert lrs[0] < 0.01 / 10 and lrs[-1] < lrs[peak] / 100
    for key, value in (("optimizer", "rmsprop"), ("schedule", "cosine"), ("warmup", 1.5)):
        with pytest.raises(ValueError, match=f"model.{key}"):
            MEnet(**TINY, **{key: value})


def test_channels_last_gives_the_same_maps():
    torch.manual_seed(0)
    nchw = MEnet(**TINY, channels_last=False).eval()
    nhwc = MEnet(**TINY, channels_last=True).eval()
    nhwc.load_state_dict(nchw.state_dict())
    assert nhwc.net.trunk.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    batch = _batch(n=2)
    with torch.no_grad():
        a, b = nchw.test_step(batch, 0), nhwc.test_step(batch, 0)
    for key in ("ce", "metric"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_a_few_sgd_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = MEnet(**TINY)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batch = _batch()
    losses = []
    for _ in range(12):
        out = model(batch["image"])
        loss = model.criterion(out["logits"], out["f"], batch["mask"])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_network_gradients_finite_for_one_class_masks(value):
    torch.manual_seed(0)
    model = MEnet(**TINY)
    batch = _batch()
    out = model(batch["image"])
    loss = model.criterion(out["logits"], out["f"], torch.full_like(batch["mask"], value))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_test_step_maps_per_variant():
    batch = _batch(n=2)
    maps = MEnet(**TINY).eval().test_step(batch, 0)
    assert list(maps) == ["ce", "metric"]  # the CE map first: the primary map (PR curves)
    for m in maps.values():
        assert m.shape == (2, 1, 32, 32) and m.dtype == torch.float32 and 0 <= m.min() and m.max() <= 1
    for variant in ("ce_only", "ce_plain"):
        assert list(MEnet(**TINY, variant=variant).eval().test_step(batch, 0)) == ["ce"]
    with pytest.raises(ValueError, match="variant"):
        MEnet(**TINY, variant="ml")


def test_primary_map_and_metric_readout_options():
    batch = _batch(n=2)
    torch.manual_seed(0)
    ce_first = MEnet(**TINY).eval()
    torch.manual_seed(0)
    metric_first = MEnet(**TINY, primary_map="metric").eval()
    a, b = ce_first.test_step(batch, 0), metric_first.test_step(batch, 0)
    assert list(b) == ["metric", "ce"] and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    paper = MEnet(**TINY, metric_readout="paper").eval().test_step(batch, 0)
    assert torch.equal(paper["ce"], a["ce"]) and not torch.allclose(paper["metric"], a["metric"])
    with pytest.raises(ValueError, match="model.metric_readout"):
        MEnet(**TINY, metric_readout="eq5")
    with pytest.raises(ValueError, match="model.primary_map 'metric' needs variant 'menet'"):
        MEnet(**TINY, variant="ce_only", primary_map="metric")


def test_composed_configs_build_through_the_registry():
    cfg = compose("menet_shapes", ["data.image_size=32", "model.width=4", "model.max_width=8"])
    spec = OmegaConf.to_container(cfg, resolve=True)["model"]
    model = registry.build_model(spec)
    assert isinstance(model, MEnet) and model.hparams.image_size == 32  # follows data.image_size
    assert model.describe()["architecture"] == "authors" and model.describe()["scales"] == 13
    with pytest.raises(ValueError, match="multiple of 2\\^\\(depth-1\\)"):
        registry.build_model(OmegaConf.to_container(compose("menet_shapes", ["data.image_size=48"]),
                                                    resolve=True)["model"])
    paper = OmegaConf.to_container(compose("menet_msra10k"), resolve=True)["model"]
    assert (paper["image_size"], paper["depth"], paper["lr"], paper["weight_decay"]) == (224, 6, 0.1, 1e-8)
    assert paper["milestones"] == [60000, 90000, 100000]
    variants = ablation_variants(load_ablation("menet_losses"))
    assert set(variants) == {"ce_plain", "ce_only", "menet"}
    for overrides in variants.values():
        spec = OmegaConf.to_container(compose("menet_shapes", overrides + ["data.image_size=32"]), resolve=True)
        assert isinstance(registry.build_model(spec["model"]), MEnet)


def test_config_defaults_are_the_authors():
    """configs/model/menet.yaml = the module's defaults = the authors' network and pyloss.py; menet_small is the
    same network at width 4 (790,866 parameters at 64 px, as its comment says)."""
    import inspect

    spec = OmegaConf.to_container(OmegaConf.load("configs/model/menet.yaml"))
    defaults = {k: v.default for k, v in inspect.signature(MEnet.__init__).parameters.items() if k != "self"}
    assert {"architecture", "upsample", "mining_score", "mining_loss", "metric_grad"} <= set(spec)
    for key, value in defaults.items():
        if key in spec and key not in ("image_size", "milestones"):
            assert spec[key] == value, key
    assert (spec["architecture"], spec["width"], spec["max_width"], spec["bundle_norm"], spec["upsample"]) == (
        "authors", 32, 1024, False, "nearest")
    assert (spec["mining_score"], spec["mining_loss"], spec["metric_grad"]) == ("ml", "authors", "authors")
    small = OmegaConf.to_container(compose("menet_shapes"), resolve=True)["model"]
    assert {k: v for k, v in small.items() if k not in ("width", "max_width", "image_size")} == {
        k: v for k, v in OmegaConf.to_container(OmegaConf.load("configs/model/menet_small.yaml")).items()
        if k not in ("width", "max_width", "image_size")} | {"milestones": [1250]}  # the authors' optimiser + mining
    assert registry.build_model(small).describe()["params"] == 790_866


def test_short_run_writes_both_maps_and_reloads(tmp_path):
    from salseg.runner import run

    cfg = compose("menet_shapes", RUN_SMALL + [f"runs_dir={tmp_path}", "model.width=4", "model.max_width=8"])
    result = run(cfg)
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["primary_map"] == "ce" and list(doc["maps"]) == ["ce", "metric"]
    assert doc["n_images"] == {"shapes": 4}
    for per_ds in doc["maps"].values():
        assert all(0.0 <= v <= 1.0 for v in per_ds["shapes"].values())
    logged = (result.run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "train/L_ML", "train/L_CE", "val/loss", "val/MAE"):
        assert key in logged
    # save_hyperparameters: the checkpoint rebuilds the same model
    model = MEnet.load_from_checkpoint(result.run_dir / "checkpoints" / "last.ckpt").eval()
    assert model.hparams.image_size == 32 and model.hparams.width == 4
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in model.state_dict().items())
    assert model.test_step(_batch(n=2), 0)["metric"].shape == (2, 1, 32, 32)
