"""DCSP cue cache: written once, read back exactly, resumable, and stale settings are refused by name."""

import json

import numpy as np
import pytest

from salseg.methods.dcsp.cache import CueCache, StaleCueCache

SETTINGS = {"saliency_ckpt": "runs/x/last.ckpt", "thresholds": [0.7, 0.8], "background": 0.4}


def test_cues_round_trip_and_the_manifest_says_complete_last(tmp_path):
    cache = CueCache(tmp_path / "cues", SETTINGS)
    assert cache.begin(["a", "b"]) == ["a", "b"]
    cue = np.array([[0, 1, 21], [255, 3, 0]], dtype=np.uint8)
    cache.write("a", cue)
    with pytest.raises(RuntimeError, match="not complete"):
        cache.read("a")
    with pytest.raises(RuntimeError, match=r"1 cue\(s\) missing, e\.g\. .*b\.png"):
        cache.finish()
    # an interrupted build resumes: a new cache object with the same settings skips what is there
    again = CueCache(tmp_path / "cues", SETTINGS)
    assert again.begin(["a", "b"]) == ["b"]
    again.write("b", cue * 0)
    again.finish()
    reopened = CueCache(tmp_path / "cues", dict(reversed(list(SETTINGS.items()))))  # key order does not matter
    assert reopened.complete and np.array_equal(reopened.read("a"), cue) and reopened.read("a").dtype == np.uint8
    assert json.loads((tmp_path / "cues" / "manifest.json").read_text())["complete"] is True
    with pytest.raises(FileNotFoundError, match="no cue for image 'c'"):
        reopened.read("c")
    assert not list((tmp_path / "cues").glob(".*tmp*"))  # no temporary file left behind


def test_a_cache_made_with_other_settings_is_refused_naming_the_keys(tmp_path):
    CueCache(tmp_path, SETTINGS).begin(["a"])
    with pytest.raises(StaleCueCache, match=r"background: 0\.4 -> 0\.5.*delete the folder"):
        CueCache(tmp_path, {**SETTINGS, "background": 0.5})
    with pytest.raises(ValueError, match=r"values 0\.\.255"):
        CueCache(tmp_path, SETTINGS).write("a", np.array([[300]]))
