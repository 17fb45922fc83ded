"""The one base class of the suite's user errors.

A :class:`SalsegError` is an error about the user's input (a config key or value, a file, a dataset): the CLI
prints it as one line, ``salseg: error: <message>``, never a traceback, and exits with status 2. Each concrete
error is defined beside the code that raises it and keeps its builtin base too (``class ConfigError(SalsegError,
ValueError)``), so callers that catch ``ValueError`` or ``FileNotFoundError`` still catch it.
"""

from __future__ import annotations


class SalsegError(Exception):
    """An error about the user's input: the CLI prints it as one line, never a traceback."""


class MissingExtraError(SalsegError, ImportError):
    """A feature's optional dependency is not installed; the message names the extra that installs it."""


def import_extra(module: str, extra: str, feature: str):
    """``importlib.import_module(module)``, or a :class:`MissingExtraError` naming ``feature`` and the
    ``salseg[extra]`` that provides it (pyproject.toml's [project.optional-dependencies])."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{feature} needs {module.split('.')[0]}, which cannot be imported ({exc}): "
                                f"pip install 'salseg[{extra}]'") from exc
