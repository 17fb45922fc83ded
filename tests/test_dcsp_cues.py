"""DCSP cues on hand-made maps: the harmonic-mean fusion, the background threshold, the hierarchical saliency passes
(the authors' gen_saliency_voc.py: two runs, hide >= 0.7 with the fixed IMG_MEAN)."""

import pytest
import torch

from salseg.methods.dcsp import fuse_attention, hierarchical_saliency, make_cues


def _maps():
    """One 2x3 image, 3 classes (class 1 absent), saliency and attention by hand."""
    s = torch.tensor([[[[1.0, 0.8, 0.5], [0.2, 0.9, 0.0]]]])
    a = torch.zeros(1, 3, 2, 3)
    a[0, 0] = torch.tensor([[1.0, 0.2, 0.5], [1.0, 0.9, 0.0]])
    a[0, 1] = 1.0                                               # absent class: must never win
    a[0, 2] = torch.tensor([[0.0, 0.9, 0.3], [0.0, 0.6, 1.0]])
    return a, s, torch.tensor([[1.0, 0.0, 1.0]])


def test_cues_are_the_best_harmonic_mean_of_present_classes_above_the_background_threshold():
    a, s, labels = _maps()
    out = make_cues(a, s, labels)
    def h(x, y):
        return 2 * x * y / (x + y) if x + y else 0.0
    # pixel (0,0): class 0 h(1,1)=1 ; (0,1): class 0 h(.2,.8)=.32, class 2 h(.9,.8)=.847 -> 2
    # (0,2): both h(.5,.5)=.5, h(.3,.5)=.375 -> class 0 ; (1,0): class 0 h(1,.2)=.333 < .4 -> background
    # (1,1): class 0 h(.9,.9)=.9 > class 2 h(.6,.9)=.72 -> 0 ; (1,2): saliency 0 -> h = 0 -> background
    assert out.cues.tolist() == [[[1, 3, 1], [0, 1, 0]]]
    assert out.score[0, 0, 1].item() == pytest.approx(h(0.9, 0.8))
    assert out.score[0, 1, 0].item() == pytest.approx(h(1.0, 0.2))
    assert out.cues.dtype == torch.int64 and out.silent == []
    # the threshold decides background: at 0.3, pixel (1,0) (h = 0.333) becomes class 0
    assert make_cues(a, s, labels, background_threshold=0.3).cues[0, 1, 0].item() == 1


def test_cue_bad_input_is_named_or_reported():
    a, s, labels = _maps()
    with pytest.raises(ValueError, match=r"no present class .*\['img_7'\]"):
        make_cues(a, s, torch.zeros(1, 3), names=["img_7"])
    silent = a.clone()
    silent[0, 2] = 0.0                                          # present, but no attention at all
    out = make_cues(silent, s, labels)
    assert out.silent == [(0, 2)] and not (out.cues == 3).any()
    with pytest.raises(ValueError, match="labels must be"):
        make_cues(a, s, torch.ones(1, 4))
    with pytest.raises(ValueError, match="differ"):
        make_cues(a, s[..., :2], labels)


def test_attention_fusion_takes_the_max_over_scales_and_normalises_each_class():
    full = torch.zeros(1, 2, 4, 4)
    full[0, 0, 0, 0] = 2.0
    full[0, 1] = 5.0                                            # constant class map -> 0
    half = torch.zeros(1, 2, 2, 2)
    half[0, 0, 1, 1] = 4.0
    fused = fuse_attention([full, half], (4, 4))
    assert fused.shape == (1, 2, 4, 4) and fused[0, 1].abs().max() == 0
    assert fused[0, 0].max() == 1.0 and fused[0, 0].min() == 0.0
    assert fused[0, 0, 3, 3] == 1.0                             # the half-scale peak, upsampled, wins
    assert 0 < fused[0, 0, 0, 0] < 1                            # the full-scale peak (2) after scaling by 4
    with pytest.raises(ValueError, match="same B and C"):
        fuse_attention([full, torch.zeros(1, 3, 2, 2)], (4, 4))


