"""sigscan: foundation-model gene attributions (SIGnature) for scanpy workflows."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, models, pl, pp, tl
from ._engine import _warmup as _engine_warmup
from ._gene_sets import read_gene_sets, read_gmt
from .atlas import Atlas

try:
    __version__ = version("sigscan")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["Atlas", "datasets", "models", "pl", "pp", "read_gene_sets", "read_gmt", "tl"]

_engine_warmup.start()  # load the fast path's compiled kernels in the background (a fast first call)
