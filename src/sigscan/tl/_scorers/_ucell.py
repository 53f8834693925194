"""UCell (Andreatta & Carmona 2021): a Mann–Whitney U statistic of the set's within-cell ranks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._data import ScoringData
from ._ranks import ChunkRanks


def ucell(data: ScoringData, gene_sets: Sequence[np.ndarray], *, max_rank: int = 1500) -> np.ndarray:
    """UCell scores, cells × sets.

    Genes are ranked per cell by decreasing expression (ties get their average rank); unexpressed genes and ranks
    beyond ``max_rank`` count as ``max_rank``. With ``n`` set genes, ``U = Σ ranks − n(n+1)/2`` and the score is
    ``1 − U / (n·max_rank − n(n+1)/2)``: 1 when the set's genes are the cell's top genes, 0 when none is expressed.
    Matches ``pyucell.compute_ucell_scores`` (``ties_method="average"``, ``missing_genes="skip"``).
    """
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be a positive integer, not {max_rank!r}.")
    max_rank = int(max_rank)
    n_cells = data.shape[0]
    scores = np.zeros((n_cells, len(gene_sets)), dtype=np.float64)
    for lo, hi, chunk in data.chunks():
        ranks = ChunkRanks(chunk)
        for k, columns in enumerate(gene_sets):
            n = len(columns)
            expressed, values = ranks.lookup(columns)
            capped = np.full(expressed.shape, float(max_rank))
            cells = np.nonzero(expressed)[0]
            _, equal, greater = ranks.counts_around(cells, values[expressed])
            capped[expressed] = np.minimum(greater + (equal + 1) / 2.0, max_rank)
            rank_sum = capped.sum(axis=1)
            u_min = n * (n + 1) / 2.0
            u_range = n * max_rank - u_min
            scores[lo:hi, k] = 0.0 if u_range <= 0 else 1.0 - (rank_sum - u_min) / u_range
    return np.clip(scores, 0.0, None)
