"""The numba kernels of :mod:`._kernels` (a module of their own: importing numba is left to the background loader)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def column_sums(data, indices, col_ptr, weights, out):  # pragma: no cover - compiled
    for j in range(len(weights)):
        w = weights[j]
        for k in range(col_ptr[j], col_ptr[j + 1]):
            out[indices[k]] += np.float64(data[k]) * w


@numba.njit(nogil=True, cache=True)
def range_sums(data, indices, starts, stops, weights, out):  # pragma: no cover - compiled
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
