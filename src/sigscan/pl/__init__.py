"""Plotting."""

from ._compare import compare_scorers, score_distributions
from ._downsampling import downsampling_stability
from ._hits import sample_hits

__all__ = ["compare_scorers", "downsampling_stability", "sample_hits", "score_distributions"]
