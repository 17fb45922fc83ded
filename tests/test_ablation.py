"""`make ablation`: every variant runs, one table (markdown + CSV) and one overlaid PR plot come out."""

import csv
import json
from pathlib import Path

from salseg.cli import main


def test_rc_ablation_writes_table_csv_and_pr_plot(tmp_path):
    # through the command line, as `make ablation NAME=rc_spatial ARGS=...` calls it: runs_dir is honoured
    assert main(["ablate", "rc_spatial", "data.test.shapes.size=6", "data.num_workers=0", "logger=csv",
                 f"runs_dir={tmp_path}"]) == 0
    (out,) = (tmp_path / "ablations" / "rc_spatial").iterdir()
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["variant"] for r in rows] == ["rc", "rc_no_spatial", "rc_strong_spatial", "rc_slic"]
    assert {r["dataset"] for r in rows} == {"shapes"}
    # each variant really is a different run: sigma_s^2 changes the maps, so the metrics differ
    assert len({r["MAE"] for r in rows}) == 4
    table = (out / "table.md").read_text()
    assert "| rc_no_spatial |" in table and "maxF_pr" in table
    assert (out / "pr_curves.png").stat().st_size > 5000
    results = json.loads((out / "results.json").read_text())
    assert all(str(tmp_path) in d for d in results["runs"].values())
    for row in rows:  # the table holds what each variant's own run wrote
        doc = json.loads(open(f"{results['runs'][row['variant']]}/metrics.json").read())
        assert abs(doc["datasets"]["shapes"]["MAE"] - float(row["MAE"])) < 1e-6


def test_a_comparison_runs_each_experiment_and_writes_one_table(tmp_path, monkeypatch):
    # `make exp NAME=quickstart` on a comparison file: each entry is its own run; one table compares them
    import salseg.config as config

    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    rc = "defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"
    (exp_dir / "rc_a.yaml").write_text(rc)
    (exp_dir / "rc_b.yaml").write_text(rc + "model: {segmentation: slic}\n")
    (exp_dir / "comparisons").mkdir()
    (exp_dir / "comparisons" / "both.yaml").write_text("compare: [rc_a, rc_b]\noverrides: {data.test.shapes.size: 5}\n")
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    assert main(["run", "both", "data.num_workers=0", f"runs_dir={tmp_path / 'runs'}"]) == 0
    (out,) = (tmp_path / "runs" / "both").iterdir()
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["method"] for r in rows] == ["rc_a", "rc_b"] and rows[0]["MAE"] != rows[1]["MAE"]
    results = json.loads((out / "results.json").read_text())
    for row in rows:
        run_dir = results["runs"][row["method"]]
        assert f"/runs/{row['method']}/" in run_dir  # an ordinary run of the entry's own experiment
        doc = json.loads(open(f"{run_dir}/metrics.json").read())
        assert doc["n_images"] == {"shapes": 5}  # the comparison's common overrides reached every entry
        config = (Path(run_dir) / "config.yaml").read_text()
        assert f"notes: 'comparison both: {row['method']}'" in config  # a string (W&B refuses a mapping)
        assert abs(doc["datasets"]["shapes"]["MAE"] - float(row["MAE"])) < 1e-6
    assert "| rc_b |" in (out / "table.md").read_text() and (out / "pr_curves.png").is_file()


def test_a_comparison_entry_can_take_the_checkpoint_of_an_earlier_one(tmp_path, monkeypatch):
    # the quickstart's DCSP entry reads the saliency checkpoint of its MEnet entry this way
    import salseg.config as config

    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    rc = "defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"
    (exp_dir / "rc_a.yaml").write_text(rc)
    (exp_dir / "rc_b.yaml").write_text(rc)
    (exp_dir / "comparisons").mkdir()
    (exp_dir / "comparisons" / "pair.yaml").write_text("compare: [rc_a, {rc_b: {use_checkpoint_of: {ckpt_path: rc_a}}}]"
                                                       "\noverrides: {data.test.shapes.size: 2}\n")
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    assert main(["run", "pair", "data.num_workers=0", f"runs_dir={tmp_path / 'runs'}"]) == 0
    (out,) = (tmp_path / "runs" / "pair").iterdir()
    runs = json.loads((out / "results.json").read_text())["runs"]
    b_config = (Path(runs["rc_b"]) / "config.yaml").read_text()
    assert f"ckpt_path: {runs['rc_a']}/checkpoints/last.ckpt" in b_config