def test_hierarchical_saliency_finds_what_the_first_pass_hid():
    # a "model" that only sees the brightest region: pixels above 90 % of the image max
    def brightest(x):
        g = x.mean(1, keepdim=True)
        return (g >= 0.9 * g.amax(dim=(2, 3), keepdim=True)).float()

    img = torch.zeros(1, 3, 4, 4)
    img[0, :, 0, 0] = 1.0                                       # the brightest object
    img[0, :, 3, 3] = 0.6                                       # a dimmer one, missed by the first pass
    once = brightest(img)
    assert once[0, 0, 3, 3] == 0
    s = hierarchical_saliency(brightest, img)
    assert s[0, 0, 0, 0] == 1 and s[0, 0, 3, 3] == 1          # the second pass finds it, the max keeps both
    assert torch.equal(hierarchical_saliency(brightest, img, passes=1), once)
    with pytest.raises(ValueError, match=r"must return \(B, 1, H, W\)"):
        hierarchical_saliency(lambda x: x, img)


def test_one_sided_cues_of_the_ablation():
    a, s, labels = _maps()
    # attention alone: the best present-class attention, background below 0.4
    # (0,0): cls0 1.0 ; (0,1): cls2 .9 ; (0,2): cls0 .5 ; (1,0): cls0 1.0 ; (1,1): cls0 .9 ; (1,2): cls2 1.0
    assert make_cues(a, s, labels, source="attention").cues.tolist() == [[[1, 3, 1], [1, 1, 3]]]
    # saliency alone: two present classes cannot be told apart -> salient pixels ignored (255), the rest background
    two = make_cues(a, s, labels, source="saliency").cues
    assert two.tolist() == [[[255, 255, 255], [0, 255, 0]]]
    # with one present class, its salient pixels (S >= 0.4) are that class
    one = make_cues(a, s, torch.tensor([[0.0, 0.0, 1.0]]), source="saliency").cues
    assert one.tolist() == [[[3, 3, 3], [0, 3, 0]]]
    with pytest.raises(ValueError, match="cue source must be one of"):
        make_cues(a, s, labels, source="edges")


def test_adapted_cues_keep_the_background_and_the_present_classes_only():
    from salseg.methods.dcsp.cues import adapted_cues

    scores = torch.zeros(1, 4, 1, 3)                       # background + 3 classes
    scores[0, 2] = torch.tensor([[5.0, 5.0, 5.0]])         # class 1 is the strongest everywhere, but absent
    scores[0, 1] = torch.tensor([[1.0, 0.0, -1.0]])        # class 0 (present)
    scores[0, 0] = torch.tensor([[0.0, 0.5, 0.0]])         # background
    scores[0, 3] = torch.tensor([[0.0, 0.0, 0.5]])         # class 2 (present)
    cues = adapted_cues(scores, torch.tensor([[1.0, 0.0, 1.0]]))
    assert cues.tolist() == [[[1, 0, 3]]] and cues.dtype == torch.int64
    with pytest.raises(ValueError, match="scores must be"):
        adapted_cues(scores, torch.ones(1, 4))


def _scripted_saliency(maps):
    """A toy saliency model: its k-th call returns ``maps[k]`` and records the image it was given."""
    seen = []

    def fn(x):
        seen.append(x.clone())
        return maps[len(seen) - 1].clone()

    return fn, seen


# the authors' IMG_MEAN (R, G, B) on 0..255, on the [0, 1] scale of the suite's images
IMG_MEAN = torch.tensor([122.67891434, 116.66876762, 104.00698793]) / 255


def _toy():
    """A 2 x 3 image that is not grey (its mean colour differs from IMG_MEAN) and three scripted saliency maps:
    run 1 has a pixel at exactly 0.7 (hidden: >=), one at 0.69 (shown) and one at 0.95."""
    img = torch.stack([torch.tensor([[0.1, 0.9, 0.3], [0.6, 0.2, 1.0]])] * 3)[None]   # (1, 3, 2, 3)
    img[0, 1] *= 0.5
    s1 = torch.tensor([[[[0.7, 0.69, 0.0], [0.95, 0.1, 0.0]]]])
    s2 = torch.tensor([[[[0.2, 0.5, 0.85], [0.1, 0.3, 0.6]]]])
    s3 = torch.tensor([[[[0.0, 0.0, 0.0], [0.0, 0.0, 0.99]]]])
    return img, [s1, s2, s3]


