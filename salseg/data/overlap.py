"""Test images must never reach training: find training / validation images that are also in a test set.

Two images are the same image when
* they come from the same dataset (registry name) and have the same file stem, or
* their decoded pixels are the same: an exact digest (BLAKE2b of the uint8 RGB array and its shape), or, for
  copies re-encoded by another distribution of the set (MSRA1K's photos inside MSRA10K, under other names), the
  same size and an 8x8 RGB box-filtered thumbnail within ``THUMB_TOLERANCE`` grey levels on average.
Stems alone are not compared ACROSS datasets: ``0001`` of ECSSD and ``0001`` of SOD are different photos.

Decoding a large set takes a while, so each image's digest and thumbnail are cached per image folder under
``$SALSEG_CACHE/pixel_hashes/`` (default ``~/.cache/salseg``), keyed by file name, size and modification time;
a changed file is hashed again. Writes are atomic, so processes may share the cache.

A dataset takes part by exposing ``identity_sources()``: a list of ``(stem, image_path)`` pairs for file
datasets, or ``(key, None)`` for procedural ones (``shapes``: the key determines the pixels).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_json
from .io import DataError

THUMB = 8
THUMB_TOLERANCE = 4.0  # mean |difference| of two thumbnails, in grey levels (0..255), for a re-encoded copy


class TestOverlapError(DataError):
    """Training or validation images are in a test set of the same run (the message names them)."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class Identity:
    dataset: str  # registry name
    stem: str
    path: str | None  # image file (None for procedural datasets)
    digest: str  # exact pixel digest, or the procedural key
    size: tuple[int, int]  # (H, W); (0, 0) for procedural datasets
    thumb: bytes = b""  # THUMB x THUMB x 3 uint8


@dataclass
class Overlap:
    """Members of ``a`` (a training / validation set) that are also in ``b`` (a test set)."""

    a: str
    b: str
    pairs: list[tuple[Identity, Identity]] = field(default_factory=list)

    def describe(self, first: int = 3) -> str:
        names = ", ".join(f"{x.path or x.stem} = {y.path or y.stem}" for x, y in self.pairs[:first])
        more = f" and {len(self.pairs) - first} more" if len(self.pairs) > first else ""
        return f"{len(self.pairs)} image(s) of {self.a} are in the test set {self.b} ({names}{more})"


def cache_dir() -> Path:
    return Path(os.environ.get("SALSEG_CACHE", Path.home() / ".cache" / "salseg")).expanduser() / "pixel_hashes"


def _pixel_record(path: Path) -> dict:
    from PIL import Image

    from .io import read_image

    arr = read_image(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(arr.shape, np.int64).tobytes())
    h.update(arr.tobytes())
    thumb = np.asarray(Image.fromarray(arr).resize((THUMB, THUMB), Image.Resampling.BOX), np.uint8)
    return {"digest": h.hexdigest(), "size": list(arr.shape[:2]), "thumb": thumb.tobytes().hex()}


def _folder_records(files: Sequence[Path], progress: str | None) -> dict[Path, dict]:
    """Pixel records of ``files`` (all in one folder), through that folder's cache file."""
    folder = files[0].parent.resolve()
    cache = cache_dir() / (hashlib.blake2b(str(folder).encode(), digest_size=10).hexdigest() + ".json")
    try:
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        cached = {}  # an unreadable cache is rebuilt
    out: dict[Path, dict] = {}
    todo: list[tuple[Path, str]] = []
    for p in files:
        st = p.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        rec = cached.get(p.name)
        if rec is not None and rec.get("stamp") == stamp:
            out[p] = rec
        else:
            todo.append((p, stamp))
    if todo:
        bar = None
        if progress and len(todo) >= 200:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=progress, unit="img", leave=False)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            for (p, stamp), rec in zip(todo, pool.map(lambda t: _pixel_record(t[0]), todo)):
                rec["stamp"] = stamp
                out[p] = cached[p.name] = rec
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        write_json(cache, {"folder": str(folder), **cached})
    return out


def identities(dataset: str, sources: Sequence[tuple[str, Path | None]], progress: str | None = None) -> list[Identity]:
    """Identities of ``(stem, image path | None)`` sources of dataset ``dataset`` (see the module docstring)."""
    by_folder: dict[Path, list[Path]] = {}
    for _, path in sources:
        if path is not None:
            by_folder.setdefault(Path(path).parent, []).append(Path(path))
    records: dict[Path, dict] = {}
    for files in by_folder.values():
        records.update(_folder_records(files, progress))
    out = []
    for stem, path in sources:
        if path is None:
            out.append(Identity(dataset, stem, None, f"{dataset}:{stem}", (0, 0)))
            continue
        r = records[Path(path)]
        out.append(Identity(dataset, stem, str(path), r["digest"], tuple(r["size"]), bytes.fromhex(r["thumb"])))
    return out


def dataset_identities(ds, dataset: str, progress: str | None = None) -> list[Identity] | None:
    """Identities of a built dataset, or None when it cannot say what its images are."""
    get = getattr(ds, "identity_sources", None)
    return identities(dataset, get(), progress) if get is not None else None


class IdentityIndex:
    """The identities of one or more (test) sets, for fast membership queries."""

    def __init__(self, items: Iterable[Identity]):
        self.items = list(items)
        self.by_stem = {(i.dataset, i.stem): i for i in self.items}
        self.by_digest = {i.digest: i for i in self.items}
        self.by_size: dict[tuple[int, int], list[Identity]] = {}
        for i in self.items:
            if i.thumb:
                self.by_size.setdefault(i.size, []).append(i)
        self._thumbs = {s: np.stack([np.frombuffer(i.thumb, np.uint8).astype(np.float32) for i in lst])
                        for s, lst in self.by_size.items()}

    def find(self, x: Identity) -> Identity | None:
        hit = self.by_stem.get((x.dataset, x.stem)) or self.by_digest.get(x.digest)
        if hit is None and x.thumb and x.size in self._thumbs:
            d = np.abs(self._thumbs[x.size] - np.frombuffer(x.thumb, np.uint8).astype(np.float32)).mean(axis=1)
            j = int(d.argmin())
            if d[j] <= THUMB_TOLERANCE:
                hit = self.by_size[x.size][j]
        return hit


def find_overlap(a_name: str, a: Sequence[Identity], b_name: str, b: IdentityIndex | Sequence[Identity]) -> Overlap:
    index = b if isinstance(b, IdentityIndex) else IdentityIndex(b)
    ov = Overlap(a_name, b_name)
    for x in a:
        y = index.find(x)
        if y is not None:
            ov.pairs.append((x, y))
    return ov
