"""Encoder wrappers: what :func:`sigscan.pp.attributions` attributes."""

from .._threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch and numba start their OpenMP thread pools (no-op once loaded)

from ._base import AttributionModel, FirstLinear  # noqa: E402
from ._scfoundation import ScFoundation, ScFoundationEncoder  # noqa: E402
from ._scgpt import ScGPT, ScGPTEncoder  # noqa: E402
from ._scimilarity import SCimilarity, SCimilarityEncoder  # noqa: E402
from ._sctab import ScTabSSL  # noqa: E402
from ._scvi import SCVI  # noqa: E402
from ._torch import TorchEncoder  # noqa: E402

__all__ = [
    "SCVI",
    "AttributionModel",
    "FirstLinear",
    "SCimilarity",
    "SCimilarityEncoder",
    "ScFoundation",
    "ScFoundationEncoder",
    "ScGPT",
    "ScGPTEncoder",
    "ScTabSSL",
    "TorchEncoder",
]

from .._engine import _warmup  # noqa: E402

_warmup.start()  # load the fast path's compiled kernels in the background while data and models load
