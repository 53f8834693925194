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


#: loggers of the libraries sigscan drives (Lightning through scvi-tools) whose INFO lines are not about the user's data:
#: "GPU available: False", "Seed set to 0", "💡 Tip: … litlogger", "`Trainer.fit` stopped: `max_epochs` reached"
#: (the emitting module loggers are named because Lightning sets its package loggers to INFO when it is imported)
_LIBRARY_LOGGERS = (
    *(
        f"{package}{module}"
        for package in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
        for module in ("", ".utilities.rank_zero", ".utilities.seed")
    ),
    "scvi",
)
#: modules whose warnings concern their own internals (workers, precision, deprecations), never the user's data
_LIBRARY_WARNING_MODULES = r"(lightning|pytorch_lightning|lightning_fabric|scvi|torch|numba|jax)(\..*)?$"


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep library noise out of the command line and the demo; sigscan's own messages and warnings still show.

    Inside the block, the loggers of Lightning and scvi-tools only pass warnings and errors, and warnings raised by
    those libraries (or any deprecation notice) are dropped. Warnings about the user's data (sigscan's, anndata's,
    scanpy's) are kept. Levels and warning filters are restored on exit.
    """
    import warnings

    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.filterwarnings("ignore", module=_LIBRARY_WARNING_MODULES)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
