"""`salseg eval` scores folders without torch, torchmetrics, Lightning or scipy (issue 16 item 1), in worker processes
only when there are enough maps, with the values of the torch metric classes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.evaluate import MIN_PAIRS_PER_WORKER, evaluate_arrays, evaluate_folders, fit_to_gt
from salseg.metrics import SODMetrics

ROOT = Path(__file__).resolve().parents[1]


def _pairs(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pred = rng.integers(0, 256, (30, 41), dtype=np.uint8)
        gt = np.zeros((30, 41), np.uint8)
        gt[5 + i % 7: 22, 9: 30 - i % 5] = 255
        out.append((pred, gt))
    return out


def _write_folders(root: Path, pairs) -> tuple[Path, Path]:
    (root / "pred").mkdir(parents=True)
    (root / "gt").mkdir()
    for i, (p, g) in enumerate(pairs):
        Image.fromarray(p).save(root / "pred" / f"{i:03d}.png")
        Image.fromarray(g).save(root / "gt" / f"{i:03d}.png")
    return root / "pred", root / "gt"


def test_cli_eval_imports_no_torch(tmp_path):
    pred, gt = _write_folders(tmp_path, _pairs(3))
    out = tmp_path / "r.json"
    code = (
        "import sys; from salseg import cli\n"
        f"rc = cli.main(['eval', '--pred', {str(pred)!r}, '--gt', {str(gt)!r}, '--json', {str(out)!r}])\n"
        "heavy = sorted(m for m in ('torch', 'torchmetrics', 'lightning', 'pytorch_lightning', 'scipy') "
        "if m in sys.modules)\n"
        "assert rc == 0, rc\n"
        "assert not heavy, f'salseg eval imported {heavy}'\n"
        "cv2 = sys.modules.get('cv2')  # used for the weighted F, with its thread pool off (safe to fork)\n"
        "assert cv2 is not None and cv2.getNumThreads() == 1, cv2\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 images" in run.stdout and json.loads(out.read_text())["n_images"] == 3


def test_folder_values_equal_the_torch_metric_classes(tmp_path):
    pairs = _pairs(5)
    result = evaluate_folders(*_write_folders(tmp_path, pairs), num_workers=0)
    m = SODMetrics()
    m.update([torch.from_numpy(p) for p, _ in pairs], [torch.from_numpy(g) for _, g in pairs])
    expected, curves = m.compute(), m.curves()
    for key, value in expected.items():
        assert result["metrics"][key] == pytest.approx(value, abs=1e-14), key
    assert np.allclose(result["curves"]["pr_matlab"]["f"], curves["pr_matlab"]["f"], atol=1e-14, rtol=0)
    assert np.allclose(result["curves"]["pr"]["precision"], curves["pr"]["precision"], atol=1e-14, rtol=0)


def test_workers_start_only_when_they_pay():
    few = evaluate_arrays(*zip(*_pairs(MIN_PAIRS_PER_WORKER - 1)))
    assert few["timing"]["workers"] == 0  # too few maps: scored in this process
    many_pairs = _pairs(2 * MIN_PAIRS_PER_WORKER)
    many = evaluate_arrays(*zip(*many_pairs), num_workers=2)
    alone = evaluate_arrays(*zip(*many_pairs), num_workers=0)
    assert many["timing"]["workers"] == 2
    assert many["metrics"] == alone["metrics"]  # same per-image values, same averaging order: bit-identical


def test_numpy_bilinear_fit_equals_torch_interpolate():
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (13, 29), dtype=np.uint8)
    for shape in ((40, 17), (13, 60), (7, 9)):
        ours, resized = fit_to_gt(small, shape)
        t = torch.from_numpy(small.astype(np.float64))[None, None]
        ref = torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0]
        assert resized and ours.dtype == np.uint8
        assert np.array_equal(ours, ref.round().clamp(0, 255).to(torch.uint8).numpy()), shape
        ours_f, _ = fit_to_gt(small / 255.0, shape)
        assert np.allclose(ours_f, (ref / 255).clamp(0, 1).numpy(), atol=1e-15, rtol=0)


def test_unknown_metric_argument_is_named():
    with pytest.raises(TypeError, match="wf_bta"):
        evaluate_arrays(*zip(*_pairs(2)), wf_bta=2.0)
    with pytest.raises(ValueError, match="centroid_rounding"):
        evaluate_arrays(*zip(*_pairs(2)), centroid_rounding="up")
