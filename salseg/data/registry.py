"""The dataset registry: the names a config's ``dataset:`` key can take, each mapped to its builder.

A builder is ``builder(ctx: BuildContext, **spec_keys) -> torch Dataset`` whose samples follow the contract in
``salseg.data``; it lives beside its dataset (``shapes.py``, ``sod.py``, ``voc.py``, ``coco.py``). Its keyword
parameters are the spec keys the dataset accepts: :func:`check_keys` reads them from its signature, so a config
with an unknown or missing key is refused before any file is touched.

The registry is one declarative table rather than a ``@register`` decorator: every builder's module is imported
here anyway (none needs an optional dependency at import time: COCO imports ``pycocotools`` on first decode), so
a decorator would only move the list of names into side effects of imports, and this table is the one place that
lists them. Adding a dataset = writing its builder beside it and adding one line to :data:`DATASETS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from .coco import build_coco
from .distortions import Distortion, build_distortion
from .overlap import IdentityIndex, identities
from .shapes import build_shapes
from .sod import SOD_BUILDERS
from .transforms import JointTransform, build_transform
from .voc import build_voc

DATASETS: dict[str, Callable[..., Dataset]] = {
    "shapes": build_shapes, **SOD_BUILDERS, "voc": build_voc, "coco": build_coco}

# Spec keys the data module reads for every dataset (see ``SaliencyDataModule``); never passed to a builder.
RESERVED_KEYS = ("dataset", "root", "distortion", "exclude")


@dataclass
class BuildContext:
    """What a dataset builder gets besides its own spec keys."""

    dataset: str  # the registry name
    root: Path  # data root (the module's, or the spec's ``root``)
    role: str  # train / val / test: train = augmentation, no gt; val/test = resize only + gt; test = distortion
    image_size: int | None  # network input side S; None = native size
    augment: dict | None = None
    distortion_spec: dict | None = None
    seed: int = 0
    split: str = "?"
    extra: dict = field(default_factory=dict)
    exclude: IdentityIndex | None = None  # images to leave out before the split (``exclude:``)
    excluded: list = field(default_factory=list)  # (image, the test image it matched) pairs that were left out

    def drop_excluded(self, pairs: list) -> list:
        """``pairs`` (with ``.stem`` and ``.image``) minus those whose image is in ``exclude`` (stem or pixels)."""
        if self.exclude is None:
            return pairs
        ids = identities(self.dataset, [(p.stem, p.image) for p in pairs], progress=f"hashing {self.dataset}")
        keep = []
        for p, ident in zip(pairs, ids):
            hit = self.exclude.find(ident)
            if hit is None:
                keep.append(p)
            else:
                self.excluded.append((str(p.image), hit.path or hit.stem))
        return keep

    @property
    def train(self) -> bool:
        return self.role == "train"

    @property
    def with_gt(self) -> bool:
        return self.role != "train"

    def transform(self) -> JointTransform:
        return build_transform(self.image_size, self.train, self.augment)

    def distortion(self) -> Distortion | None:
        return build_distortion(self.distortion_spec, self.seed) if self.role == "test" else None


def lookup(dataset: str | None, where: str) -> Callable[..., Dataset]:
    """The builder registered as ``dataset``; a ``SpecError`` naming the known datasets when there is none.
    ``where`` is the spec's place in the config (``test.ecssd``, ``val[0]``), quoted as ``data.<where>``."""
    from .datamodule import SpecError  # the data module's error; imported here to keep the import graph one-way

    if dataset is None:
        raise SpecError(f"data.{where}: the spec has no 'dataset' key; known datasets: {sorted(DATASETS)}")
    if dataset not in DATASETS:
        raise SpecError(f"data.{where}: unknown dataset {dataset!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[dataset]


def check_keys(dataset: str, keys: Iterable[str], where: str) -> None:
    """A ``SpecError`` when the builder of ``dataset`` does not accept one of ``keys`` (the spec minus
    :data:`RESERVED_KEYS`) or needs one that is not there."""
    from .datamodule import SpecError

    accepted, required = _builder_params(DATASETS[dataset])
    keys = set(keys)
    unknown = sorted(keys - set(accepted))
    if unknown:
        raise SpecError(f"data.{where} ({dataset}): unknown key(s) {unknown}; the {dataset} builder accepts "
                        f"{list(RESERVED_KEYS) + accepted}")
    missing = [k for k in required if k not in keys]
    if missing:
        raise SpecError(f"data.{where} ({dataset}): missing required key(s) {missing}")


def builder_keys(name: str) -> list[str]:
    """The spec keys dataset ``name`` accepts (reserved keys first, then its builder's keywords)."""
    return list(RESERVED_KEYS) + _builder_params(DATASETS[name])[0]


def _builder_params(fn: Callable) -> tuple[list[str], list[str]]:
    """(accepted keyword names, required keyword names) of a builder, excluding its first (ctx) parameter."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.default is inspect.Parameter.empty]
    return accepted, required
