"""The one base class of the suite's user errors.

A :class:`SalsegError` is an error about the user's input (a config key or value, a file, a dataset): the CLI
prints it as one line, ``salseg: error: <message>``, never a traceback, and exits with status 2. Each concrete
error is defined beside the code that raises it and keeps its builtin base too (``class ConfigError(SalsegError,
ValueError)``), so callers that catch ``ValueError`` or ``FileNotFoundError`` still catch it.
"""

from __future__ import annotations


class SalsegError(Exception):
    """An error about the user's input: the CLI prints it as one line, never a traceback."""
