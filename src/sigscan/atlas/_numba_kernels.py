"""The numba kernel of :mod:`._kernels` (a module of its own: importing numba is left to the background loader)."""

from __future__ import annotations

import numba
import numpy as np


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
