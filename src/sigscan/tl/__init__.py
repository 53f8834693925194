"""Tools: gene-set scores, scorer comparisons, hits and analyses."""

from ._attribution_score import attribution_score

__all__ = ["attribution_score"]
