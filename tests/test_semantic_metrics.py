"""Semantic segmentation scores (DCSP's mIoU): values against a hand count, ignore pixels, classes never seen,
the state merge of several processes, and the evaluation callback's resizing of scores and labels."""

import math

import pytest
import torch

from salseg.callbacks.scorers import labels_at_gt_resolution
from salseg.metrics.segmentation import SemanticSegmentationScores

NAMES = ["background", "cat", "dog", "cow"]


def test_miou_and_per_class_iou_equal_a_hand_count_with_ignore_and_an_unseen_class():
    gt = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1]])        # the last pixel is ignored whatever it says
    m = SemanticSegmentationScores(NAMES)
    m.update([pred], [gt])
    out = m.compute()
    # background: tp 2 (0,0),(1,0); gt 3, pred 3 -> 2 / 4 ; cat: tp 2, gt 2, pred 3 -> 2 / 3 ; dog: tp 1, gt 2,
    # pred 1 -> 1 / 2 ; cow: nowhere -> no IoU, left out of the mean
    assert out["IoU_background"].item() == pytest.approx(0.5)
    assert out["IoU_cat"].item() == pytest.approx(2 / 3)
    assert out["IoU_dog"].item() == pytest.approx(0.5)
    assert math.isnan(out["IoU_cow"].item())
    assert out["mIoU"].item() == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert out["pixAcc"].item() == pytest.approx(5 / 7)


def test_images_of_different_sizes_and_the_merge_of_two_processes_equal_one_pass():
    torch.manual_seed(0)
    preds = [torch.randint(0, 4, (5, 7)), torch.randint(0, 4, (3, 4)), torch.randint(0, 4, (6, 2))]
    gts = [torch.randint(0, 4, p.shape) for p in preds]
    gts[1][0, 0] = 255
    one = SemanticSegmentationScores(NAMES)
    one.update(preds, gts)
    a, b = SemanticSegmentationScores(NAMES), SemanticSegmentationScores(NAMES)
    a.update(preds[:1], gts[:1])
    b.update(preds[1:], gts[1:])
    a.merge_state(b)                                        # what the DDP reduction (a sum) computes
    for k, v in one.compute().items():
        assert torch.allclose(v, a.compute()[k], equal_nan=True), k


def test_bad_input_names_the_image_and_the_labels():
    m = SemanticSegmentationScores(NAMES)
    with pytest.raises(ValueError, match=r"image 0: labels outside 0..3 .*\[7\]"):
        m.update([torch.tensor([[7, 0]])], [torch.tensor([[0, 0]])])
    with pytest.raises(ValueError, match="image 0: prediction"):
        m.update([torch.zeros(2, 2, dtype=torch.long)], [torch.zeros(2, 3, dtype=torch.long)])
    with pytest.raises(RuntimeError, match="no labelled pixel"):
        SemanticSegmentationScores(NAMES).compute()


def test_scores_are_upsampled_before_the_argmax_and_labels_by_nearest_neighbour():
    scores = torch.zeros(1, 2, 2, 2)
    scores[0, 0, :, 0] = 1.0                                 # left column is class 0, right column class 1
    scores[0, 1, :, 1] = 1.0
    gt = [torch.zeros(4, 6, dtype=torch.uint8)]
    out = labels_at_gt_resolution(scores, gt)[0]
    assert out.shape == (4, 6) and out.dtype == torch.int64
    assert out[:, :3].eq(0).all() and out[:, 3:].eq(1).all()
    labels = torch.tensor([[[0, 2], [1, 3]]])
    out = labels_at_gt_resolution(labels, [torch.zeros(4, 4)])[0]
    assert out.tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [1, 1, 3, 3], [1, 1, 3, 3]]


def test_real_voc_image_cues_from_its_own_masks_score_against_its_original_ground_truth(shared_data):
    # the real VOC 2012 image 2007_000032 (aeroplanes + persons, void borders): attention and saliency made from
    # its 160 px class mask give cues equal to that mask (void aside); at the original 281 x 500 resolution the
    # scoring ignores void and finds the three classes it contains
    from salseg.data import DATASETS, VOC_CLASSES, BuildContext
    from salseg.methods.dcsp.cues import make_cues

    ctx = BuildContext(dataset="voc", root=shared_data, role="val", image_size=160)
    s = DATASETS["voc"](ctx, split="all", folder="voc2012_sample")[0]
    cm = s["class_mask"]
    attention = torch.stack([(cm == c + 1).float() for c in range(20)])[None]
    saliency = ((cm > 0) & (cm != 255)).float()[None, None]
    cues = make_cues(attention, saliency, s["labels"][None]).cues[0]
    known = cm != 255
    assert torch.equal(cues[known], cm[known])
    m = SemanticSegmentationScores(["background", *VOC_CLASSES])
    m.update(labels_at_gt_resolution(cues[None], [s["gt_class"]]), [s["gt_class"]])
    out = m.compute()
    # measured: mIoU 0.860, aeroplane 0.839, person 0.748 (the 160 px square loses detail of the small persons)
    assert out["mIoU"].item() > 0.8 and out["IoU_aeroplane"].item() > 0.8 and out["IoU_person"].item() > 0.7
    assert out["pixAcc"].item() > 0.98
    assert math.isnan(out["IoU_dog"].item())                   # neither in the image nor predicted
