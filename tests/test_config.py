"""Config composition: every experiment composes; typos and unknown names are errors that say what to do."""

import importlib.util

import pytest
from omegaconf import OmegaConf

from salseg import registry
from salseg.config import ConfigError, compose, list_ablations, list_experiments
from salseg.studies.plan import (
    ablation_plan,
    ablation_variants,
    comparison_entries,
    comparison_plan,
    is_comparison,
    load_ablation,
    load_comparison,
)

PLAIN = [name for name in list_experiments() if not is_comparison(name)]
COMPARISONS = [name for name in list_experiments() if is_comparison(name)]


@pytest.mark.parametrize("name", PLAIN)
def test_every_experiment_composes_and_builds_its_classes(name, monkeypatch):
    monkeypatch.setenv("SALSEG_DATA", "/nonexistent")
    cfg = compose(name)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["name"] == name
    assert resolved["data"]["root"] == "/nonexistent"  # ${oc.env:SALSEG_DATA,data}
    # only registered kinds, and every model key is a constructor argument of its class
    assert resolved["data"]["kind"] in registry.DATA_MODULES
    cls = registry.model_class(resolved["model"]["kind"])
    if resolved["model"]["kind"] == "dcsp":  # its saliency model is another run's checkpoint: none named here
        with pytest.raises(ValueError, match="model.saliency_checkpoint is not set"):
            registry.build_model(resolved["model"])
        resolved["model"]["saliency_checkpoint"] = "runs/menet_shapes/x/checkpoints/last.ckpt"
        if resolved["model"]["crf"] and importlib.util.find_spec("pydensecrf") is None:  # an optional extra
            with pytest.raises(ImportError, match="pip install -e '.\\[crf\\]'"):
                registry.build_model(resolved["model"])
            resolved["model"]["crf"] = False
    if resolved["model"].get("weights") == "imagenet":  # the paper experiments: no ImageNet file here
        from salseg.methods.gd_saliency.classifier import WeightsNotFound

        monkeypatch.setenv("TORCH_HOME", "/nonexistent")
        with pytest.raises(WeightsNotFound, match="/nonexistent/hub/checkpoints/.*set model.weights=null"):
            registry.build_model(resolved["model"])
        resolved["model"]["weights"] = None
        if "finetune" in resolved["model"]:
            resolved["model"]["finetune"] = "all"
    model = registry.build_model(resolved["model"])
    assert isinstance(model, cls)


@pytest.mark.parametrize("name", COMPARISONS)
def test_every_comparison_composes_each_entry(name):
    entries = comparison_entries(load_comparison(name), ["seed=3"])
    links = {v.name: v.use_checkpoint_of for v in comparison_plan(load_comparison(name))}
    assert len(entries) >= 2
    for entry, overrides in entries.items():
        # an earlier entry's checkpoint (the runner passes its path): any path builds the model
        overrides = overrides + [f"{key}=runs/{ref}/x/checkpoints/last.ckpt" for key, ref in links[entry]]
        cfg = compose(entry, overrides)
        assert cfg.name == entry and cfg.seed == 3
        registry.build_model(OmegaConf.to_container(cfg.model, resolve=True))


def test_quickstart_compares_every_method_on_the_same_images():
    entries = comparison_entries(load_comparison("quickstart"))
    assert list(entries) == ["rc_shapes", "menet_shapes", "gd_shapes", "dcsp_shapes"]
    tests = [OmegaConf.to_container(compose(e, o).data.test) for e, o in entries.items()]
    same = {"shapes": {"dataset": "shapes", "split": "test", "size": 120}}
    assert tests[0] == tests[1] == same
    assert tests[2] == {"shapes_single": None, **same}  # GD's own single-object test set is dropped
    assert tests[3] == {"shapes_multi": None, **same}   # so is DCSP's
    dcsp = comparison_plan(load_comparison("quickstart"))[3]
    assert dcsp.use_checkpoint_of == (("model.saliency_checkpoint", "menet_shapes"),)  # its saliency model
    from salseg.data import SaliencyDataModule

    assert SaliencyDataModule(root="data", test=tests[2]).test_names == ["shapes"]
    gd = compose("gd_shapes", entries["gd_shapes"]).model
    assert list(gd.maps) == ["CNN2+3", "CNN1", "gradient"]  # CNN1, CNN2 and CNN3 all trained; the baseline
    with pytest.raises(ConfigError, match=r"'quickstart' is a comparison of \['rc_shapes', 'menet_shapes', 'gd_"):
        compose("quickstart")


