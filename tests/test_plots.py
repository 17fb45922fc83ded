"""Plots people look at: the saliency grid shows every map of a run side by side, one column per map."""

import numpy as np
from PIL import Image

from salseg import plots
from salseg.callbacks.evaluation import MapEvaluation


def test_grid_has_a_column_per_map(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16, 3)) for _ in range(2)]
    gts = [np.zeros((16, 16)) for _ in range(2)]
    one = plots.saliency_grid(images, gts, [rng.random((16, 16))] * 2, tmp_path / "one.png")
    three = plots.saliency_grid(images, gts, {"CNN2+3": [rng.random((16, 16))] * 2, "CNN1": [gts[0]] * 2,
                                              "gradient": [gts[0]] * 2}, tmp_path / "three.png")
    w1, h1 = Image.open(one).size
    w3, h3 = Image.open(three).size
    assert h1 == h3 and w3 == round(w1 * 5 / 3)  # input, GT and 1 vs 3 maps, 2 inches each


def test_evaluation_collects_every_map_for_the_same_images(tmp_path):
    import torch

    cb = MapEvaluation(tmp_path, grid_size=3)
    batch = {"image": torch.rand(2, 3, 8, 8), "name": ["a", "b"]}
    gts = [torch.zeros(8, 8), torch.ones(8, 8)]
    for step in range(2):  # two batches of 2: the grid keeps the first 3 images, for both maps
        cb._collect_grid("set", batch, "first", [torch.full((8, 8), 0.1 * step)] * 2, gts, first=True)
        cb._collect_grid("set", batch, "second", [torch.full((8, 8), 0.5)] * 2, gts, first=False)
    g = cb.grid["set"]
    assert len(g["images"]) == 3 and list(g["preds"]) == ["first", "second"]
    assert [len(v) for v in g["preds"].values()] == [3, 3] and g["names"] == ["a", "b", "a"]
