"""Tools: gene-set scores, scorer comparisons, hits and analyses."""

from .._threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch and numba start their OpenMP thread pools (no-op once loaded)

from ._analyses import cell_cycle_contrast, factor_specificity, qc_correlation, rank_percentiles  # noqa: E402
from ._attribution_score import attribution_score  # noqa: E402
from ._compare import DEFAULT_METHODS as DEFAULT_COMPARE_METHODS  # noqa: E402
from ._compare import compare_scorers  # noqa: E402
from ._concept_genes import concept_genes  # noqa: E402
from ._concepts import ConceptModel, concepts  # noqa: E402
from ._downsampling import downsampling_stability  # noqa: E402
from ._enrichment import concept_enrichment  # noqa: E402
from ._hits import hits, sample_hits  # noqa: E402
from ._robustness_report import robustness_report  # noqa: E402
from ._score_genes import score_genes  # noqa: E402
from ._scorers import Scorer, ScoringData, register_scorer, scorers  # noqa: E402

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
