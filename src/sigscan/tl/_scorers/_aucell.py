"""AUCell (Aibar et al. 2017): area under the recovery curve of the set in the cell's top-ranked genes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._data import ScoringData
from ._ranks import ChunkRanks


def _n_up(n_genes: int, n_up: float | None) -> int:
    value = int(np.clip(np.ceil(0.05 * n_genes), 2, n_genes)) if n_up is None else int(np.ceil(n_up))
    if not 1 < value <= n_genes:
        raise ValueError(f"n_up must be between 2 and the number of genes ({n_genes}), not {n_up!r}.")
    return value


def aucell(data: ScoringData, gene_sets: Sequence[np.ndarray], *, n_up: float | None = None) -> np.ndarray:
    """AUCell scores in [0, 1], cells × sets (decoupler's definition).

    Genes are ranked per cell by decreasing expression, ties broken by gene order (``rankdata(-x, "ordinal")``).
    The set genes ranked within the top ``n_up`` (default: 5% of all genes, at least 2) trace a recovery curve;
    its area up to ``n_up`` is divided by the largest area a set of that size can reach.
    """
    n_genes = data.shape[1]
    top = _n_up(n_genes, n_up)
    scores = np.zeros((data.shape[0], len(gene_sets)), dtype=np.float64)
    for lo, hi, chunk in data.chunks():
        ranks = ChunkRanks(chunk)
        for k, columns in enumerate(gene_sets):
            thresholds = np.arange(1, len(columns) + 1)
            thresholds = thresholds[thresholds < top]
            max_auc = float(np.sum(np.diff(np.append(thresholds, top)) * thresholds))
            r = np.sort(ranks.descending_ordinal_ranks(columns), axis=1).astype(np.float64)
            recovered = r <= top
            # recovery-curve steps: the i-th recovered gene (sorted) holds height i until the next one (or n_up)
            r[~recovered] = top
            nxt = np.concatenate([r[:, 1:], np.full((r.shape[0], 1), float(top))], axis=1)
            heights = np.cumsum(recovered, axis=1)
            area = np.sum(np.where(recovered, (nxt - r) * heights, 0.0), axis=1)
            scores[lo:hi, k] = area / max_auc if max_auc > 0 else 0.0
    return scores
