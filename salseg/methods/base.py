"""The contract between a method and the rest of salseg: what the runner and the evaluation callback read.

Every method registered in :mod:`salseg.registry` is a :class:`SalsegMethod`: a LightningModule whose
``test_step`` returns ``{map_name: maps}`` (the first entry is the primary map; README "Outputs and tracking"), and
which overrides the declarations below where its defaults do not describe it. A method declares a map set as a
class attribute or a property (e.g. GD saliency's ``binary_maps`` depends on its config). This module is shared by
the methods: a method imports it, never another method.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import ClassVar

import lightning as L


class SalsegMethod(L.LightningModule):
    """A salient-object-detection or segmentation method: the attributes :mod:`salseg.runner` and
    :class:`salseg.callbacks.evaluation.MapEvaluation` read, with the defaults a plain saliency method has."""

    #: Read by the runner: False skips ``fit`` (nothing to train, e.g. Region Contrast); the run only tests.
    trainable: bool = True
    #: Read by the runner's ``load_for_test``: the hyper-parameters a test of a checkpoint takes from the config
    #: (settings of how the method is tested, e.g. GD saliency's steps); every other one is the checkpoint's own.
    test_time_hparams: ClassVar[Sequence[str]] = ()
    #: Read by the evaluation callback: maps that are binary segmentations, scored with segF and Jaccard as
    #: well as the SOD metrics (e.g. GD saliency's ``<map>_segmentation``).
    binary_maps: Collection[str] = ()
    #: Read by the evaluation callback: outputs that are semantic segmentations (class scores or labels), scored
    #: with mIoU, pixel accuracy and per-class IoU against ``gt_class`` instead of the SOD metrics (e.g. DCSP's).
    semantic_maps: Collection[str] = ()
    #: Read by the evaluation callback when ``semantic_maps`` is not empty: the segmentation classes, background
    #: first (e.g. ``["background", "aeroplane", ...]``); None: the method returns no semantic map.
    class_names: Sequence[str] | None = None
    #: Read by the evaluation callback: scores of the whole run added to every semantic map's results (e.g.
    #: DCSP's training-cue mIoU); None: none.
    run_scores: Mapping[str, float] | None = None

    def test_scores(self, dataloader_idx: int) -> Mapping[str, float]:
        """Read by the evaluation callback: the method's own scores on test set ``dataloader_idx``, added to
        every saliency map's results on it (e.g. GD's classifier errors); none by default."""
        return {}
