"""Package logger, scanpy style: ``computing attributions … finished (0:00:12)``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

logger = logging.getLogger("sigscan")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


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
