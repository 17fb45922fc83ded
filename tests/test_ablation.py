"""`make ablation`: every variant runs, one table (markdown + CSV) and one overlaid PR plot come out."""

import csv
import json

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
