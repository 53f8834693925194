"""Package logger, scanpy style: ``computing attributions … finished (0:00:12)``.

Like scanpy's own functions, sigscan's messages follow ``sc.settings.verbosity`` (0 errors, 1 warnings — the default —,
2 and above progress messages); the command line's ``-v`` (:func:`set_level`) overrides it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

logger = logging.getLogger("sigscan")

#: level set by :func:`set_level` (the CLI's ``-v``); ``None``: follow scanpy's verbosity
_level_override: int | None = None
#: scanpy's ``Verbosity`` (error, warning, info, hint, debug) → logging level
_SCANPY_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.INFO, logging.DEBUG)


def set_level(level: int | None) -> None:
    """Show sigscan's messages from ``level`` up (``None``: follow ``sc.settings.verbosity`` again)."""
    global _level_override
    _level_override = level


def verbosity_level() -> int:
    """The logging level sigscan's messages are shown from now: :func:`set_level`, else scanpy's verbosity."""
    if _level_override is not None:
        return _level_override
    scanpy = sys.modules.get("scanpy")
    if scanpy is None:
        return logging.WARNING
    try:
        verbosity = int(scanpy.settings.verbosity)
    except (AttributeError, TypeError, ValueError):
        return logging.WARNING
    return _SCANPY_LEVELS[min(max(verbosity, 0), len(_SCANPY_LEVELS) - 1)]


class _FollowVerbosity(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= verbosity_level()


if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _handler.addFilter(_FollowVerbosity())
    logger.addHandler(_handler)
    logger.setLevel(logging.DEBUG)  # the handler's filter decides what is shown
    logger.propagate = False


@contextmanager
def muted_scanpy() -> Iterator[None]:
    """Silence scanpy's own info messages (e.g. ``score_genes``'s per-call lines) inside a sigscan loop.

    sigscan's messages keep the level they had on entry.
    """
    global _level_override
    scanpy = sys.modules.get("scanpy")
    if scanpy is None:
        yield
        return
    verbosity, override = scanpy.settings.verbosity, _level_override
    _level_override = verbosity_level()
    scanpy.settings.verbosity = min(int(verbosity), 1)
    try:
        yield
    finally:
        scanpy.settings.verbosity = verbosity
        _level_override = override


@contextmanager
def timed(message: str, *, level: int = logging.INFO) -> Iterator[None]:
    """Log ``message`` on entry and ``finished (h:mm:ss)`` on exit."""
    logger.log(level, message)
    start = time.perf_counter()
    yield
    elapsed = timedelta(seconds=round(time.perf_counter() - start))
    logger.log(level, "    finished (%s)", elapsed)
