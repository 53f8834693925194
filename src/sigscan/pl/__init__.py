"""Plotting."""

from ._compare import compare_scorers, score_distributions
from ._hits import sample_hits

__all__ = ["compare_scorers", "sample_hits", "score_distributions"]
