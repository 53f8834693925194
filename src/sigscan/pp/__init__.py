"""Preprocessing: compute attribution layers."""

from ._attributions import attributions
from ._diagnostics import completeness

__all__ = ["attributions", "completeness"]
