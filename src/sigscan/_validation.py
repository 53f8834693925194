"""Input checks that name the problem and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse


def _integer_valued(values: np.ndarray) -> bool:
    return bool(np.array_equal(values, np.round(values)))


def looks_like_counts(matrix: Any, *, n_rows: int = 500) -> bool:
    """Whether the first rows of ``matrix`` hold non-negative integers only (raw counts, not log-normalised data)."""
    block = matrix[: min(n_rows, matrix.shape[0])]
    if hasattr(block, "compute"):
        block = block.compute()
    values = block.data if sparse.issparse(block) else np.asarray(block).ravel()
    if values.size == 0:
        return False
    return bool(np.all(values >= 0)) and _integer_valued(values)


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
        if not _integer_valued(sample):
            example = sample[sample != np.round(sample)][0]
            if sample.max() <= 20:
                kind = "it looks log-normalised"
            else:
                kind = "these look like corrected or scaled counts (e.g. ambient-corrected by SoupX or CellBender)"
            raise ValueError(
                f"{where} holds non-integer values (e.g. {example:g}): {kind}, but this model needs raw integer "
                "counts. Pass the raw counts via layer= (e.g. layer='counts'), or adata.raw.to_adata() if the counts "
                "live in .raw; to use corrected counts anyway, round them first (np.rint)."
            )
