"""Input checks that name the problem and the fix."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def check_counts(values: np.ndarray | sparse.spmatrix, *, where: str, require_integers: bool = True) -> None:
    """Raise :class:`ValueError` unless ``values`` are finite, non-negative (and integer-valued) counts."""
    data = values.data if sparse.issparse(values) else np.asarray(values).ravel()
    if data.size == 0:
        return
    if not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise ValueError(
            f"{where} contains {n_bad} NaN or infinite values. Attributions need raw counts: remove or fix those "
            "entries (e.g. re-export the count matrix) and pass it via layer=."
        )
    minimum = data.min()
    if minimum < 0:
        raise ValueError(
            f"{where} contains negative values (minimum {minimum:g}); it looks scaled or centred. Pass the raw "
            "counts via layer= (e.g. layer='counts')."
        )
    if require_integers:
        sample = data[:: max(1, data.size // 1_000_000)]
        if not np.array_equal(sample, np.round(sample)):
            raise ValueError(
                f"{where} holds non-integer values (e.g. {sample[sample != np.round(sample)][0]:g}): it looks "
                "log-normalised, but this model needs raw counts. Pass the raw counts via layer= (e.g. "
                "layer='counts'), or adata.raw.to_adata() if the counts live in .raw."
            )
