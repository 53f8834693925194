"""Mean expression of the set's genes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._ans import linear_scores
from ._data import ScoringData


def mean(data: ScoringData, gene_sets: Sequence[np.ndarray]) -> np.ndarray:
    """Mean (log-normalised) expression over the set's genes per cell, zeros included; cells × sets."""
    weights = []
    for columns in gene_sets:
        w = np.zeros(data.shape[1], dtype=np.float64)
        w[np.unique(columns)] = 1.0 / np.unique(columns).size
        weights.append(w)
    return linear_scores(data, weights)
