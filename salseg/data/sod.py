"""Salient-object folder datasets in their standard layouts, paired by file stem.

Layouts under ``root`` (the folder name, first component, can be changed with the spec key ``folder``):

==========  =====================================================================  =========================
dataset     layout                                                                 splits
==========  =====================================================================  =========================
msra10k     MSRA10K/MSRA10K_Imgs_GT/Imgs/<id>.jpg + <id>.png (same folder)          seeded 8500/500/rest
msra1k      MSRA1K/images/*.jpg + MSRA1K/masks/*.png  (or MSRA1K/Imgs + MSRA1K/GT)  whole set (test / all)
hkuis       HKU-IS/imgs/*.png + HKU-IS/gt/*.png; HKU-IS/{train,val,test}.txt        lists if present, else
                                                                                   seeded 80/5/15 %
dutomron    DUT-OMRON/DUT-OMRON-image/*.jpg + DUT-OMRON/pixelwiseGT-new-PNG/*.png   whole set (test / all)
ecssd       ECSSD/images/*.jpg + ECSSD/ground_truth_mask/*.png                      whole set (test / all)
sod         SOD/images/*.jpg + SOD/gt/*.png                                         whole set (test / all)
duts        DUTS/DUTS-TR/{DUTS-TR-Image,DUTS-TR-Mask} (train),                     train / test (val: a
            DUTS/DUTS-TE/{DUTS-TE-Image,DUTS-TE-Mask} (test)                       seeded part of train)
folder      any <images> + <masks> folders (spec keys images, masks)               whole set
==========  =====================================================================  =========================

Common spec keys: ``split``, ``folder``, ``list_file`` (stems of the split, one per line; relative to the dataset
folder or absolute), ``skip_unpaired`` (skip images without mask and masks without image, with a warning, instead
of failing), ``split_seed`` (the seeded split's permutation; independent of the run seed so the test part never
moves), ``verify`` (check every image/mask size from the headers up front; otherwise checked when a sample is
loaded). Seeded splits take ``train_size`` / ``val_size`` as counts (int) or fractions (float < 1); when a set is
smaller than ``train_size + val_size`` the counts become the same fractions of the set, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import (
    IMAGE_EXTS,
    MASK_EXTS,
    DataError,
    MissingDataError,
    Pair,
    check_pair_sizes,
    list_pairs,
    read_image,
    read_list_file,
    read_mask,
)
from .transforms import JointTransform


class SODFolderDataset(Dataset):
    """Image/mask pairs -> samples ``{image, mask, name, dataset[, gt]}`` (see ``salseg.data`` for the contract).

    Args:
        pairs: the (stem, image path, mask path) list.
        name: the ``dataset`` string of the samples.
        transform: a :class:`JointTransform` (input size S).
        with_gt: add ``gt``: the original-resolution mask, uint8 raw values (eval splits).
        distortion: an optional test-time distortion of the decoded image at native size, before the transform
            (never of the masks).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        name: str,
        transform: JointTransform,
        with_gt: bool = False,
        distortion=None,
    ):
        self.pairs = list(pairs)
        self.name = name
        self.transform = transform
        self.with_gt = bool(with_gt)
        self.distortion = distortion

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"SODFolderDataset({self.name!r}, {len(self)} pairs, {self.transform})"

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.pairs]

    def identity_sources(self) -> list[tuple[str, Path]]:
        """(stem, image file) of every pair: what the train / test overlap check compares (``overlap.py``)."""
        return [(p.stem, p.image) for p in self.pairs]

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image = read_image(pair.image)
        gt = read_mask(pair.mask)
        check_pair_sizes(pair, image.shape[:2], gt.shape)
        if self.distortion is not None:  # the dataset image itself, before any resize (distortions.py)
            image = self.distortion.native(image, index)
        out = self.transform(image, (gt > 128).astype(np.uint8))
        sample: dict[str, Any] = {"image": out["image"], "mask": out["mask"], "name": pair.stem, "dataset": self.name}
        if self.with_gt:
            sample["gt"] = torch.from_numpy(gt)
        return sample


# ------------------------------------------------------------------------------------------------------------
# splits


def _count(v: int | float, n: int, key: str) -> int:
    if isinstance(v, bool) or v < 0:
        raise ValueError(f"{key} must be a non-negative count or a fraction < 1, got {v!r}")
    if isinstance(v, float) and v < 1:
        return int(round(v * n))
    if isinstance(v, float) and v != int(v):
        raise ValueError(f"{key} must be a count (int) or a fraction (< 1), got {v!r}")
    return int(v)


