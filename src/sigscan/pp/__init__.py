"""Preprocessing: compute attribution layers."""

from ._attributions import attributions
from ._diagnostics import completeness
from ._downsample import downsample_counts
from ._embeddings import embeddings

__all__ = ["attributions", "completeness", "downsample_counts", "embeddings"]
