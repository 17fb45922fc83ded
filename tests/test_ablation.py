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
    (exp_dir / "both.yaml").write_text("compare: [rc_a, rc_b]\noverrides: {data.test.shapes.size: 5}\n")
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