def seeded_split(
    stems: Sequence[str],
    split: str,
    *,
    train_size: int | float,
    val_size: int | float,
    seed: int = 0,
    fallback: tuple[float, float] = (0.85, 0.05),
    what: str = "dataset",
) -> list[str]:
    """The ``split`` (train / val / test / all) part of a seeded permutation of the sorted ``stems``.

    train = the first ``train_size``, val = the next ``val_size``, test = the rest (sizes are counts, or
    fractions when floats < 1). When the counts exceed the set (e.g. MEnet's 8500/500 on a partial copy of
    MSRA10K) the ``fallback`` fractions are used instead, with a warning. The result is sorted and depends only
    on (stems, sizes, seed).
    """
    stems = sorted(stems)
    n = len(stems)
    if split == "all":
        return stems
    if split not in ("train", "val", "test"):
        raise ValueError(f"{what}: unknown split {split!r}; known: train, val, test, all")
    n_tr, n_va = _count(train_size, n, "train_size"), _count(val_size, n, "val_size")
    if n_tr + n_va > n:
        new_tr, new_va = int(round(fallback[0] * n)), int(round(fallback[1] * n))
        warnings.warn(
            f"{what}: {n} pairs, fewer than train_size + val_size = {n_tr + n_va}; using {new_tr}/{new_va}/"
            f"{n - new_tr - new_va} train/val/test ({fallback[0]:g}/{fallback[1]:g}/rest) instead",
            stacklevel=3,
        )
        n_tr, n_va = new_tr, new_va
    perm = np.random.default_rng(int(seed)).permutation(n)
    order = [stems[i] for i in perm]
    part = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}[split]
    return sorted(part)


# ------------------------------------------------------------------------------------------------------------
# layouts


def _missing(dataset: str, path: Path, layout: str, hint: str = "") -> MissingDataError:
    return MissingDataError(
        f"{dataset}: folder not found: {path}\n  expected layout: {layout}\n"
        f"  (point the data root at the folder that holds it: SALSEG_DATA / data.root"
        f"{', or the spec key folder: ' + hint if hint else ''})"
    )


def _resolve(base: Path, dataset: str, layout: str, candidates: Sequence[tuple[str, str]]) -> tuple[Path, Path]:
    """The first (image_dir, mask_dir) candidate that exists under ``base``; else a clear error."""
    if not base.is_dir():
        raise _missing(dataset, base, layout, hint="<name>")
    for img, msk in candidates:
        if (base / img).is_dir() and (base / msk).is_dir():
            return base / img, base / msk
    img, msk = candidates[0]
    missing = base / img if not (base / img).is_dir() else base / msk
    raise _missing(dataset, missing, layout)


def _list_file_path(base: Path, list_file: str | Path) -> Path:
    p = Path(list_file).expanduser()
    return p if p.is_absolute() else base / p


def _make(ctx, pairs: list[Pair], verify: bool) -> SODFolderDataset:
    if not pairs:
        raise DataError(f"{ctx.dataset}: the {ctx.split!r} split is empty")
    if verify:
        for p in pairs:
            check_pair_sizes(p)
    return SODFolderDataset(pairs, ctx.dataset, ctx.transform(), with_gt=ctx.with_gt, distortion=ctx.distortion())


def _whole_or_list(
    ctx,
    *,
    split: str,
    base: Path,
    layout: str,
    candidates: Sequence[tuple[str, str]],
    list_file: str | None,
    skip_unpaired: bool,
    image_exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = MASK_EXTS,
) -> list[Pair]:
    img_dir, msk_dir = _resolve(base, ctx.dataset, layout, candidates)
    if list_file is not None:
        stems = read_list_file(_list_file_path(base, list_file))
        return list_pairs(img_dir, msk_dir, image_exts, mask_exts, stems=stems, skip_unpaired=skip_unpaired,
                          what=ctx.dataset)
    if split not in ("test", "all"):
        raise ValueError(
            f"{ctx.dataset} is a test set: split must be 'test' or 'all' (the whole set), got {split!r}; "
            f"give list_file: to use part of it as another split"
        )
    return list_pairs(img_dir, msk_dir, image_exts, mask_exts, skip_unpaired=skip_unpaired, what=ctx.dataset)


