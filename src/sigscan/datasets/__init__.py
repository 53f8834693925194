"""Bundled real data, gene sets and a small synthetic generator."""

from ._datasets import gene_sets, kang_ifnb, pbmc3k, pbmc3k_signatures
from ._synthetic import toy

__all__ = ["gene_sets", "kang_ifnb", "pbmc3k", "pbmc3k_signatures", "toy"]
