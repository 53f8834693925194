"""Tools: gene-set scores, scorer comparisons, hits and analyses."""

from ._attribution_score import attribution_score
from ._compare import DEFAULT_METHODS as DEFAULT_COMPARE_METHODS
from ._compare import compare_scorers
from ._concept_genes import concept_genes
from ._concepts import ConceptModel, concepts
from ._enrichment import concept_enrichment
from ._hits import hits, sample_hits
from ._score_genes import score_genes
from ._scorers import Scorer, ScoringData, register_scorer, scorers

__all__ = [
    "DEFAULT_COMPARE_METHODS",
    "ConceptModel",
    "Scorer",
    "ScoringData",
    "attribution_score",
    "compare_scorers",
    "concept_enrichment",
    "concept_genes",
    "concepts",
    "hits",
    "register_scorer",
    "sample_hits",
    "score_genes",
    "scorers",
]