def _seeded_or_list(
    ctx,
    *,
    split: str,
    base: Path,
    layout: str,
    candidates: Sequence[tuple[str, str]],
    list_file: str | None,
    skip_unpaired: bool,
    train_size,
    val_size,
    split_seed: int,
    fallback: tuple[float, float] = (0.85, 0.05),
    auto_lists: bool = False,
    image_exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = MASK_EXTS,
) -> list[Pair]:
    img_dir, msk_dir = _resolve(base, ctx.dataset, layout, candidates)
    if list_file is None and auto_lists and split != "all":
        present = [s for s in ("train", "val", "test") if (base / f"{s}.txt").is_file()]
        if present:
            if split not in present:
                raise MissingDataError(
                    f"{ctx.dataset}: split list files {present} found in {base} but no {split}.txt; "
                    f"add {base / (split + '.txt')} or give list_file:"
                )
            list_file = f"{split}.txt"
    if list_file is not None:
        stems = read_list_file(_list_file_path(base, list_file))
        pairs = list_pairs(img_dir, msk_dir, image_exts, mask_exts, stems=stems, skip_unpaired=skip_unpaired,
                           what=ctx.dataset)
        return ctx.drop_excluded(pairs)
    pairs = list_pairs(img_dir, msk_dir, image_exts, mask_exts, skip_unpaired=skip_unpaired, what=ctx.dataset)
    pairs = ctx.drop_excluded(pairs)  # `exclude:` (e.g. MSRA1K out of MSRA10K) before the seeded split
    keep = set(seeded_split([p.stem for p in pairs], split, train_size=train_size, val_size=val_size,
                            seed=split_seed, fallback=fallback, what=ctx.dataset))
    return [p for p in pairs if p.stem in keep]


LAYOUTS = {
    "msra10k": "<root>/MSRA10K/MSRA10K_Imgs_GT/Imgs/<id>.jpg and <id>.png side by side",
    "msra1k": "<root>/MSRA1K/images/*.jpg + <root>/MSRA1K/masks/*.png (or <root>/MSRA1K/Imgs + <root>/MSRA1K/GT)",
    "hkuis": "<root>/HKU-IS/imgs/*.png + <root>/HKU-IS/gt/*.png (optional <root>/HKU-IS/{train,val,test}.txt)",
    "dutomron": "<root>/DUT-OMRON/DUT-OMRON-image/*.jpg + <root>/DUT-OMRON/pixelwiseGT-new-PNG/*.png",
    "ecssd": "<root>/ECSSD/images/*.jpg + <root>/ECSSD/ground_truth_mask/*.png",
    "sod": "<root>/SOD/images/*.jpg + <root>/SOD/gt/*.png",
    "duts": "<root>/DUTS/DUTS-TR/DUTS-TR-Image/*.jpg + DUTS-TR-Mask/*.png (train), "
    "<root>/DUTS/DUTS-TE/DUTS-TE-Image/*.jpg + DUTS-TE-Mask/*.png (test)",
    "folder": "<images>/*.jpg|png + <masks>/*.png (spec keys images:, masks:, relative to <root> or absolute)",
}


def _layout(ctx, folder: str, default: str) -> str:
    """The layout line of ``ctx.dataset`` with the actual root and folder name filled in."""
    layout = LAYOUTS.get(ctx.dataset, LAYOUTS["folder"])
    return layout.replace(f"<root>/{default}", f"<root>/{folder}").replace("<root>", str(ctx.root))


def build_msra10k(ctx, split: str = "train", folder: str = "MSRA10K", list_file: str | None = None,
                  skip_unpaired: bool = False, split_seed: int = 0, train_size: int | float = 8500,
                  val_size: int | float = 500, verify: bool = False) -> SODFolderDataset:
    """MSRA10K: MEnet's seeded 8500 train / 500 val / rest test split (``split: all`` = every pair)."""
    base = ctx.root / folder
    pairs = _seeded_or_list(
        ctx, split=split, base=base, layout=_layout(ctx, folder, "MSRA10K"),
        candidates=[("MSRA10K_Imgs_GT/Imgs", "MSRA10K_Imgs_GT/Imgs")], list_file=list_file,
        skip_unpaired=skip_unpaired, train_size=train_size, val_size=val_size, split_seed=split_seed,
        image_exts=(".jpg", ".jpeg"), mask_exts=(".png",),
    )
    return _make(ctx, pairs, verify)


def build_msra1k(ctx, split: str = "test", folder: str = "MSRA1K", list_file: str | None = None,
                 skip_unpaired: bool = False, verify: bool = False) -> SODFolderDataset:
    """MSRA1K / MSRA-B / ASD (1000 images): the whole set is a test set."""
    base = ctx.root / folder
    pairs = _whole_or_list(
        ctx, split=split, base=base, layout=_layout(ctx, folder, "MSRA1K"),
        candidates=[("images", "masks"), ("Imgs", "GT")], list_file=list_file, skip_unpaired=skip_unpaired,
    )
    return _make(ctx, pairs, verify)


def build_hkuis(ctx, split: str = "test", folder: str = "HKU-IS", list_file: str | None = None,
                skip_unpaired: bool = False, split_seed: int = 0, train_size: int | float = 0.8,
                val_size: int | float = 0.05, verify: bool = False) -> SODFolderDataset:
    """HKU-IS: ``{train,val,test}.txt`` in the dataset folder when present, else a seeded 80/5/15 % split."""
    base = ctx.root / folder
    pairs = _seeded_or_list(
        ctx, split=split, base=base, layout=_layout(ctx, folder, "HKU-IS"),
        candidates=[("imgs", "gt")], list_file=list_file, skip_unpaired=skip_unpaired, train_size=train_size,
        val_size=val_size, split_seed=split_seed, fallback=(0.8, 0.05), auto_lists=True,
    )
    return _make(ctx, pairs, verify)


