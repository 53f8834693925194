"""The inner loop of an atlas query: weighted column sums of a CSC slice, accumulated in float64."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _column_sums_numba(data, indices, col_ptr, weights, out):  # pragma: no cover - compiled
    for j in range(len(weights)):
        w = weights[j]
        for k in range(col_ptr[j], col_ptr[j + 1]):
            out[indices[k]] += np.float64(data[k]) * w


@numba.njit(nogil=True, cache=True)
def _range_sums_numba(data, indices, starts, stops, weights, out):  # pragma: no cover - compiled
    n = out.shape[0]
    bad = 0
    for j in range(len(weights)):
        w = weights[j]
        for k in range(starts[j], stops[j]):
            row = indices[k]
            if row < 0 or row >= n:
                bad += 1
            else:
                out[row] += np.float64(data[k]) * w
    return bad


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
    _column_sums_numba(data, indices, np.ascontiguousarray(col_ptr, dtype=np.int64), weights, out)
    return out


def sum_column_ranges(
    data: np.ndarray, indices: np.ndarray, starts: np.ndarray, stops: np.ndarray, weights: np.ndarray, n_rows: int
) -> tuple[np.ndarray, int]:
    """Weighted column sums over column ranges ``[starts[j], stops[j])`` of full CSC arrays (e.g. memory maps).

    Returns the float64 sums and the number of out-of-range row numbers met (those entries are skipped).
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    out = np.zeros(n_rows, dtype=np.float64)
    bad = _range_sums_numba(data, indices, np.asarray(starts, np.int64), np.asarray(stops, np.int64), weights, out)
    return out, int(bad)
