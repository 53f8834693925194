"""Plotting."""

from ._compare import compare_scorers, score_distributions
from ._concept_explorer import concept_explorer
from ._concepts import concept_genes, concepts
from ._hits import sample_hits

__all__ = ["compare_scorers", "concept_explorer", "concept_genes", "concepts", "sample_hits", "score_distributions"]
