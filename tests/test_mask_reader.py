"""One mask reader: a coloured mask reads the same levels in the training / test datasets and in `salseg eval`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from salseg.data.io import Pair, read_mask
from salseg.data.sod import SODFolderDataset
from salseg.data.transforms import build_transform
from salseg.evaluate import evaluate_arrays, evaluate_folders, read_gray, read_gt

# Colours whose libpng luminance (the OpenCV reading the metrics are checked against) and PIL's convert("L")
# differ by one level, so a dataset reading with convert("L") would not match `salseg eval`.
COLOURS = np.array([[[95, 130, 194], [15, 163, 33], [248, 189, 16], [61, 125, 10]],
                    [[19, 182, 39], [200, 200, 200], [0, 0, 255], [255, 0, 0]]], np.uint8)
CV2_PNG = [[126, 103, 186, 92], [116, 200, 29, 76]]  # cv2.imread(..., IMREAD_GRAYSCALE), opencv-python 4.14


def _coloured_masks(folder):
    """An RGB and a palette PNG of COLOURS (tiled 4x), and an image of the same size for each."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.kron(COLOURS, np.ones((4, 4, 1), np.uint8))
    Image.fromarray(rgb).save(folder / "rgb.png")
    palette = Image.fromarray(rgb).quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    palette.save(folder / "pal.png")
    assert Image.open(folder / "pal.png").mode == "P"
    for stem in ("rgb", "pal"):
        Image.fromarray(np.full((8, 16, 3), 90, np.uint8)).save(folder / f"{stem}.jpg")
    return rgb


def test_coloured_masks_read_alike_in_training_and_eval(tmp_path):
    rgb = _coloured_masks(tmp_path)
    assert read_mask(tmp_path / "rgb.png")[::4, ::4].tolist() == CV2_PNG
    pil = np.asarray(Image.open(tmp_path / "rgb.png").convert("L"))
    assert (pil != read_mask(tmp_path / "rgb.png")).any()  # the reading this replaces was one level apart

    pairs = [Pair(s, tmp_path / f"{s}.jpg", tmp_path / f"{s}.png") for s in ("rgb", "pal")]
    dataset = SODFolderDataset(pairs, "coloured", build_transform(8, train=False), with_gt=True)
    for pair, sample in zip(pairs, (dataset[0], dataset[1])):
        train_gt = sample["gt"].numpy()
        assert train_gt.dtype == np.uint8 and train_gt.shape == rgb.shape[:2]
        assert np.array_equal(train_gt, read_gt(pair.mask)), pair.mask.name  # the GT `salseg eval` scores
        assert np.array_equal(train_gt, read_gray(pair.mask)), pair.mask.name  # and the same map as a prediction
        palette_rgb = np.asarray(Image.open(pair.mask).convert("RGB"), np.int32)
        expected = (9797 * palette_rgb[..., 0] + 19234 * palette_rgb[..., 1] + 3737 * palette_rgb[..., 2]) >> 15
        assert np.array_equal(train_gt, expected), pair.mask.name


def test_eval_scores_a_coloured_gt_as_the_dataset_reads_it(tmp_path):
    _coloured_masks(tmp_path / "gt")
    pred = tmp_path / "pred"
    pred.mkdir()
    rng = np.random.default_rng(0)
    maps = {s: rng.integers(0, 256, (8, 16), dtype=np.uint8) for s in ("pal", "rgb")}
    for stem, m in maps.items():
        Image.fromarray(m).save(pred / f"{stem}.png")
    (tmp_path / "gt" / "rgb.jpg").unlink()  # images are not part of a GT folder
    (tmp_path / "gt" / "pal.jpg").unlink()
    folders = evaluate_folders(pred, tmp_path / "gt", num_workers=0)["metrics"]
    arrays = evaluate_arrays([maps["pal"], maps["rgb"]],
                             [read_mask(tmp_path / "gt" / "pal.png"), read_mask(tmp_path / "gt" / "rgb.png")],
                             num_workers=0)["metrics"]
    assert folders == pytest.approx(arrays, abs=1e-12)


def test_mask_conventions_stay_training_only_reading_is_shared(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(tmp_path / "zero_one.png")
    assert read_gt(tmp_path / "zero_one.png").tolist() == [[0, 255], [255, 0]]  # a 0/1 GT is a mask, as in training
    assert read_gray(tmp_path / "zero_one.png").tolist() == [[0, 1], [1, 0]]  # a map is a map
    v16 = np.array([[0, 256], [40000, 65535]], np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert read_mask(tmp_path / "g16.png").tolist() == read_gray(tmp_path / "g16.png").tolist() == [[0, 1], [156, 255]]
