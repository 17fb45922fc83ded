"""`salseg eval` on several methods (x datasets): paper-style tables, curves, JSON, and one-line errors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salseg.cli import main
from salseg.eval_report import COLUMNS, best_rows, csv_table, latex_table, markdown_table, parse_pred_args
from salseg.evaluate import evaluate_folders


def _folders(root: Path, n: int = 5) -> dict[str, Path]:
    """gt/ and three methods' maps: good (close to the GT), noisy, inverted (bad: worst on every metric)."""
    rng = np.random.default_rng(3)
    paths = {k: root / k for k in ("gt", "good", "noisy", "bad")}
    for p in paths.values():
        p.mkdir(parents=True)
    for i in range(n):
        gt = np.zeros((24, 32), np.uint8)
        gt[5:18, 4 + i: 20 + i] = 255
        good = np.clip(gt * 0.9 + rng.integers(0, 30, gt.shape), 0, 255).astype(np.uint8)
        noisy = np.clip(gt * 0.5 + rng.integers(0, 120, gt.shape), 0, 255).astype(np.uint8)
        for name, arr in (("gt", gt), ("good", good), ("noisy", noisy), ("bad", 255 - good)):
            Image.fromarray(arr).save(paths[name] / f"{i:03d}.png")
    return paths


def _eval(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["eval", *args, "--workers", "0"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tables_equal_single_folder_values_and_bold_the_best(tmp_path, capsys):
    f = _folders(tmp_path)
    code, out, err = _eval("--pred", f"Good={f['good']}", "--pred", str(f["noisy"]), "--pred", f"Bad={f['bad']}",
                           "--gt", str(f["gt"]), "--out", str(tmp_path / "report"), capsys=capsys)
    assert code == 0, err
    report = tmp_path / "report"
    dataset = tmp_path.name  # a folder named gt is its parent's data set (sod300/gt: "sod300")
    rows = list(csv.DictReader((report / f"{dataset}.csv").open()))
    assert [r["method"] for r in rows] == ["Good", "noisy", "Bad"] and list(rows[0])[1:] == list(COLUMNS)
    for row, folder in zip(rows, ("good", "noisy", "bad")):
        single = evaluate_folders(f[folder], f["gt"], num_workers=0)["metrics"]
        assert {c: float(row[c]) for c in COLUMNS} == pytest.approx({c: single[c] for c in COLUMNS}, abs=1e-12)

    md = (report / f"{dataset}.md").read_text()
    assert md.strip() in out  # the printed table is the written one
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[0] == "Method" and [h.split()[0] for h in header[1:]] == list(COLUMNS)
    good_cells = [c.strip() for c in lines[2].strip("|").split("|")][1:]
    bad_cells = [c.strip() for c in lines[4].strip("|").split("|")][1:]
    assert all(c.startswith("**") for c in good_cells)  # Good is best everywhere, MAE lowest included
    assert not any(c.startswith("**") for c in bad_cells)
    mae = COLUMNS.index("MAE")
    assert float(good_cells[mae].strip("*")) < float(bad_cells[mae])

    tex = (report / f"{dataset}.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    assert len(body) == 4 and all(line.count("&") == len(COLUMNS) for line in body)
    assert body[1].count(r"\textbf{") == len(COLUMNS) and r"\textbf" not in body[3]
    assert body[0].startswith("Method & maxF") and "maxF\\_pr" in body[0]

    for name in (f"{dataset}_pr.png", f"{dataset}_f_threshold.png"):
        with Image.open(report / name) as im:
            assert im.format == "PNG" and im.size[0] > 200
    doc = json.loads((report / "results.json").read_text())
    assert doc["columns"] == list(COLUMNS)
    assert set(doc["results"][dataset]) == {"Good", "noisy", "Bad"}
    assert len(doc["results"][dataset]["Bad"]["curves"]["f"]) == 256


def test_best_per_column_mae_lowest_ties_all_bold_and_missing_values():
    rows = {"A": {c: 0.5 for c in COLUMNS}, "B": {**{c: 0.6 for c in COLUMNS}, "MAE": 0.2},
            "C": {**{c: 0.6004 for c in COLUMNS}, "MAE": float("nan")}}
    best = best_rows(rows, digits=3)
    assert best["maxF"] == {"B", "C"}  # 0.600 and 0.600 as printed: both bold
    assert best["MAE"] == {"B"}  # lowest wins; NaN never does
    md = markdown_table(rows)
    assert "| C | **0.600** |" in md and "| -" in md.split("| C |")[1]
    assert "**0.200**" in md and "0.500" in md and "**0.500**" not in md
    assert latex_table({"a_b & c": rows["A"]}).count(r"a\_b \& c") == 1
    parsed = list(csv.reader(csv_table(rows).splitlines()))
    assert parsed[0] == ["method", *COLUMNS] and float(parsed[2][COLUMNS.index("MAE") + 1]) == 0.2


def test_config_methods_by_dataset_and_by_pattern(tmp_path, capsys):
    f = _folders(tmp_path / "SETA")
    (tmp_path / "preds" / "Good").mkdir(parents=True)
    f["good"].rename(tmp_path / "preds" / "Good" / "SETA")
    config = tmp_path / "eval.yaml"
    config.write_text("datasets:\n  SETA: {gt: SETA/gt}\n"
                      "methods:\n  Good: 'preds/Good/{dataset}'\n  Noisy: {SETA: SETA/noisy}\n")
    code, out, err = _eval("--config", str(config), "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "SETA.csv").open()))
    assert [r["method"] for r in rows] == ["Good", "Noisy"]
    assert re.search(r"^\| Good \| \*\*", out, re.M)


def test_config_with_a_missing_folder_is_one_line_naming_it(tmp_path, capsys):
    f = _folders(tmp_path)
    config = tmp_path / "eval.yaml"
    config.write_text(f"datasets:\n  D: {{gt: {f['gt']}}}\nmethods:\n  Good: {{D: {tmp_path / 'nowhere'}}}\n")
    code, out, err = _eval("--config", str(config), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "methods.Good.D" in err and "nowhere" in err and "folder not found" in err
    config.write_text("datasets:\n  D: {images: x}\nmethods: {}\n")
    code, _, err = _eval("--config", str(config), capsys=capsys)
    assert code == 2 and "datasets.D must be a mapping with a 'gt' folder" in err


def test_a_map_that_is_not_an_image_is_one_line_naming_it(tmp_path, capsys):
    f = _folders(tmp_path)
    (f["noisy"] / "002.png").write_text("not a png")
    code, _, err = _eval("--pred", str(f["good"]), "--pred", str(f["noisy"]), "--gt", str(f["gt"]),
                         "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("salseg: error: cannot read image ") and "002.png" in err
    data = (f["good"] / "001.png").read_bytes()
    (f["good"] / "001.png").write_bytes(data[: len(data) // 2])  # a truncated PNG
    code, _, err = _eval("--pred", str(f["good"]), "--gt", str(f["gt"]), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "001.png" in err


def test_a_map_of_another_size_is_one_warning_line_and_a_missing_folder_one_error_line(tmp_path, capsys):
    f = _folders(tmp_path)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(f["noisy"] / "003.png")
    code, out, err = _eval("--pred", str(f["good"]), "--pred", str(f["noisy"]), "--gt", str(f["gt"]),
                           "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0 and err.splitlines() == [
        "salseg: warning: 1 of 5 predictions (003) differ in size from their ground truth and were resized to it "
        "(bilinear)"]
    code, out, err = _eval("--pred", str(f["good"]), "--pred", f"B={tmp_path / 'nowhere'}", "--gt", str(f["gt"]),
                           capsys=capsys)
    assert code == 2 and err.splitlines() == [
        f"salseg: error: method B on {tmp_path.name}: prediction folder not found: {tmp_path / 'nowhere'}"]


def test_pred_arguments():
    assert parse_pred_args(["A=x/one", "x/two/"]) == {"A": Path("x/one"), "two": Path("x/two")}
    with pytest.raises(ValueError, match="'two' is given twice"):
        parse_pred_args(["x/two", "y/two"])


def test_eval_report_does_not_import_torch():
    code = "import sys, salseg.eval_report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
