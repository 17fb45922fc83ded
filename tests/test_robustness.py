"""`make robust`: one run tests clean / AWGN / JPEG / fixed-variance copies of every test set, writes the table and
the F-vs-noise plot; the clean row is a plain run's result; training happens once; bad input is one line."""

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from salseg import registry
from salseg.cli import main
from salseg.config import ConfigError, compose
from salseg.methods.base import SalsegMethod
from salseg.robustness import expand_test_specs, parse_variances, robustness_config, run_robustness
from salseg.runner import run

SMALL = ["data.test.shapes.size=6", "data.eval_batch_size=6", "data.num_workers=0", "logger=csv"]


def test_expanded_test_specs_carry_the_right_distortions():
    test = {"shapes": {"dataset": "shapes", "split": "test", "size": 5, "distortion": {"kind": "jpeg", "quality": 5}},
            "other": {"dataset": "shapes", "split": "test", "seed": 3}}
    out = expand_test_specs(test, [0.01, 0.2], awgn_range=(0.0, 0.05), jpeg_range=(20, 40))
    assert list(out) == ["shapes", "shapes@awgn", "shapes@jpeg", "shapes@awgn=0.01", "shapes@awgn=0.2",
                         "other", "other@awgn", "other@jpeg", "other@awgn=0.01", "other@awgn=0.2"]
    assert out["shapes"] == {"dataset": "shapes", "split": "test", "size": 5, "distortion": None}  # clean replaces it
    assert out["shapes@awgn"]["distortion"] == {"kind": "awgn", "variance": [0.0, 0.05]}
    assert out["shapes@jpeg"]["distortion"] == {"kind": "jpeg", "quality": [20, 40]}
    assert out["other@awgn=0.2"] == {"dataset": "shapes", "split": "test", "seed": 3,
                                     "distortion": {"kind": "awgn", "variance": 0.2}}
    # a single spec, and a list, are named as the DataModule names them
    assert list(expand_test_specs({"dataset": "ecssd"}, []))[:3] == ["ecssd", "ecssd@awgn", "ecssd@jpeg"]
    assert "ecssd_1@jpeg" in expand_test_specs([{"dataset": "ecssd"}, {"dataset": "ecssd", "root": "x"}], [])
    # the composed config: the DataModule accepts it and builds the distortion each copy names
    cfg, study = robustness_config("rc_shapes", ["data.test.shapes.size=4", "data.distortion={kind: jpeg, quality: 9}"],
                                   variances="0.05,0,0.02,0.05")
    assert study["variances"] == [0.02, 0.05] and study["datasets"] == ["shapes"]
    dm = registry.build_datamodule(dict(compose_to_container(cfg)["data"]))
    assert dm.test_names == ["shapes", "shapes@awgn", "shapes@jpeg", "shapes@awgn=0.02", "shapes@awgn=0.05"]
    dm.setup("test")
    dists = [ds.distortion for ds in dm.test_datasets]
    assert dists[0] is None  # the experiment's own data.distortion does not reach the clean copy
    assert (dists[1].kind, dists[1].range) == ("awgn", (0.01, 0.1))
    assert (dists[2].kind, dists[2].range) == ("jpeg", (10, 90))
    assert [d.fixed for d in dists[3:]] == [0.02, 0.05]
    assert all(10 <= dists[2].strength(i) <= 90 for i in range(20))


def compose_to_container(cfg):
    from salseg.config import resolve

    return resolve(cfg)


