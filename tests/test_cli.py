"""The command line: `salseg eval` on the real SOD-300 maps, listing, config printing, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def salseg(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "salseg", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_eval_sod300_amulet_prints_the_reference_figures(shared_data, tmp_path):
    sod = shared_data / "sod300"
    out = tmp_path / "amulet.json"
    proc = salseg("eval", "--pred", str(sod / "preds" / "Amulet"), "--gt", str(sod / "gt"), "--name", "Amulet",
                  "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    header, rule, row = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    printed = dict(zip([c.strip() for c in header.split("|")[2:-1]], [c.strip() for c in row.split("|")[2:-1]]))
    # MATLAB toolbox (maxF_pr, MAE, Sm, adpF) and PySODMetrics (maxF) figures for Amulet on SOD
    assert printed["maxF_pr"] == "0.8061" and printed["maxF"] == "0.7728"
    assert printed["MAE"] == "0.1407" and printed["Sm"] == "0.7579" and printed["adpF"] == "0.7547"
    doc = json.loads(out.read_text())
    reference = json.loads((sod / "reference_metrics_matlab.json").read_text())
    assert doc["n_images"] == 300
    assert doc["metrics"]["MAE"] == pytest.approx(0.140742, abs=1e-6)
    assert doc["metrics"]["Sm"] == pytest.approx(0.757920, abs=1e-6)
    assert doc["metrics"]["maxF_pr"] == pytest.approx(0.806060, abs=2e-4)
    assert set(doc["metrics"]) == {"maxF", "meanF", "adpF", "maxF_pr", "MAE", "Sm", "maxEm", "meanEm", "adpEm", "wF"}
    assert len(doc["curves"]["pr"]["precision"]) == 256 and reference  # curves come along for plotting


def test_eval_names_a_gt_without_prediction(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gt" / f"{name}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pred" / "a.jpg")
    proc = salseg("eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"))
    assert proc.returncode != 0
    assert "no prediction" in proc.stderr and "b.png" in proc.stderr
    ok = salseg("eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--allow-missing")
    assert ok.returncode == 0 and "1 images" in ok.stdout


def test_eval_of_two_maps_sharing_a_stem_is_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gt" / "a.png")
    for ext in ("png", "jpg"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pred" / f"a.{ext}")
    proc = salseg("eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"salseg: error: ambiguous: a.jpg and a.png in {tmp_path / 'pred'} share the stem 'a'"]


def test_list_and_print_config():
    proc = salseg("list")
    assert proc.returncode == 0 and "quickstart" in proc.stdout and "rc_spatial" in proc.stdout
    proc = salseg("run", "rc_shapes", "model.sigma_s2=0.25", "--print-config")
    assert proc.returncode == 0 and "sigma_s2: 0.25" in proc.stdout


def test_output_into_a_closed_pipe_is_no_traceback():
    """`salseg list | head -0`: the reader is gone before salseg writes; exit like SIGPIPE (141), print nothing."""
    proc = subprocess.Popen([sys.executable, "-m", "salseg", "list"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_user_errors_are_one_line_not_a_traceback():
    proc = salseg("run", "quikstart")
    assert proc.returncode == 2
    assert "unknown experiment 'quikstart'" in proc.stderr and "Traceback" not in proc.stderr
    proc = salseg("run", "rc_shapes", "trainer.max_epoch=2")
    assert proc.returncode == 2 and "Did you mean trainer.max_epochs" in proc.stderr


def test_dataset_spec_typo_is_one_line_naming_the_key():
    proc = salseg("run", "rc_shapes", "data.test.shapes.sizee=3", "logger=csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sizee" in proc.stderr and "accepts" in proc.stderr
