"""Tools: gene-set scores, scorer comparisons, hits and analyses."""

from ._attribution_score import attribution_score
from ._compare import compare_scorers
from ._hits import hits, sample_hits
from ._score_genes import score_genes
from ._scorers import SCORERS

__all__ = ["SCORERS", "attribution_score", "compare_scorers", "hits", "sample_hits", "score_genes"]
