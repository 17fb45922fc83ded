"""The DCSP cue cache: cues are made once per dataset and settings, written to disk, and read by training.

Layout: ``<root>/manifest.json`` (the settings the cues were made with, their fingerprint, the image names, and
``complete``) and ``<root>/<name>.png`` (8-bit: 0 background, c + 1 for class c). Every file is written to a
temporary name and renamed, so an interrupted build never leaves a half-written cue; the manifest says
``complete: true`` only after the last cue is written, and a build resumes by skipping the cues already there.

A cache made with other settings (another saliency checkpoint, thresholds, scales, ...) is stale: opening it with
different settings raises :class:`StaleCueCache`, naming the keys that differ, instead of training on old cues.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from salseg.atomic import atomic_write_bytes
from salseg.errors import SalsegError


class StaleCueCache(SalsegError, RuntimeError):
    pass


def fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CueCache:
    """Cues of one dataset under ``root``, made with ``settings`` (a JSON-able mapping)."""

    def __init__(self, root: str | Path, settings: Mapping[str, Any]):
        self.root = Path(root)
        self.settings = json.loads(json.dumps(dict(settings), sort_keys=True, default=str))
        self.key = fingerprint(self.settings)
        manifest = self.root / "manifest.json"
        if manifest.is_file():
            old = json.loads(manifest.read_text())
            if old.get("fingerprint") != self.key:
                before, now = old.get("settings", {}), self.settings
                differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                changes = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differ)
                raise StaleCueCache(f"cue cache {self.root} was made with other settings ({changes}); delete the "
                                    f"folder or point the cache elsewhere")
            self.names = list(old.get("names", []))
            self.complete = bool(old.get("complete"))
        else:
            self.names, self.complete = [], False

    def path(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def begin(self, names: Iterable[str]) -> list[str]:
        """Start (or resume) a build of the cues of ``names``; returns the names whose cue is still missing."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.names = list(names)
        self._write_manifest(complete=False)
        return [n for n in self.names if not self.path(n).is_file()]

    def write(self, name: str, cues: np.ndarray) -> None:
        cues = np.asarray(cues)
        if cues.ndim != 2 or cues.min() < 0 or cues.max() > 255:
            raise ValueError(f"cue of {name}: expected an (H, W) map of values 0..255, got shape {cues.shape}")
        buf = io.BytesIO()
        Image.fromarray(cues.astype(np.uint8), mode="L").save(buf, format="PNG")
        atomic_write_bytes(self.path(name), buf.getvalue(), fsync=False)  # one per training image: no flush each

    def finish(self) -> None:
        missing = [n for n in self.names if not self.path(n).is_file()]
        if missing:
            raise RuntimeError(f"cue cache {self.root}: {len(missing)} cue(s) missing, e.g. {self.path(missing[0])}")
        self._write_manifest(complete=True)
        self.complete = True

    def read(self, name: str) -> np.ndarray:
        if not self.complete:
            raise RuntimeError(f"cue cache {self.root} is not complete (an interrupted build?): build it again, "
                               f"it resumes where it stopped")
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"cue cache {self.root}: no cue for image {name!r} (expected {path})")
        return np.array(Image.open(path))

    def _write_manifest(self, complete: bool) -> None:
        doc = {"fingerprint": self.key, "settings": self.settings, "names": self.names, "complete": complete}
        atomic_write_bytes(self.root / "manifest.json", json.dumps(doc, indent=1).encode())