def _test_set_builder(name: str, default_folder: str, candidates: list[tuple[str, str]], doc: str):
    def build(ctx, split: str = "test", folder: str = default_folder, list_file: str | None = None,
              skip_unpaired: bool = False, verify: bool = False) -> SODFolderDataset:
        base = ctx.root / folder
        pairs = _whole_or_list(
            ctx, split=split, base=base,
            layout=_layout(ctx, folder, default_folder),
            candidates=candidates, list_file=list_file, skip_unpaired=skip_unpaired,
        )
        return _make(ctx, pairs, verify)

    build.__name__ = f"build_{name}"
    build.__doc__ = doc
    return build


build_dutomron = _test_set_builder(
    "dutomron", "DUT-OMRON", [("DUT-OMRON-image", "pixelwiseGT-new-PNG")], "DUT-OMRON (5168 images), test set.")
build_ecssd = _test_set_builder("ecssd", "ECSSD", [("images", "ground_truth_mask")], "ECSSD (1000 images), test set.")
build_sod = _test_set_builder(
    "sod", "SOD", [("images", "gt")], "SOD (300 images), test set; ``folder: sod300`` reads ../shared/data/sod300.")


def build_duts(ctx, split: str = "train", folder: str = "DUTS", list_file: str | None = None,
               skip_unpaired: bool = False, split_seed: int = 0, val_size: int | float = 0,
               verify: bool = False) -> SODFolderDataset:
    """DUTS: ``train`` = DUTS-TR, ``test`` = DUTS-TE; ``val`` = a seeded ``val_size`` part of DUTS-TR (then
    removed from ``train``)."""
    base = ctx.root / folder
    layout = _layout(ctx, folder, "DUTS")
    if split not in ("train", "val", "test"):
        raise ValueError(f"duts: unknown split {split!r}; known: train, val (needs val_size > 0), test")
    if split == "test":
        cands = [("DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask")]
    else:
        cands = [("DUTS-TR/DUTS-TR-Image", "DUTS-TR/DUTS-TR-Mask")]
    img_dir, msk_dir = _resolve(base, ctx.dataset, layout, cands)
    if list_file is not None:
        stems = read_list_file(_list_file_path(base, list_file))
        pairs = list_pairs(img_dir, msk_dir, stems=stems, skip_unpaired=skip_unpaired, what=ctx.dataset)
        return _make(ctx, pairs, verify)
    pairs = list_pairs(img_dir, msk_dir, skip_unpaired=skip_unpaired, what=ctx.dataset)
    if split != "test":
        n_va = _count(val_size, len(pairs), "val_size")
        if split == "val" and n_va == 0:
            raise ValueError("duts has no official val split: set val_size (count or fraction of DUTS-TR)")
        keep = set(seeded_split([p.stem for p in pairs], "val" if split == "val" else "train",
                                train_size=len(pairs) - n_va, val_size=n_va, seed=split_seed, what=ctx.dataset))
        pairs = [p for p in pairs if p.stem in keep]
    return _make(ctx, pairs, verify)


def build_folder(ctx, images: str, masks: str, split: str = "all", list_file: str | None = None,
                 skip_unpaired: bool = False, verify: bool = False) -> SODFolderDataset:
    """Any images folder + masks folder, paired by stem (``images``, ``masks`` and ``list_file`` are relative to
    the data root, or absolute)."""
    img_dir = Path(images).expanduser()
    msk_dir = Path(masks).expanduser()
    img_dir = img_dir if img_dir.is_absolute() else ctx.root / img_dir
    msk_dir = msk_dir if msk_dir.is_absolute() else ctx.root / msk_dir
    for d in (img_dir, msk_dir):
        if not d.is_dir():
            raise _missing(ctx.dataset, d, LAYOUTS["folder"])
    stems = read_list_file(_list_file_path(ctx.root, list_file)) if list_file is not None else None
    pairs = list_pairs(img_dir, msk_dir, stems=stems, skip_unpaired=skip_unpaired, what=ctx.dataset)
    return _make(ctx, pairs, verify)


SOD_BUILDERS = {
    "msra10k": build_msra10k,
    "msra1k": build_msra1k,
    "hkuis": build_hkuis,
    "dutomron": build_dutomron,
    "ecssd": build_ecssd,
    "sod": build_sod,
    "duts": build_duts,
    "folder": build_folder,
}
