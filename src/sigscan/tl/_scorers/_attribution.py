"""SIGnature's attribution score, routed through :mod:`sigscan.tl._attribution_score`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .._attribution_score import gene_set_mean
from ._data import ScoringData


def attribution(
    data: ScoringData, gene_sets: Sequence[np.ndarray], *, agg: Literal["mean", "sum"] = "mean"
) -> np.ndarray:
    """Mean (or sum) attribution over the set's genes per cell, zeros included; cells × sets.

    ``data`` reads the attribution layer (see :func:`sigscan.tl.attribution_score`).
    """
    scores = np.zeros((data.shape[0], len(gene_sets)), dtype=np.float64)
    for lo, hi, chunk in data.chunks():
        for k, columns in enumerate(gene_sets):
            scores[lo:hi, k] = gene_set_mean(chunk, np.asarray(columns), agg=agg)
    return scores
