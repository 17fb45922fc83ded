"""The method contract (salseg.methods.base): every registered method declares what the runner and the evaluation
callback read, and a method's own declarations are what the callback scores its maps by."""

from types import SimpleNamespace

import pytest
import torch

from salseg import registry
from salseg.callbacks.evaluation import MapEvaluation
from salseg.methods.base import SalsegMethod


@pytest.mark.parametrize("kind", sorted(registry.MODELS))
def test_every_registered_method_is_a_salseg_method(kind):
    assert issubclass(registry.model_class(kind), SalsegMethod)


def test_the_defaults_are_those_of_a_plain_trainable_saliency_method():
    method = SalsegMethod()
    assert method.trainable is True and tuple(SalsegMethod.test_time_hparams) == ()
    assert not method.binary_maps and not method.semantic_maps
    assert method.class_names is None and method.run_scores is None and method.test_scores(0) == {}


class _Segmenter(SalsegMethod):
    """Declares one semantic map (like DCSP) and one binary map (like GD saliency's segmentations)."""

    semantic_maps = {"segmentation"}
    binary_maps = {"mask"}
    class_names = ["background", "disc"]

    def __init__(self):
        super().__init__()
        self.run_scores = {"cue_mIoU": 0.25}


def _trainer():
    return SimpleNamespace(datamodule=SimpleNamespace(test_names=["set"]), test_dataloaders=[None], world_size=1,
                           strategy=SimpleNamespace(reduce=lambda t, reduce_op: t), is_global_zero=False,
                           loggers=[])  # no logger: nothing goes to W&B


def _batch():
    gt_class = torch.zeros(2, 8, 8, dtype=torch.int64)
    gt_class[:, 2:6, 2:6] = 1
    return {"image": torch.rand(2, 3, 8, 8), "name": ["a", "b"], "gt": [(g > 0).float() for g in gt_class],
            "gt_class": list(gt_class)}


def test_the_callback_scores_each_map_by_what_the_method_declares(tmp_path):
    method, trainer, batch = _Segmenter(), _trainer(), _batch()
    cb = MapEvaluation(tmp_path)
    cb.on_test_epoch_start(trainer, method)
    outputs = {"segmentation": batch["gt_class"][0][None].expand(2, 8, 8).clone(),  # labels, perfect
               "mask": torch.stack(batch["gt"])[:, None], "saliency": torch.rand(2, 1, 8, 8)}
    cb.on_test_batch_end(trainer, method, outputs, batch, 0)
    cb.on_test_epoch_end(trainer, method)
    semantic, binary, saliency = (cb.results[m]["set"] for m in ("segmentation", "mask", "saliency"))
    assert list(cb.results) == ["segmentation", "mask", "saliency"] and cb.primary_map == "segmentation"
    assert semantic["mIoU"] == pytest.approx(1.0) and semantic["cue_mIoU"] == 0.25 and "MAE" not in semantic
    assert binary["Jaccard"] == pytest.approx(1.0) and "MAE" in binary and "cue_mIoU" not in binary
    assert "MAE" in saliency and "Jaccard" not in saliency and "mIoU" not in saliency
    assert set(cb.curves) == {"mask", "saliency"}  # semantic maps have no PR curve


def test_semantic_maps_without_class_names_are_refused(tmp_path):
    method = _Segmenter()
    method.class_names = None
    with pytest.raises(AttributeError, match="no class_names"):
        MapEvaluation(tmp_path).on_test_epoch_start(_trainer(), method)