def test_hierarchical_saliency_runs_the_authors_two_passes():
    img, maps = _toy()
    fn, seen = _scripted_saliency(maps)
    out = hierarchical_saliency(fn, img)
    assert len(seen) == 2                                         # gen_saliency_voc.py: ``for j in range(2)``
    assert torch.equal(out, torch.maximum(maps[0], maps[1]))     # the pixel-wise max of the two runs


def test_hierarchical_saliency_hides_the_pixels_at_exactly_0_7():
    img, maps = _toy()
    fn, seen = _scripted_saliency(maps)
    hierarchical_saliency(fn, img)
    assert not torch.equal(seen[1][0, :, 0, 0], img[0, :, 0, 0])  # saliency 0.7: hidden (``msk >= th``)
    assert torch.equal(seen[1][0, :, 0, 1], img[0, :, 0, 1])      # 0.69: shown
    assert torch.equal(seen[1][0, :, 1, 1:], img[0, :, 1, 1:])


def test_hierarchical_saliency_hides_with_the_fixed_dataset_mean_colour():
    img, maps = _toy()
    fn, seen = _scripted_saliency(maps)
    hierarchical_saliency(fn, img)
    assert torch.allclose(seen[1][0, :, 1, 0], IMG_MEAN)          # saliency 0.95: IMG_MEAN, not the image's mean
    assert not torch.allclose(img.mean(dim=(2, 3))[0], IMG_MEAN, atol=0.05)


def test_hierarchical_saliency_options_three_passes_and_the_image_mean():
    from salseg.methods.dcsp.cues import AUTHORS_MEAN

    assert torch.allclose(torch.tensor(AUTHORS_MEAN), IMG_MEAN)
    img, (s1, s2, s3) = _toy()
    # three runs: before the third, the running maximum's pixels >= 0.8 are hidden too, the earlier ones stay hidden
    fn, seen = _scripted_saliency([s1, s2, s3])
    out = hierarchical_saliency(fn, img, passes=3)
    assert len(seen) == 3 and torch.equal(out, torch.maximum(torch.maximum(s1, s2), s3))
    third = torch.tensor([[True, False, True], [True, False, False]])     # 0.7, 0.95 (run 1) and 0.85 (run 2)
    for c in range(3):
        assert torch.allclose(seen[2][0, c][third], IMG_MEAN[c].expand(3))
        assert torch.equal(seen[2][0, c][~third], img[0, c][~third])
    # the image's own mean colour
    fn, seen = _scripted_saliency([s1, s2])
    hierarchical_saliency(fn, img, fill="image_mean")
    assert torch.allclose(seen[1][0, :, 1, 0], img.mean(dim=(2, 3))[0])
    with pytest.raises(ValueError, match=r"model.saliency_passes=3 needs .* got \[0.7\]"):
        hierarchical_saliency(fn, img, thresholds=(0.7,), passes=3)
    with pytest.raises(ValueError, match="model.hide_fill must be one of"):
        hierarchical_saliency(fn, img, fill="zeros")


def test_attention_fuses_scales_at_the_first_scales_map_then_upsamples():
    """The authors' get_localization.py: the 0.75 / 0.5 maps resized to the 1.0 map, max, then up to the image."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    full, half = torch.rand(1, 2, 4, 4), torch.rand(1, 2, 2, 2)
    def up(m, size):
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    want = up(torch.maximum(full, up(half, (4, 4))), (8, 8))
    lo, hi = want.amin((2, 3), keepdim=True), want.amax((2, 3), keepdim=True)
    fused = fuse_attention([full, half], (8, 8))
    assert torch.allclose(fused, (want - lo) / (hi - lo), atol=1e-6)
    other = torch.maximum(up(full, (8, 8)), up(half, (8, 8)))         # upsampling each scale first differs
    lo, hi = other.amin((2, 3), keepdim=True), other.amax((2, 3), keepdim=True)
    assert not torch.allclose(fused, (other - lo) / (hi - lo), atol=1e-3)
