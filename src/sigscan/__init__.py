"""sigscan: foundation-model gene attributions (SIGnature) for scanpy workflows."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("sigscan")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["Atlas", "datasets", "models", "pl", "pp", "read_gene_sets", "read_gmt", "tl"]

# Sub-packages and names load on first use (PEP 562): `import sigscan` stays cheap, so `sigscan atlas score` and
# `ss.Atlas(path).score(...)` do not import torch, matplotlib or scanpy. `ss.pp`, `from sigscan import tl` etc. work
# as before. The packages that load torch prepare its thread pools first (`_threads.prefer_passive_waiting`), and
# `sigscan.models` starts loading the fast path's kernels in the background (`_engine._warmup`).
_SUBPACKAGES = {"datasets", "models", "pl", "pp", "tl"}
_NAMES = {"Atlas": ".atlas", "read_gene_sets": "._gene_sets", "read_gmt": "._gene_sets"}

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, models, pl, pp, tl
    from ._gene_sets import read_gene_sets, read_gmt
    from .atlas import Atlas


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
