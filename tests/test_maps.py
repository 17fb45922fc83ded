"""salseg.maps: the per-image min-max normalisation the methods share."""

import numpy as np
import torch

from salseg.maps import minmax_normalize, minmax_normalize_array


def test_each_image_or_channel_is_scaled_on_its_own_and_a_constant_one_becomes_zero():
    x = torch.stack([torch.arange(8.0).reshape(2, 2, 2), torch.full((2, 2, 2), 3.0)])  # (B=2, C=2, 2, 2)
    per_image = minmax_normalize(x)
    assert torch.equal(per_image[0].flatten(), torch.arange(8.0) / 7)
    assert torch.equal(per_image[1], torch.zeros(2, 2, 2))
    per_channel = minmax_normalize(x, 2)
    assert torch.allclose(per_channel[0, 1].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def test_min_range_and_floor():
    tiny = torch.tensor([[0.0, 1e-13]])
    assert torch.equal(minmax_normalize(tiny, min_range=1e-12, floor=1e-12), torch.zeros(1, 2))  # MEnet: flat
    assert torch.allclose(minmax_normalize(tiny, floor=1e-12), torch.tensor([[0.0, 0.1]]))  # DCSP: the divisor
    assert torch.equal(minmax_normalize(tiny), torch.tensor([[0.0, 1.0]]))  # GD: the range itself


def test_array_version_is_float64_and_zero_for_a_constant_map():
    out = minmax_normalize_array(np.array([[2, 4], [6, 10]], dtype=np.uint8))
    assert out.dtype == np.float64 and np.array_equal(out, [[0.0, 0.25], [0.5, 1.0]])
    assert np.array_equal(minmax_normalize_array(np.full((2, 3), 7.0)), np.zeros((2, 3)))
