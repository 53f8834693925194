"""Adjusted Neighborhood Scoring (ANS; Ciernik et al. 2024): control genes from the closest-mean window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ._data import ScoringData


def ans_weights(gene_means: np.ndarray, columns: np.ndarray, *, ctrl_size: int = 100) -> np.ndarray:
    """Per-gene weights ``w`` such that the ANS score of a cell ``x`` is ``x · w``.

    Genes are sorted by mean expression; the reference list is the sorted non-signature genes. Signature genes among
    the ``ctrl_size // 2`` highest- or lowest-mean genes (fewer than that many genes strictly above / below them)
    are dropped. Each remaining signature gene gets the window of ``ctrl_size`` consecutive reference genes whose
    mean is closest to its own (the first such window on ties); the score is the mean of the signature genes minus
    the mean over all control sets.
    """
    ctrl_size = int(ctrl_size)
    if ctrl_size < 1:
        raise ValueError(f"ctrl_size must be a positive integer, not {ctrl_size}.")
    n_genes = gene_means.size
    columns = np.unique(np.asarray(columns, dtype=np.int64))
    in_set = np.zeros(n_genes, dtype=bool)
    in_set[columns] = True
    sorted_means = np.sort(gene_means, kind="stable")
    half = ctrl_size // 2
    set_means = gene_means[columns]
    n_below = np.searchsorted(sorted_means, set_means, side="left")
    n_above = n_genes - np.searchsorted(sorted_means, set_means, side="right")
    kept = columns[(n_below >= half) & (n_above >= half)]
    if kept.size == 0:
        raise ValueError(
            f"ANS: all {columns.size} genes of the set are among the ctrl_size // 2 = {half} highest- or lowest-mean "
            "genes, so none has a valid control set; use a smaller ctrl_size or a different gene set."
        )
    order = np.argsort(gene_means, kind="stable")
    reference = order[~in_set[order]]
    if reference.size < ctrl_size:
        raise ValueError(
            f"ANS needs at least ctrl_size = {ctrl_size} genes outside the set, the data has {reference.size}; "
            "use a smaller ctrl_size."
        )
    cumulative = np.concatenate([[0.0], np.cumsum(gene_means[reference], dtype=np.float64)])
    windows = (cumulative[ctrl_size:] - cumulative[:-ctrl_size]) / ctrl_size
    weights = np.zeros(n_genes, dtype=np.float64)
    weights[kept] = 1.0 / kept.size
    starts = np.empty(kept.size, dtype=np.int64)
    for lo in range(0, kept.size, 256):  # bounded memory for very large sets
        block = gene_means[kept[lo : lo + 256]]
        starts[lo : lo + 256] = np.argmin(np.abs(windows[None, :] - block[:, None]), axis=1)
    control = reference[(starts[:, None] + np.arange(ctrl_size)[None, :]).ravel()]
    weights -= np.bincount(control, minlength=n_genes) / (kept.size * ctrl_size)
    return weights


def linear_scores(data: ScoringData, weights: list[np.ndarray]) -> np.ndarray:
    """``X @ W`` streamed over chunks of cells (W: genes × sets, mostly zero)."""
    matrix = sparse.csc_matrix(np.column_stack(weights)) if weights else sparse.csc_matrix((data.shape[1], 0))
    rows = np.unique(matrix.indices)
    compact = matrix[rows].toarray()
    scores = np.zeros((data.shape[0], len(weights)), dtype=np.float64)
    for lo, hi, chunk in data.chunks():
        scores[lo:hi] = np.asarray(chunk[:, rows] @ compact)
    return scores


def ans(data: ScoringData, gene_sets: Sequence[np.ndarray], *, ctrl_size: int = 100) -> np.ndarray:
    """ANS scores, cells × sets (see :func:`ans_weights`); gene means are computed once in one pass."""
    means = data.gene_means()
    return linear_scores(data, [ans_weights(means, columns, ctrl_size=ctrl_size) for columns in gene_sets])