def test_robust_rc_writes_table_and_plot_clean_row_equals_plain_run(tmp_path):
    plain = run(compose("rc_shapes", SMALL + [f"runs_dir={tmp_path / 'plain'}"]))
    res = run_robustness("rc_shapes", SMALL + [f"runs_dir={tmp_path / 'robust'}"], variances=[0.01, 0.3])
    out = res.out_dir
    assert out == res.run_dir / "robustness"
    for name in ("table.md", "table.csv", "f_vs_noise.csv", "results.json"):
        assert (out / name).is_file(), name
    assert (out / "f_vs_noise.png").stat().st_size > 5000
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert [(r["map"], r["dataset"], r["condition"]) for r in rows] == [
        ("saliency", "shapes", "clean"), ("saliency", "shapes", "AWGN"), ("saliency", "shapes", "JPEG")]
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "complete" and doc["variances"] == [0.01, 0.3]
    assert doc["n_images"] == {k: 6 for k in ["shapes", "shapes@awgn", "shapes@jpeg", "shapes@awgn=0.01",
                                              "shapes@awgn=0.3"]}
    # the clean row is exactly what a plain run scores on the same images
    clean = doc["table"]["saliency"]["shapes"]["clean"]
    for key, value in plain.metrics["saliency"]["shapes"].items():
        assert clean[key] == pytest.approx(value, abs=1e-12), key
        if key in rows[0]:  # the CSV holds the table's metrics, 6 decimals
            assert float(rows[0][key]) == pytest.approx(value, abs=1e-6), key
    # noise hurts Region Contrast: max F falls as the variance grows, clearly so at strong noise
    curve = doc["f_vs_noise"]["saliency"]["shapes"]
    assert curve["variance"] == [0.0, 0.01, 0.3]
    f0, f1, f2 = curve["maxF"]
    assert f2 < f1 < f0 and f2 < f0 - 0.15
    assert curve["maxF"][0] == clean["maxF"]
    assert doc["table"]["saliency"]["shapes"]["AWGN"]["maxF"] < f0
    table = (out / "table.md").read_text()
    assert "| shapes | AWGN |" in table and "0 (clean)" in table and "U[0.01, 0.1]" in table


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    base = ["logger=csv", f"runs_dir={tmp_path}"]
    cases = {
        ("robust", "no_such_experiment", *base): "unknown experiment 'no_such_experiment'",
        ("robust", "rc_shapes", "--variances", "-1", *base): "a variance must be >= 0, got -1",
        ("robust", "rc_shapes", "--variances=0.01,abc", *base): "'abc' is not a number",
        ("robust", "rc_shapes", "--variances", "nan", *base): "not a finite number",
        ("robust", "rc_shapes", "--jpeg", "0,50", *base): "jpeg quality must be an integer in 1..100",
        ("robust", "rc_shapes", "--awgn", "0.2,0.1", *base): "lo <= hi",
        ("robust", "rc_shapes", "--ckpt", str(tmp_path / "none.ckpt"), *base): "no checkpoint file",
        ("robust", "rc_shapes", "data.tset.x=1", *base): "unknown config key 'data.tset.x'",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("salseg: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert not list(tmp_path.iterdir())  # refused before any run directory is made
    with pytest.raises(ConfigError, match="no value"):
        parse_variances("")


def test_a_crashed_study_leaves_no_results(tmp_path, monkeypatch):
    from salseg.methods.baselines.module import RegionContrast

    real = RegionContrast.test_step

    def crash_on_jpeg(self, batch, batch_idx, dataloader_idx=0):
        if dataloader_idx == 2:
            raise RuntimeError("simulated crash on the JPEG copy")
        return real(self, batch, batch_idx, dataloader_idx)

    monkeypatch.setattr(RegionContrast, "test_step", crash_on_jpeg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_robustness("rc_shapes", SMALL + ["data.test.shapes.size=2", f"runs_dir={tmp_path}"], variances=[0.1])
    assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("metrics.json"))


class TwoMapNet(SalsegMethod):
    """A small trainable model returning two maps (like MEnet's "ce" and "metric"): trained once, tested on all."""

    fits = 0

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def on_fit_start(self):
        type(self).fits += 1

    def training_step(self, batch, batch_idx):
        return nn.functional.binary_cross_entropy_with_logits(self.net(batch["image"]), batch["mask"])

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        p = torch.sigmoid(self.net(batch["image"]))
        return {"ce": p, "metric": (p - 0.5).abs() * 2}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_trainable_model_is_trained_once_then_a_checkpoint_is_only_tested(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from salseg import config

    monkeypatch.setitem(registry.MODELS, "two_map", f"{__name__}:TwoMapNet")
    real = config.load_group
    monkeypatch.setattr(config, "load_group", lambda group, name: OmegaConf.create({"kind": "two_map", "lr": 0.05})
                        if (group, name) == ("model", "two_map") else real(group, name))
    experiment = OmegaConf.create({"defaults": {"data": "shapes", "model": "two_map", "trainer": "cpu",
                                                "logger": "csv"}})
    ovr = ["data.num_workers=0", "data.train.size=8", "data.batch_size=4", "data.val=null", "data.test.shapes.size=3",
           "data.image_size=32", "data.test.shapes.image_size=32", f"runs_dir={tmp_path}"]
    TwoMapNet.fits = 0
    trained = run_robustness("two_map", ovr, variances=[0.05], experiment=experiment)
    assert TwoMapNet.fits == 1
    assert list(trained.table) == ["ce", "metric"]  # every map the model returns, the primary first
    rows = list(csv.DictReader((trained.out_dir / "table.csv").read_text().splitlines()))
    assert [(r["map"], r["condition"]) for r in rows] == [("ce", "clean"), ("ce", "AWGN"), ("ce", "JPEG"),
                                                          ("metric", "clean"), ("metric", "AWGN"), ("metric", "JPEG")]
    ckpt = trained.run_dir / "checkpoints" / "last.ckpt"
    tested = run_robustness("two_map", ovr, ckpt_path=str(ckpt), variances=[0.05], experiment=experiment)
    assert TwoMapNet.fits == 1 and tested.run_dir != trained.run_dir
    assert json.loads((tested.out_dir / "results.json").read_text())["ckpt_path"] == str(ckpt)
    for map_name in ("ce", "metric"):
        for cond in ("clean", "AWGN", "JPEG"):
            a, b = trained.table[map_name]["shapes"][cond], tested.table[map_name]["shapes"][cond]
            assert a == pytest.approx(b, abs=1e-9), (map_name, cond)


def test_a_comparison_file_gets_one_study_per_experiment_and_a_joint_table(tmp_path, monkeypatch, capsys):
    """`make robust NAME=quickstart` (Region Contrast and MEnet side by side), here with two RC settings."""
    from salseg import config

    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    rc = (config.EXPERIMENT_DIR / "rc_shapes.yaml").read_text()
    (exp_dir / "rc_a.yaml").write_text(rc)
    (exp_dir / "rc_b.yaml").write_text(rc + "\nmodel: {sigma_s2: 0.05}\n")
    (exp_dir / "comparisons").mkdir()
    (exp_dir / "comparisons" / "both.yaml").write_text(
        "compare: [rc_a, rc_b]\noverrides: {data.test: {shapes: {dataset: shapes, split: test, size: 3}}}\n")
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    assert main(["robust", "both", "--ckpt", __file__]) == 2  # which of the two would it be?
    assert "--ckpt tests one model" in capsys.readouterr().err
    assert main(["robust", "both", "--variances", "0.1", "data.num_workers=0", "logger=csv",
                 f"runs_dir={tmp_path / 'runs'}"]) == 0
    (out,) = (tmp_path / "runs" / "both").glob("*/robustness")
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert [(r["method"], r["map"], r["condition"]) for r in rows] == [
        (m, "saliency", c) for m in ("rc_a", "rc_b") for c in ("clean", "AWGN", "JPEG")]
    doc = json.loads((out / "results.json").read_text())
    assert doc["compare"] == ["rc_a", "rc_b"] and (out / "f_vs_noise.png").stat().st_size > 5000
    for entry in ("rc_a", "rc_b"):  # each experiment is its own run with its own study
        own = json.loads((Path(doc["runs"][entry]) / "robustness" / "results.json").read_text())
        assert own["n_images"]["shapes@awgn=0.1"] == 3
        assert own["table"]["saliency"] == doc["table"][entry]["saliency"]
    assert doc["table"]["rc_a"]["saliency"]["shapes"]["clean"] != doc["table"]["rc_b"]["saliency"]["shapes"]["clean"]
    assert "| shapes | rc_b | saliency |" in capsys.readouterr().out
