"""Folder evaluation: pairing, reading (as cv2.IMREAD_GRAYSCALE), resizing, errors, output helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salseg.atomic import write_json
from salseg.evaluate import (
    ImageReadError,
    evaluate_arrays,
    evaluate_folders,
    fit_to_gt,
    format_table,
    read_gray,
)
from salseg.metrics import METRIC_KEYS, SODMetrics


def _pairs(n=4, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 36 + i, 50
        pred = rng.integers(0, 256, (h, w), dtype=np.uint8)
        gt = np.zeros((h, w), np.uint8)
        gt[8:28, 10 + i: 30 + i] = 255
        out.append((pred, gt))
    return out


def _write(folder: Path, name: str, array: np.ndarray, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(array).save(path, **kwargs)
    return path


def _direct(pairs) -> dict[str, float]:
    m = SODMetrics()
    m.update([torch.from_numpy(p) for p, _ in pairs], [torch.from_numpy(g) for _, g in pairs])
    return m.compute()


def _close(a, b, tol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=tol), k


# ---------------------------------------------------------------------------------------------------------------
# Pairing and scoring
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_pairs_by_stem_across_formats(tmp_path, workers):
    pairs = _pairs()
    exts = [".bmp", ".tif", ".png", ".pgm"]  # lossless: the values must come back exactly
    for i, (pred, gt) in enumerate(pairs):
        _write(tmp_path / "gt", f"img{i}.png", gt)
        _write(tmp_path / "pred", f"img{i}{exts[i]}", pred)
    (tmp_path / "pred" / "notes.txt").write_text("not an image")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=workers)
    assert result["n_images"] == 4 and result["n_missing"] == 0 and result["n_resized"] == 0
    assert list(result["metrics"]) == list(METRIC_KEYS)
    _close(result["metrics"], _direct(pairs))
    assert len(result["curves"]["pr"]["precision"]) == 256


def test_missing_prediction_is_an_error_naming_it(tmp_path):
    pairs = _pairs(3)
    for i, (pred, gt) in enumerate(pairs):
        _write(tmp_path / "gt", f"img{i}.png", gt)
        if i != 1:
            _write(tmp_path / "pred", f"img{i}.png", pred)
    with pytest.raises(FileNotFoundError, match="img1.png"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=0)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=0, allow_missing=True)
    assert result["n_images"] == 2 and result["n_missing"] == 1 and result["missing"] == ["img1"]
    _close(result["metrics"], _direct([pairs[0], pairs[2]]))


def test_empty_and_ambiguous_folders(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(FileNotFoundError, match="no ground-truth"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    pred, gt = _pairs(1)[0]
    _write(tmp_path / "gt", "a.png", gt)
    _write(tmp_path / "pred", "a.png", pred)
    _write(tmp_path / "pred", "a.bmp", pred)
    with pytest.raises(ValueError, match="ambiguous"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def test_prediction_of_another_size_is_resized_with_a_warning(tmp_path):
    pred, gt = _pairs(1)[0]
    small = np.array(Image.fromarray(pred).resize((25, 18)))
    _write(tmp_path / "gt", "a.png", gt)
    _write(tmp_path / "pred", "a.png", small)
    with pytest.warns(UserWarning, match="resized"):
        result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=0)
    assert result["n_resized"] == 1
    resized, flag = fit_to_gt(small, gt.shape)
    assert flag and resized.shape == gt.shape and resized.dtype == np.uint8
    _close(result["metrics"], _direct([(resized, gt)]))


def test_bilinear_resize_uses_half_pixel_centres():
    # Upsampling 2x with half-pixel centres (cv2 INTER_LINEAR, align_corners=False): 0, 64 -> 0, 16, 48, 64.
    out, _ = fit_to_gt(np.array([[0, 64]], np.uint8), (1, 4))
    assert out.tolist() == [[0, 16, 48, 64]]


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_file_is_an_error_naming_it(tmp_path, workers):
    pairs = _pairs(2)
    for i, (pred, gt) in enumerate(pairs):
        _write(tmp_path / "gt", f"img{i}.png", gt)
        path = _write(tmp_path / "pred", f"img{i}.png", pred)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated PNG
    with pytest.raises(ImageReadError, match="img1.png"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=workers)


def test_evaluate_arrays_equals_folders(tmp_path):
    pairs = _pairs(3)
    for i, (pred, gt) in enumerate(pairs):
        _write(tmp_path / "gt", f"{i}.png", gt)
        _write(tmp_path / "pred", f"{i}.png", pred)
    a = evaluate_arrays([p for p, _ in pairs], [g for _, g in pairs], num_workers=2)
    b = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_workers=2)
    _close(a["metrics"], b["metrics"])


# ---------------------------------------------------------------------------------------------------------------
# Reading like cv2.IMREAD_GRAYSCALE (expected values printed by opencv-python 4.14)
# ---------------------------------------------------------------------------------------------------------------
COLOURS = np.array([[[95, 130, 194], [15, 163, 33], [248, 189, 16], [61, 125, 10]],
                    [[19, 182, 39], [200, 200, 200], [0, 0, 255], [255, 0, 0]]], np.uint8)
CV2_PNG = [[126, 103, 186, 92], [116, 200, 29, 76]]  # libpng rgb_to_gray (truncating)
CV2_BMP_TIF = [[127, 104, 187, 93], [117, 200, 29, 76]]  # OpenCV BGR2GRAY (rounding)


def test_reads_colour_images_like_opencv(tmp_path):
    assert read_gray(_write(tmp_path, "c.png", COLOURS)).tolist() == CV2_PNG
    rgba = np.concatenate([COLOURS, np.full((2, 4, 1), 77, np.uint8)], axis=2)
    assert read_gray(_write(tmp_path, "ca.png", rgba)).tolist() == CV2_PNG  # alpha dropped
    assert read_gray(_write(tmp_path, "c.bmp", COLOURS)).tolist() == CV2_BMP_TIF
    assert read_gray(_write(tmp_path, "c.tif", COLOURS)).tolist() == CV2_BMP_TIF
    jpeg = read_gray(_write(tmp_path, "c.jpg", np.repeat(np.repeat(COLOURS, 8, 0), 8, 1), quality=95))
    assert jpeg.shape == (16, 32) and jpeg.dtype == np.uint8


def test_reads_16bit_palette_bitmap_and_la(tmp_path):
    v16 = np.array([[0, 255, 256, 65535], [1000, 40000, 32768, 511]], np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert read_gray(tmp_path / "g16.png").tolist() == [[0, 0, 1, 255], [3, 156, 128, 1]]  # cv2: high byte
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert read_gray(tmp_path / "pal.png").tolist() == [[0, 255], [255, 0]]
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"
    assert read_gray(tmp_path / "bits.png").tolist() == [[255, 0]]
    Image.fromarray(np.array([[[10, 200], [30, 0]]], np.uint8), "LA").save(tmp_path / "la.png")
    assert read_gray(tmp_path / "la.png").tolist() == [[10, 30]]
    gray = read_gray(_write(tmp_path, "l.png", np.arange(12, dtype=np.uint8).reshape(3, 4)))
    assert gray.flags.writeable and gray.tolist() == np.arange(12).reshape(3, 4).tolist()


def test_reads_float_images_as_float_maps(tmp_path):
    Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32), "F").save(tmp_path / "f.tif")
    out = read_gray(tmp_path / "f.tif")
    assert out.dtype == np.float64 and out.tolist() == [[0.0, 0.25], [0.5, 1.0]]


def test_not_an_image_raises(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(ImageReadError, match="x.png"):
        read_gray(tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------------------------
def test_format_table():
    table = format_table({"A": {"MAE": 0.123456, "maxF": 0.9}, "B": {"maxF": 0.5, "extra": 2}})
    lines = table.splitlines()
    assert lines[0] == "| name | maxF | MAE | extra |"
    assert lines[2] == "| A | 0.9000 | 0.1235 | - |"
    assert lines[3] == "| B | 0.5000 | - | 2.0000 |"


def test_write_json_is_atomic(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json(target, {"a": np.float64(1.5), "b": torch.tensor([1.0, 2.0]), "p": Path("x")})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [1.0, 2.0], "p": "x"}
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["a"] == 1.5  # the old file survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary left behind


# ---------------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------------
def test_sod300_folder_evaluation_matches_references(shared_data):
    root = shared_data / "sod300"
    ref = json.loads((root / "reference_metrics_matlab.json").read_text())["methods"]["Amulet"]
    result = evaluate_folders(root / "preds" / "Amulet", root / "gt", num_workers=2)
    m = result["metrics"]
    assert result["n_images"] == 300 and result["n_resized"] == 0
    assert m["maxF_pr"] == pytest.approx(ref["aggregate"]["MaxFmeasure"], abs=1e-12)
    assert m["MAE"] == pytest.approx(ref["aggregate"]["MAE"], abs=1e-12)
    assert m["Sm"] == pytest.approx(ref["aggregate"]["S_measure"], abs=1e-12)
    assert m["adpF"] == pytest.approx(ref["aggregate_adaptive_PRF"][2], abs=1e-12)
    assert m["maxF"] == pytest.approx(0.77278851374648, abs=1e-12)  # pysodmetrics 1.6.2 on the same maps
    timing = result["timing"]
    assert timing["workers"] == 2 and timing["wall_s"] > 0 and timing["read_s"] > 0


def test_pysodmetrics_pairs_through_the_folder_evaluator(shared_data):
    root = shared_data / "pysodmetrics_pairs"
    expected = json.loads((root / "asserted_expected_values.json").read_text())["asserted"]
    m = evaluate_folders(root / "preds", root / "masks", num_workers=0)["metrics"]
    assert m["MAE"] == pytest.approx(expected["MAE"], abs=1e-9)
    assert m["Sm"] == pytest.approx(expected["Smeasure"], abs=1e-9)
    assert m["maxF"] == pytest.approx(expected["maxFm"], abs=1e-9)
    assert m["wF"] == pytest.approx(expected["wFmeasure"], abs=1e-6)
