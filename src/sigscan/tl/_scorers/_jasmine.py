"""JASMINE (Noureen et al. 2022): within-cell rank of the expressed set genes plus a dropout-aware enrichment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ._data import ScoringData
from ._ranks import ChunkRanks

Mode = Literal["likelihood", "oddsratio"]


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = np.min(values, axis=0), np.max(values, axis=0)
    span = high - low
    return np.divide(values - low, span, out=np.zeros_like(values), where=span > 0)


def jasmine(data: ScoringData, gene_sets: Sequence[np.ndarray], *, mode: Mode = "likelihood") -> np.ndarray:
    """JASMINE scores in [0, 1], cells × sets.

    Rank part: the mean ascending rank (ties averaged) of the expressed set genes among the cell's expressed genes,
    divided by the number of expressed genes (0 when no set gene is expressed). Enrichment from the 2×2 table with
    ``a`` expressed set genes, ``b`` unexpressed set genes (1 if 0), ``c`` expressed other genes (1 if 0) and
    ``d = N − (a + c) − b`` (``N`` genes in the data; the R original's order of replacements):
    ``likelihood = a(c + d) / (c(a + b))``, ``oddsratio = ad / (bc)``. The score is the average of the two parts,
    each min–max scaled across all cells (a constant part scales to 0).
    """
    if mode not in ("likelihood", "oddsratio"):
        raise ValueError(f"Unknown JASMINE mode {mode!r}; use 'likelihood' or 'oddsratio'.")
    n_cells, n_total = data.shape
    rank_part = np.zeros((n_cells, len(gene_sets)), dtype=np.float64)
    enrichment = np.zeros((n_cells, len(gene_sets)), dtype=np.float64)
    for lo, hi, chunk in data.chunks():
        ranks = ChunkRanks(chunk)
        n_expressed = ranks.nnz_per_cell.astype(np.float64)
        for k, columns in enumerate(gene_sets):
            expressed, values = ranks.lookup(columns)
            cells = np.nonzero(expressed)[0]
            lower, equal, _ = ranks.counts_around(cells, values[expressed])
            a = expressed.sum(axis=1).astype(np.float64)
            rank_sums = np.bincount(cells, weights=lower + (equal + 1) / 2.0, minlength=hi - lo)
            mean_rank = np.divide(rank_sums, a, out=np.zeros_like(rank_sums), where=a > 0)
            rank_part[lo:hi, k] = np.divide(mean_rank, n_expressed, out=np.zeros_like(mean_rank), where=n_expressed > 0)
            b = len(columns) - a
            b[b == 0] = 1
            c = n_expressed - a
            c[c == 0] = 1
            d = n_total - (a + c) - b
            if mode == "likelihood":
                enrichment[lo:hi, k] = a * (c + d) / (c * (a + b))
            else:
                enrichment[lo:hi, k] = a * d / (b * c)
    return (_minmax(rank_part) + _minmax(enrichment)) / 2.0
