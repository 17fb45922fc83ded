"""salseg.data: datasets, transforms, distortions and the ``SaliencyDataModule``.

Sample contract (every dataset returns a dict):

* ``image``: float32 (3, S, S) in [0, 1], NOT ImageNet-normalised (models normalise themselves);
* ``mask``: float32 (1, S, S) in {0, 1}, the saliency target at input size;
* ``name``: str (file stem, or ``shapes_<index>``); ``dataset``: str (the registry name, e.g. ``ecssd``);
* eval splits (val / test) only: ``gt``: uint8 (H, W), the ORIGINAL-resolution ground truth with its raw values
  0..255 (metrics binarise with ``> 128``);
* ``shapes``, ``voc`` and ``coco`` also: ``label`` int64 (class of the largest object), ``labels`` float32 (K,)
  multi-hot, ``class_mask`` int64 (S, S) with 0 = background and c + 1 for class c (``voc`` / ``coco``: 255 =
  ignore, and ``has_mask``, ``original`` when ``masked``: see ``salseg.data.labelled``); their eval splits add
  ``gt_class`` uint8 (H, W), the class mask at original resolution (mIoU).

``collate_samples`` stacks tensors of equal shape; ``gt`` is always a list (one tensor per image, sizes differ),
any other tensor key with differing shapes becomes a list, strings become lists.

Names are imported lazily, so ``import salseg.data`` stays cheap (Lightning is only loaded with the data module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # io
    "read_image": "io", "read_mask": "io", "list_pairs": "io", "read_list_file": "io", "Pair": "io",
    "DataError": "io", "CorruptFileError": "io", "SizeMismatchError": "io", "UnpairedFileError": "io",
    "MissingDataError": "io",
    # datasets
    "ShapesDataset": "shapes", "render_shapes": "shapes", "SHAPE_NAMES": "shapes",
    "SODFolderDataset": "sod", "seeded_split": "sod", "LAYOUTS": "sod",
    "VOCDataset": "voc", "VOC_CLASSES": "voc", "build_voc": "voc", "read_index_mask": "voc",
    "parse_annotation": "voc", "largest_object_label": "voc",
    "COCODataset": "coco", "build_coco": "coco", "ann_to_mask": "coco",
    "LabelledSegDataset": "labelled", "IGNORE": "labelled",
    # transforms, distortions, masking, collate
    "JointTransform": "transforms", "build_transform": "transforms",
    "awgn": "distortions", "jpeg": "distortions", "Distortion": "distortions", "build_distortion": "distortions",
    "mask_objects": "masking", "dataset_mean_colour": "masking",
    "collate_samples": "collate",
    # data module and registry
    "SaliencyDataModule": "datamodule", "DATASETS": "registry", "BuildContext": "registry",
    "builder_keys": "registry", "build_shapes": "shapes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
