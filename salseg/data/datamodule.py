"""``SaliencyDataModule``: datasets from config specs, and their loaders and samplers.

A dataset spec is a dict ``{dataset: <name>, split: ..., <builder keys>...}``. Keys handled here for every
dataset: ``dataset`` (a name in :data:`salseg.data.registry.DATASETS`), ``root`` (overrides the module's root for
this dataset), for test specs only ``distortion`` (overrides the module-level test distortion for this set, e.g.
one test entry per noise level), and for train / val specs only ``exclude`` (a list of this run's test-set names,
or dataset specs, whose images leave the pool BEFORE its split: MSRA1K out of MSRA10K for MEnet; see
``overlap.py``). Every other key is a keyword of the dataset's builder; an unknown key is an error that names it
and the keys the builder accepts (``registry.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from ..errors import SalsegError
from ..tracking import env_global_rank
from .collate import collate_samples
from .distortions import build_distortion
from .overlap import IdentityIndex, TestOverlapError, dataset_identities, find_overlap
from .registry import BuildContext, check_keys, lookup
from .shapes import SHAPE_NAMES
from .sod import SOD_BUILDERS
from .transforms import build_transform


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r gets indices r, r + N, r + 2N, ...: every sample exactly once over the N processes.

    Lightning's ``UnrepeatedDistributedSampler`` does the same but refuses a set smaller than the number of
    processes (a 1-image test set on 2 GPUs); here a process may simply get no sample.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total_size = len(self.dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self):
        return iter(range(self.rank, self.total_size, self.num_replicas))


class EpochSeededRandomSampler(RandomSampler):
    """Shuffles with seed + epoch. Lightning calls ``set_epoch`` before each epoch, so a run resumed at epoch e
    sees the same order as an uninterrupted run would (a generator seeded once would replay epoch 0's order)."""

    def __init__(self, data_source, seed: int = 0) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class SpecError(SalsegError, ValueError):
    """A dataset spec in the config is wrong (unknown dataset or key, wrong type); the message names it."""


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain dicts / lists (other objects unchanged)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


@dataclass
class _Spec:
    name: str  # display name
    role: str
    dataset: str
    kwargs: dict
    root: Path
    distortion: dict | None
    exclude: list = field(default_factory=list)  # test-set names / specs whose images leave this pool


class SaliencyDataModule(LightningDataModule):
    """Datasets, transforms and loaders for training and evaluating saliency / segmentation models.

    Args:
        root: data root (``${SALSEG_DATA}``), holding one folder per dataset in its standard layout.
        train: a dataset spec for training, or None.
        val: None, one spec, a list of specs, or a {display name: spec} mapping.
        test: {display name: spec} (also accepted: one spec, a list of specs). A name mapped to null is dropped,
            so ``data.test.<name>=null`` removes a test set an experiment names.
        image_size: network input side S (images and masks are resized to S x S), or null to keep every image
            at its native size (batches then carry lists of images; see ``salseg.data.collate``).
        batch_size: training batch size. eval_batch_size: val/test batch size (default: batch_size).
        num_workers: DataLoader workers per loader.
        augment: training augmentation, e.g. ``{crop_scale: [0.9, 1.0], hflip: true}`` (train only).
        distortion: test-time distortion of the input image, e.g. ``{kind: awgn, variance: [0.0, 0.05]}`` or
            ``{kind: jpeg, quality: 30}`` (test loaders only, never val; a test spec's own ``distortion`` wins).
        seed: run seed: training shuffle order and the per-image draws of random distortion strengths.
        allow_overlap: train even when :meth:`check_overlap` finds training or validation images in a test set
            (default False: the run is refused, naming the count and the first files). The override and what
            was found are recorded in the run's metrics.json (``protocol``).

    Attributes ``val_names`` / ``test_names`` list the display names in loader order; ``test_dataloader()``
    always returns a list of loaders, ``val_dataloader()`` a list (possibly empty).
    """

    def __init__(
        self,
        root: str,
        train: dict | None = None,
        val: dict | list | None = None,
        test: dict | list | None = None,
        image_size: int | None = 224,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: dict | None = None,
        distortion: dict | None = None,
        seed: int = 0,
        allow_overlap: bool = False,
    ):
        super().__init__()
        train, val, test = _plain(train), _plain(val), _plain(test)
        augment, distortion = _plain(augment), _plain(distortion)
        self.root = Path(str(root)).expanduser()
        self.image_size = None if image_size is None else int(image_size)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        if (self.image_size is not None and self.image_size < 1) or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("image_size (or null for native size), batch_size and eval_batch_size must be positive")
        self.num_workers = int(num_workers)
        self.augment = dict(augment) if augment else None
        self.distortion = dict(distortion) if distortion else None
        self.seed = int(seed)
        self.allow_overlap = bool(allow_overlap)
        self.protocol: dict[str, Any] = {}  # what check_overlap / exclude found, for metrics.json
        self._excluded: dict[str, dict] = {}
        # validate the global options now, before any file is touched
        build_transform(self.image_size, True, self.augment)
        build_distortion(self.distortion, self.seed)

        self._train_spec = self._parse(train, "train", "train")[0] if train is not None else None
        self._val_specs = self._parse_many(val, "val")
        self._test_specs = self._parse_many(test, "test")
        self.val_names = [s.name for s in self._val_specs]
        self.test_names = [s.name for s in self._test_specs]

        self.train_dataset: Dataset | None = None
        self.val_datasets: list[Dataset] | None = None
        self.test_datasets: list[Dataset] | None = None

    # ------------------------------------------------------------------------------------------ specs
    def _parse_many(self, specs: Any, role: str) -> list[_Spec]:
        if specs is None:
            return []
        if isinstance(specs, Mapping):
            if "dataset" in specs:  # a single spec
                return self._parse(specs, role, None)
            out = []
            for name, spec in specs.items():
                if spec is None:  # `data.test.<name>=null` drops a test set an experiment or group file names
                    continue
                out += self._parse(spec, role, str(name))
            return self._dedupe(out)
        if isinstance(specs, (list, tuple)):
            out = []
            for i, spec in enumerate(specs):
                out += self._parse(spec, role, None, where=f"{role}[{i}]")
            return self._dedupe(out)
        raise TypeError(f"data.{role} must be a dataset spec, a list of specs or a {{name: spec}} mapping, "
                        f"got {type(specs).__name__}")

    @staticmethod
    def _dedupe(specs: list[_Spec]) -> list[_Spec]:
        seen: dict[str, int] = {}
        for s in specs:
            if s.name in seen:
                seen[s.name] += 1
                s.name = f"{s.name}_{seen[s.name]}"
            else:
                seen[s.name] = 0
        return specs

    def _parse(self, spec: Any, role: str, name: str | None, where: str | None = None) -> list[_Spec]:
        where = where or (f"{role}.{name}" if name else role)
        spec = _plain(spec)
        if not isinstance(spec, Mapping):
            raise SpecError(f"data.{where}: a dataset spec must be a mapping like "
                            f"{{dataset: ecssd, split: all}}, got {spec!r}")
        spec = dict(spec)
        ds = spec.pop("dataset", None)
        lookup(ds, where)
        root = Path(str(spec.pop("root"))).expanduser() if "root" in spec else self.root
        exclude = spec.pop("exclude", None) or []
        if exclude and role == "test":
            raise SpecError(f"data.{where}: 'exclude' applies to train / val sets only")
        if not isinstance(exclude, (list, tuple)):
            exclude = [exclude]
        has_dist = "distortion" in spec
        dist = spec.pop("distortion", None)
        if has_dist and dist is None:
            dist = {"kind": "none"}  # an explicit null switches the module-level distortion off for this set
        if has_dist and role != "test":
            raise SpecError(f"data.{where}: 'distortion' applies to test sets only")
        if dist is not None:
            build_distortion(dist, self.seed)  # validate now
        check_keys(ds, spec, where)
        if name is None:
            name = ds
        return [_Spec(name=name, role=role, dataset=ds, kwargs=spec, root=root,
                      distortion=dist if dist is not None else (self.distortion if role == "test" else None),
                      exclude=list(exclude))]

    def _exclusion_index(self, spec: _Spec) -> IdentityIndex | None:
        """The identities of the sets ``spec`` excludes: names of this run's test sets, or dataset specs."""
        if not spec.exclude:
            return None
        items = []
        for j, ref in enumerate(spec.exclude):
            if isinstance(ref, str):
                match = [t for t in self._test_specs if t.name == ref]
                if not match:
                    raise SpecError(f"data.{spec.role} ({spec.dataset}): exclude names {ref!r}, which is not a test "
                                    f"set of this run; test sets: {self.test_names} (or give a dataset spec)")
                ref_spec = match[0]
            else:
                ref_spec = self._parse(ref, "test", None, where=f"{spec.role}.exclude[{j}]")[0]
            ids = dataset_identities(self._build(ref_spec), ref_spec.dataset, progress=f"hashing {ref_spec.name}")
            if ids is None:
                raise SpecError(f"data.{spec.role}: exclude {ref_spec.name!r}: dataset {ref_spec.dataset} cannot "
                                "list its images for the overlap check")
            items += ids
        return IdentityIndex(items)

    def _build(self, spec: _Spec) -> Dataset:
        if spec.exclude and spec.dataset not in SOD_BUILDERS:
            raise SpecError(f"data.{spec.role} ({spec.dataset}): 'exclude' is supported for the SOD folder datasets "
                            f"(before their seeded splits: {sorted(SOD_BUILDERS)}); use a list_file instead")
        ctx = BuildContext(
            dataset=spec.dataset,
            root=spec.root,
            role=spec.role,
            image_size=self.image_size,
            augment=self.augment if spec.role == "train" else None,
            distortion_spec=spec.distortion,
            seed=self.seed,
            split=str(spec.kwargs.get("split", "default")),
            exclude=self._exclusion_index(spec),
        )
        ds = lookup(spec.dataset, spec.role)(ctx, **spec.kwargs)
        if spec.exclude:
            self._excluded[f"{spec.role} {spec.dataset if spec.name == spec.role else spec.name}"] = {
                "count": len(ctx.excluded), "from": [str(r) for r in spec.exclude],
                "first": [a for a, _ in ctx.excluded[:5]], "remaining": len(ds)}
            if env_global_rank() == 0:
                print(f"[salseg] data.{spec.role} {spec.name}: excluded {len(ctx.excluded)} image(s) found in "
                      f"{', '.join(str(r) for r in spec.exclude)} before the split; {len(ds)} remain")
        if len(ds) == 0:
            raise ValueError(f"data.{spec.role} {spec.name!r} ({spec.dataset}) is empty")
        return ds

    # ------------------------------------------------------------------------------------------ protocol
    def check_overlap(self) -> dict[str, Any]:
        """Compare every training / validation image with every test image of this run (same dataset and stem,
        or the same pixels: see ``overlap.py``). Overlap is a :class:`TestOverlapError` naming the count and the
        first files, unless ``allow_overlap``; the findings are kept in ``self.protocol`` for metrics.json."""
        self.setup("fit")
        self.setup("test")
        def label(s: _Spec) -> str:
            return f"{s.role} {s.dataset if s.name == s.role else s.name}"

        pools = [(label(self._train_spec), self._train_spec, self.train_dataset)] if self._train_spec else []
        pools += [(label(s), s, d) for s, d in zip(self._val_specs, self.val_datasets or [])]
        tests = []
        for s, d in zip(self._test_specs, self.test_datasets or []):
            ids = dataset_identities(d, s.dataset, progress=f"hashing {s.name}")
            tests.append((s.name, IdentityIndex(ids) if ids is not None else None))
        found, unchecked = [], [f"test {n}" for n, idx in tests if idx is None]
        for label, spec, ds in pools:
            ids = dataset_identities(ds, spec.dataset, progress=f"hashing {spec.name}")
            if ids is None:
                unchecked.append(label)
                continue
            for tname, index in tests:
                if index is not None:
                    ov = find_overlap(label, ids, tname, index)
                    if ov.pairs:
                        found.append(ov)
        self.protocol = {
            "overlap": [{"pool": o.a, "test": o.b, "count": len(o.pairs),
                         "first": [[x.path or x.stem, y.path or y.stem] for x, y in o.pairs[:5]]} for o in found],
            "allow_overlap": self.allow_overlap,
            "unchecked": unchecked,
            "excluded": dict(self._excluded),
        }
        if found:
            msg = "; ".join(o.describe() for o in found)
            if not self.allow_overlap:
                raise TestOverlapError(f"test images would reach training: {msg}. Give the training split an "
                                       "'exclude:' of those test sets (or a list_file), or pass "
                                       "data.allow_overlap=true to train anyway (recorded in metrics.json)")
            if env_global_rank() == 0:
                print(f"[salseg] WARNING data.allow_overlap=true: {msg}")
        return self.protocol

    # ------------------------------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self._train_spec is not None and self.train_dataset is None:
            self.train_dataset = self._build(self._train_spec)
        if stage in (None, "fit", "validate") and self.val_datasets is None:
            self.val_datasets = [self._build(s) for s in self._val_specs]
        if stage in (None, "test", "predict") and self.test_datasets is None:
            self.test_datasets = [self._build(s) for s in self._test_specs]

    def _loader_kwargs(self, persistent: bool) -> dict[str, Any]:
        return dict(
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=persistent and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self._train_spec is None:
            raise RuntimeError("SaliencyDataModule: no train dataset configured (data.train is null)")
        if self.train_dataset is None:
            self.setup("fit")
        ds = self.train_dataset
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSeededRandomSampler(ds, seed=self.seed),
            drop_last=len(ds) > self.batch_size,  # no size-1 tail batch (batch norm)
            **self._loader_kwargs(persistent=True),
        )

    def _eval_loader(self, ds: Dataset, persistent: bool) -> DataLoader:
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = UnpaddedDistributedSampler(
                ds,
                num_replicas=torch.distributed.get_world_size(),
                rank=torch.distributed.get_rank(),
                shuffle=False,
            )
        return DataLoader(
            ds, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler,
            **self._loader_kwargs(persistent=persistent),
        )

    def val_dataloader(self) -> list[DataLoader]:
        if self.val_datasets is None:
            self.setup("validate")
        return [self._eval_loader(ds, persistent=True) for ds in self.val_datasets]

    def test_dataloader(self) -> list[DataLoader]:
        if self.test_datasets is None:
            self.setup("test")
        return [self._eval_loader(ds, persistent=False) for ds in self.test_datasets]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()

    # ------------------------------------------------------------------------------------------ info
    @property
    def train_spec(self) -> _Spec | None:
        """The parsed training spec (``dataset``, ``kwargs``, ``root``, ...), or None without ``data.train``."""
        return self._train_spec

    @property
    def num_classes(self) -> int | None:
        """K of a ``shapes`` training set (None for class-free datasets)."""
        spec = self._train_spec or (self._test_specs[0] if self._test_specs else None)
        if spec is None or spec.dataset != "shapes":
            return None
        return int(spec.kwargs.get("num_classes", 4))

    @property
    def class_names(self) -> list[str] | None:
        k = self.num_classes
        return list(SHAPE_NAMES[:k]) if k else None