def test_a_comparison_entry_may_carry_its_own_overrides(tmp_path, monkeypatch):
    import salseg.config as config

    monkeypatch.setattr(config, "EXPERIMENT_DIR", tmp_path)
    (tmp_path / "rc.yaml").write_text("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n")
    (tmp_path / "rc2.yaml").write_text("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n")
    (tmp_path / "comparisons").mkdir()
    (tmp_path / "comparisons" / "cmp.yaml").write_text("compare: [rc, {rc2: {model.sigma_s2: 0.1}}]\n"
                                                       "overrides: {seed: 2}\n")
    entries = comparison_entries(load_comparison("cmp"), ["seed=5"])
    assert entries == {"rc": ["seed=2", "seed=5"], "rc2": ["seed=2", "model.sigma_s2=0.1", "seed=5"]}
    assert compose("rc2", entries["rc2"]).model.sigma_s2 == 0.1
    with pytest.raises(ConfigError, match=r"'cmp' is a comparison of \['rc', 'rc2'\]"):
        compose("cmp")
    (tmp_path / "comparisons" / "cmp.yaml").write_text("compare: [rc, {rc2: {}, rc: {}}]\n")
    with pytest.raises(ConfigError, match="one-key mappings"):
        load_comparison("cmp")


def test_a_comparison_names_a_bad_entry(tmp_path, monkeypatch):
    import salseg.config as config

    monkeypatch.setattr(config, "EXPERIMENT_DIR", tmp_path)
    (tmp_path / "rc.yaml").write_text("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n")
    (tmp_path / "comparisons").mkdir()
    (tmp_path / "comparisons" / "cmp.yaml").write_text("compare: [rc, rc_shapez]\n")
    with pytest.raises(ConfigError, match=r"unknown experiment 'rc_shapez'"):
        load_comparison("cmp")
    (tmp_path / "comparisons" / "cmp.yaml").write_text("compare: rc\n")
    with pytest.raises(ConfigError, match="non-empty list of experiment names"):
        load_comparison("cmp")
    (tmp_path / "comparisons" / "cmp.yaml").write_text("compare: [rc]\nmodel: {sigma_s2: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['model'\]"):
        load_comparison("cmp")


def test_experiment_list_is_not_empty():
    assert {"quickstart", "rc_shapes"} <= set(list_experiments())
    assert ({"rc_msra10k", "rc_msra1k", "rc_hkuis", "rc_dutomron", "rc_ecssd", "rc_sod", "rc_duts"}
            <= set(list_experiments()))


def test_override_order_group_then_experiment_then_command_line():
    cfg = compose("rc_shapes")
    assert cfg.data.test.shapes.size == 120  # experiment beats configs/data/shapes.yaml (200)
    cfg = compose("rc_shapes", ["data.test.shapes.size=7", "trainer.max_epochs=4"])
    assert cfg.data.test.shapes.size == 7 and cfg.trainer.max_epochs == 4


def test_group_switch_from_command_line():
    cfg = compose("rc_ecssd", ["data=sod"])
    assert list(cfg.data.test) == ["sod"]
    assert cfg.defaults.data == "sod"


def test_typo_is_an_error_naming_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"'trainer\.max_epoch'.*Did you mean trainer\.max_epochs"):
        compose("rc_shapes", ["trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match=r"'modle\.sigma_s2'.*Did you mean model"):
        compose("rc_shapes", ["modle.sigma_s2=1"])


def test_typo_inside_an_experiment_file_is_an_error():
    exp = OmegaConf.create({"defaults": {"data": "shapes", "model": "region_contrast", "trainer": "cpu",
                                         "logger": "csv"}, "model": {"sigma_s": 0.4}})
    with pytest.raises(ConfigError, match="sigma_s"):
        compose("inline", experiment=exp)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(ConfigError,
                       match=r"unknown experiment 'quikstart'.*Did you mean: quickstart.*Known experiments:.*rc_ecssd"):
        compose("quikstart")


def test_unknown_group_config_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown data config 'ecsd'.*ecssd"):
        compose("rc_shapes", ["data=ecsd"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        compose("rc_shapes", ["trainer.max_epochs"])


def test_unknown_model_kind_is_refused_not_imported():
    with pytest.raises(registry.BuildError, match="os.system.*known"):
        registry.build_model({"kind": "os.system"})
    with pytest.raises(registry.BuildError, match=r"unknown keys \['bogus'\]"):
        registry.build_model({"kind": "region_contrast", "bogus": 1})


@pytest.mark.parametrize("name", list_ablations())
def test_every_ablation_expands_to_composable_variants(name):
    plan = ablation_plan(load_ablation(name))
    assert len(plan) >= 2
    for variant in plan:
        compose(variant.experiment, list(variant.overrides))


def test_grid_ablation_is_a_cartesian_product():
    abl = OmegaConf.create({"base": "rc_shapes", "grid": {"model.sigma_s2": [0.1, 0.4], "model.n_levels": [8, 12]}})
    variants = ablation_variants(abl)
    assert len(variants) == 4
    assert variants["sigma_s2=0.1,n_levels=8"] == ["model.sigma_s2=0.1", "model.n_levels=8"]
