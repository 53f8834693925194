"""Encoder wrappers: what :func:`sigscan.pp.attributions` attributes."""

from ._base import AttributionModel, FirstLinear
from ._scfoundation import ScFoundation, ScFoundationEncoder
from ._scgpt import ScGPT, ScGPTEncoder
from ._scimilarity import SCimilarity, SCimilarityEncoder
from ._sctab import ScTabSSL
from ._scvi import SCVI
from ._torch import TorchEncoder

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