def test_variants_share_runs_pick_maps_reuse_checkpoints_and_add_baselines(tmp_path, monkeypatch):
    # gd_models / gd_steps in miniature: rows that are maps of ONE run, a row testing an earlier variant's
    # checkpoint at another T (no second training), a baseline row from another experiment, segmentation scores
    import salseg.config as config

    exp_dir = tmp_path / "experiments"
    (exp_dir / "ablations").mkdir(parents=True)
    (exp_dir / "gd_tiny.yaml").write_text(
        "defaults: {data: shapes, model: gd_saliency, trainer: cpu, logger: csv}\n"
        "data: {train: {dataset: shapes, split: train, size: 8}, val: {dataset: shapes, split: val, size: 4},\n"
        "       test: {shapes: {dataset: shapes, split: test, size: 3}}, image_size: 32, batch_size: 4,\n"
        "       eval_batch_size: 3, num_workers: 0}\n"
        "model: {num_classes: 4, weights: null, cost_steps: 3, maps: [CNN1, gradient], segment: [CNN1],\n"
        "        seg_runs: 3}\n"
        "trainer: {max_epochs: 1, log_every_n_steps: 1}\n")
    (exp_dir / "rc_tiny.yaml").write_text(
        "defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"
        "data: {test: {shapes: {dataset: shapes, split: test, size: 3}}, num_workers: 0}\n")
    (exp_dir / "ablations" / "tiny.yaml").write_text(
        "base: gd_tiny\nvariants:\n"
        "  T3: {map: CNN1}\n  gradient: {map: gradient}\n  segmentation: {map: CNN1_segmentation}\n"
        "  T1: {model.cost_steps: 1, checkpoint_of: T3}\n  rc: {experiment: rc_tiny}\n")
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    monkeypatch.setattr(config, "ABLATION_DIR", exp_dir / "ablations")
    assert main(["ablate", "tiny", f"runs_dir={tmp_path / 'runs'}"]) == 0
    (out,) = (tmp_path / "runs" / "ablations" / "tiny").iterdir()
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert runs["T3"] == runs["gradient"] == runs["segmentation"]          # one training run, three rows
    assert len({runs["T3"], runs["T1"], runs["rc"]}) == 3 and "/rc_tiny/" in runs["rc"]
    t1_config = (Path(runs["T1"]) / "config.yaml").read_text()
    assert "test_only: true" in t1_config and f"{runs['T3']}/checkpoints/last.ckpt" in t1_config
    assert not (Path(runs["T1"]) / "csv" / "version_0" / "metrics.csv").read_text().count("train/loss")
    rows = results["results"]
    assert rows["T1"]["shapes"]["MAE"] != rows["T3"]["shapes"]["MAE"]     # T reached the tested model
    assert rows["gradient"]["shapes"]["MAE"] != rows["T3"]["shapes"]["MAE"]
    assert 0.0 <= rows["segmentation"]["shapes"]["Jaccard"] <= 1.0 and "segF" in rows["segmentation"]["shapes"]
    header = open(out / "table.csv").readline().strip().split(",")
    assert header[-2:] == ["segF", "Jaccard"]


def test_checkpoint_of_must_name_an_earlier_variant(tmp_path):
    from omegaconf import OmegaConf

    from salseg.config import ConfigError
    from salseg.studies.plan import ablation_plan

    abl = OmegaConf.create({"base": "gd_shapes", "variants": {"a": {"checkpoint_of": "b"}, "b": {}}})
    import pytest

    with pytest.raises(ConfigError,
                       match=r"variant 'a': 'b' \(checkpoint_of / use_checkpoint_of\) must name an earlier"):
        ablation_plan(abl)
    later = OmegaConf.create({"base": "gd_shapes", "variants": {
        "a": {"use_checkpoint_of": {"model.saliency_checkpoint": "b"}}, "b": {}}})
    with pytest.raises(ConfigError, match="variant 'a': 'b' .* must name an earlier"):
        ablation_plan(later)
    with pytest.raises(ConfigError, match="use_checkpoint_of must map config keys to earlier entries"):
        ablation_plan(OmegaConf.create({"base": "gd_shapes", "variants": {"b": {}, "a": {"use_checkpoint_of": "b"}}}))
    with pytest.raises(Exception, match="unknown experiment 'rc_nope'"):
        ablation_plan(OmegaConf.create({"base": "gd_shapes", "variants": {"a": {"experiment": "rc_nope"}}}))


