"""Tools: gene-set scores, scorer comparisons, hits and analyses."""

from ._analyses import cell_cycle_contrast, factor_specificity, qc_correlation, rank_percentiles
from ._attribution_score import attribution_score
from ._compare import DEFAULT_METHODS as DEFAULT_COMPARE_METHODS
from ._compare import compare_scorers
from ._concept_genes import concept_genes
from ._concepts import ConceptModel, concepts
from ._downsampling import downsampling_stability
from ._enrichment import concept_enrichment
from ._hits import hits, sample_hits
from ._robustness_report import robustness_report
from ._score_genes import score_genes
from ._scorers import Scorer, ScoringData, register_scorer, scorers

__all__ = [
    "DEFAULT_COMPARE_METHODS",
    "ConceptModel",
    "Scorer",
    "ScoringData",
    "attribution_score",
    "cell_cycle_contrast",
    "compare_scorers",
    "concept_enrichment",
    "concept_genes",
    "concepts",
    "downsampling_stability",
    "factor_specificity",
    "hits",
    "qc_correlation",
    "rank_percentiles",
    "register_scorer",
    "robustness_report",
    "sample_hits",
    "score_genes",
    "scorers",
]
