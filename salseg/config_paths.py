"""Where configs and experiments are found: the user's folders first, then the ones shipped with salseg.

A config folder (a ``--config-dir DIR``, an entry of ``SALSEG_CONFIG_PATH``, and the shipped set alike) is laid
out like the repository::

    DIR/configs/<group>/<name>.yaml           group: data, model, trainer or logger
    DIR/experiments/<name>.yaml               `salseg run NAME`
    DIR/experiments/comparisons/<name>.yaml   `salseg run NAME` (several experiments, one table)
    DIR/experiments/ablations/<name>.yaml     `salseg ablate NAME`

Either half may be absent (a folder of experiments only, or of one model config only). Search order: each
``--config-dir`` in the order given, then each ``SALSEG_CONFIG_PATH`` entry (``os.pathsep``-separated, like
``PATH``), then the shipped set. The first file of a name wins, so a user's ``configs/model/menet.yaml`` shadows
the shipped one for every experiment that uses ``model: menet``; ``salseg list`` lists the union.

The shipped set is the package data of an installed wheel (``salseg/_configs`` and ``salseg/_experiments``,
mapped from the repository's folders by pyproject's ``[tool.setuptools.package-dir]``), read through
:mod:`importlib.resources`; in a checkout (``python -m salseg``, an editable install) it is the repository's own
``configs/`` and ``experiments/``.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from salseg.errors import SalsegError

ENV_VAR = "SALSEG_CONFIG_PATH"
_cli_dirs: list[Path] = []  # set by the CLI's --config-dir (salseg.cli.main), searched before the env var


class ConfigPathError(SalsegError, ValueError):
    """A config folder given by the user that cannot be searched."""


def shipped_dirs() -> tuple[Path, Path]:
    """(configs folder, experiments folder) shipped with salseg: package data when installed, else the checkout's."""
    package = files("salseg")
    data = (package / "_configs", package / "_experiments")
    if all(d.is_dir() for d in data):
        # An installed wheel is unpacked on disk, so its Traversable is a real path (not a zip member).
        return Path(str(data[0])), Path(str(data[1]))
    root = Path(__file__).resolve().parents[1]
    return root / "configs", root / "experiments"


def _checked(folder: str | Path, source: str) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigPathError(f"{source} {folder}: no such directory")
    if not ((path / "configs").is_dir() or (path / "experiments").is_dir()):
        raise ConfigPathError(f"{source} {folder}: expected a folder holding configs/<group>/*.yaml and/or "
                              "experiments/*.yaml, found neither")
    return path


def set_config_dirs(dirs: list[str]) -> None:
    """The CLI's ``--config-dir`` folders (replacing any earlier ones), each checked now."""
    _cli_dirs[:] = [_checked(d, "--config-dir") for d in dirs]


def user_dirs() -> list[Path]:
    """The user's config folders in search order: ``--config-dir`` ones, then ``SALSEG_CONFIG_PATH``'s."""
    env = [_checked(d, ENV_VAR) for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d]
    return [*_cli_dirs, *env]
