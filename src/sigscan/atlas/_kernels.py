"""The inner loop of an atlas query: weighted column sums of a CSC slice, accumulated in float64."""

from __future__ import annotations

import numpy as np


def _column_sums_numpy(
    data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, weights: np.ndarray, out: np.ndarray
) -> None:
    from scipy import sparse

    out += sparse.csc_matrix((data, indices, col_ptr), shape=(len(out), len(weights))) @ weights


try:
    import numba

    @numba.njit(nogil=True, cache=True)
    def _column_sums_numba(data, indices, col_ptr, weights, out):  # pragma: no cover - compiled
        for j in range(len(weights)):
            w = weights[j]
            for k in range(col_ptr[j], col_ptr[j + 1]):
                out[indices[k]] += np.float64(data[k]) * w

except ImportError:  # pragma: no cover - numba comes with scanpy
    _column_sums_numba = None


def weighted_column_sums(
    data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, weights: np.ndarray, n_rows: int
) -> np.ndarray:
    """``Σ_j w_j · A[:, j]`` for a CSC slice ``(data, indices, col_ptr)`` with ``n_rows`` rows, in float64.

    The same sums as ``csc_matrix(...) @ weights`` (float64 accumulation, as :func:`sigscan.tl.attribution_score`),
    without the float64 copy of ``data`` scipy makes; runs without the GIL. ``indices`` must lie in
    ``[0, n_rows)`` (checked by the caller).
    """
    out = np.zeros(n_rows, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if _column_sums_numba is not None:
        _column_sums_numba(data, indices, np.ascontiguousarray(col_ptr, dtype=np.int64), weights, out)
    else:
        _column_sums_numpy(data, indices, col_ptr, weights, out)
    return out
