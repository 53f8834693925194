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