def test_a_table_of_saliency_and_semantic_rows_on_different_test_sets(tmp_path):
    # dcsp_cues: the saliency model's row (SOD metrics on its own set) beside mIoU rows on another set
    from salseg.studies.report import write_outputs

    rows = {"saliency_model": {"shapes": {"maxF": 0.61, "MAE": 0.17}},
            "both": {"shapes_multi": {"mIoU": 0.34, "pixAcc": 0.88}},
            "attention_only": {"shapes_multi": {"mIoU": 0.54, "pixAcc": 0.90}}}
    write_outputs(tmp_path, "mixed", rows, {}, {k: f"/runs/{k}" for k in rows})
    table = (tmp_path / "table.md").read_text()
    multi = table.split("## shapes_multi")[1]
    assert "| variant | mIoU | pixAcc |" in multi and "| attention_only | **0.5400** | **0.9000** |" in multi
    assert "| variant | maxF | MAE |" in table.split("## shapes_multi")[0]
    assert (tmp_path / "metrics.png").is_file()


def test_summary_rows_give_the_mean_and_std_of_the_variants(tmp_path):
    from salseg.studies.report import write_outputs

    rows = {f"fold{k}": {"voc": {"maxF": 0.6 + 0.1 * k, "MAE": 0.2 - 0.05 * k}} for k in range(3)}
    write_outputs(tmp_path, "folds", rows, {}, {k: f"/runs/{k}" for k in rows}, summary=["mean", "std"])
    table = (tmp_path / "table.md").read_text()
    assert "| fold2 | **0.8000** | **0.1000** |" in table
    assert "| mean (3 runs) | 0.7000 | 0.1500 |" in table  # never bold, never "best"
    assert "| std (3 runs) | 0.1000 | 0.0500 |" in table
    got = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "table.csv"))}
    assert abs(float(got["mean (3 runs)"]["maxF"]) - 0.7) < 1e-9


def test_gd_voc_folds_runs_the_five_folds_that_partition_val(tmp_path):
    """One command, paper 002's 5-fold protocol: five variants whose test folds are disjoint and cover val, each
    trained on the rest (the overlap check passes), with a mean row."""
    from test_data_voc import VAL, write_voc

    from salseg import registry
    from salseg.config import compose, resolve
    from salseg.studies.plan import ablation_plan, load_ablation

    write_voc(tmp_path)
    abl = load_ablation("gd_voc_folds")
    plan = ablation_plan(abl)
    assert [v.name for v in plan] == [f"fold{k}" for k in range(5)] and list(abl.summary) == ["mean", "std"]
    tests = []
    for v in plan:
        cfg = compose(v.experiment, list(v.overrides) + [f"data.root={tmp_path}", "data.num_workers=0"])
        data = resolve(cfg)["data"]
        dm = registry.build_datamodule(data)
        dm.check_overlap()  # the fold's training images never include its test images
        tests.append(dm.test_datasets[0].names)
    assert sorted(n for t in tests for n in t) == sorted(VAL)


def test_a_comparison_shows_every_map_of_an_entry(tmp_path, monkeypatch):
    # the quickstart's GD entry makes CNN2+3, CNN1 and gradient maps: each is a row "<entry>: <map>", the primary
    # map's row keeps the entry's name
    import torch

    import salseg.config as config
    from salseg.backbones import MiniVGG

    torch.save(MiniVGG().state_dict(), tmp_path / "mini.pth")
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "gd_none.yaml").write_text(
        "defaults: {data: shapes, model: gd_saliency, trainer: cpu, logger: csv}\n"
        "data: {train: null, val: null, test: {shapes: {dataset: shapes, split: test, size: 3}}, image_size: 32,\n"
        "       num_workers: 0}\n"
        f"model: {{num_classes: 1000, backbone: mini_vgg, weights: {tmp_path / 'mini.pth'}, finetune: none,\n"
        "        maps: [clamped, gradient], cost_steps: 2}\n")
    (exp_dir / "rc.yaml").write_text("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n")
    (exp_dir / "comparisons").mkdir()
    (exp_dir / "comparisons" / "both.yaml").write_text("compare: [gd_none, rc]\n"
                                                       "overrides: {data.test.shapes.size: 3}\n")
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    assert main(["run", "both", "data.num_workers=0", f"runs_dir={tmp_path / 'runs'}"]) == 0
    (out,) = (tmp_path / "runs" / "both").iterdir()
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["method"] for r in rows] == ["gd_none", "gd_none: gradient", "rc"]
    results = json.loads((out / "results.json").read_text())
    doc = json.loads(open(f"{results['runs']['gd_none']}/metrics.json").read())
    assert abs(doc["maps"]["gradient"]["shapes"]["MAE"] - float(rows[1]["MAE"])) < 1e-6
