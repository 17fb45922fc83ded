"""Checks of config values shared by the methods, so every bad value gets the same kind of message."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def one_of(key: str, value: Any, choices: Collection) -> None:
    """Raise ``ValueError("<key> must be one of <choices>, got <value>")`` unless ``value`` is in ``choices``."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
