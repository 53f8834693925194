"""Plotting."""

from ._analyses import cell_cycle_contrast, factor_specificity, qc_correlation, rank_percentiles
from ._compare import compare_scorers, score_distributions
from ._concept_explorer import concept_explorer
from ._concepts import concept_genes, concepts
from ._downsampling import downsampling_stability
from ._hits import sample_hits

__all__ = [
    "cell_cycle_contrast",
    "compare_scorers",
    "concept_explorer",
    "concept_genes",
    "concepts",
    "downsampling_stability",
    "factor_specificity",
    "qc_correlation",
    "rank_percentiles",
    "sample_hits",
    "score_distributions",
]
