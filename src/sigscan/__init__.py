"""sigscan: foundation-model gene attributions (SIGnature) for scanpy workflows."""

from importlib.metadata import PackageNotFoundError, version

from . import _threads

_threads.prefer_passive_waiting()  # before torch and numba start their OpenMP thread pools

from . import datasets, models, pl, pp, tl  # noqa: E402
from ._engine import _warmup as _engine_warmup  # noqa: E402
from ._gene_sets import read_gene_sets, read_gmt  # noqa: E402
from .atlas import Atlas  # noqa: E402

try:
    __version__ = version("sigscan")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["Atlas", "datasets", "models", "pl", "pp", "read_gene_sets", "read_gmt", "tl"]

_engine_warmup.start()  # load the fast path's compiled kernels in the background (a fast first call)
