"""Plotting."""

from ._analyses import cell_cycle_contrast, factor_specificity, qc_correlation, rank_percentiles
from ._compare import compare_scorers, score_distributions
from ._downsampling import downsampling_stability
from ._hits import sample_hits

__all__ = [
    "cell_cycle_contrast",
    "compare_scorers",
    "downsampling_stability",
    "factor_specificity",
    "qc_correlation",
    "rank_percentiles",
    "sample_hits",
    "score_distributions",
]
