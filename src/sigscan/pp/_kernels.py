"""Compiled kernels for the fast path (numba)."""

from __future__ import annotations

import numba
import numpy as np
from scipy import sparse


@numba.njit(parallel=True, fastmath=True, cache=True)
def _sddmm_by_gene(col_ptr, col_rows, col_pos, hidden, weight_t, out):  # pragma: no cover - compiled
    n_genes = col_ptr.shape[0] - 1
    n_hidden = hidden.shape[1]
    for j in numba.prange(n_genes):
        start, stop = col_ptr[j], col_ptr[j + 1]
        if start == stop:
            continue
        w = weight_t[j]
        for p in range(start, stop):
            h = hidden[col_rows[p]]
            acc = np.float32(0.0)
            for t in range(n_hidden):
                acc += h[t] * w[t]
            out[col_pos[p]] = acc


def sampled_rowdot(x: sparse.csr_matrix, hidden: np.ndarray, weight_t: np.ndarray) -> np.ndarray:
    """For every non-zero (i, j) of ``x``, in CSR order: ``hidden[i] · weight_t[j]``.

    Works gene by gene (each row of ``weight_t`` is read once per batch, the cells' ``hidden`` rows stay in cache),
    so the cost is ``nnz × hidden`` multiply-adds and the cells × genes product is never formed.
    """
    out = np.empty(x.nnz, dtype=np.float32)
    if x.nnz == 0:
        return out
    positions = sparse.csr_matrix(
        (np.arange(x.nnz, dtype=np.int64), x.indices, x.indptr), shape=x.shape
    ).tocsc()  # data: CSR position of each non-zero, grouped by gene
    _sddmm_by_gene(
        positions.indptr.astype(np.int64),
        positions.indices.astype(np.int64),
        positions.data,
        np.ascontiguousarray(hidden, dtype=np.float32),
        weight_t,
        out,
    )
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def _spmm_rows(indptr, indices, data, weight_t, out):  # pragma: no cover - compiled
    n_hidden = weight_t.shape[1]
    for i in numba.prange(indptr.shape[0] - 1):
        acc = out[i]
        for p in range(indptr[i], indptr[i + 1]):
            value = data[p]
            w = weight_t[indices[p]]
            for t in range(n_hidden):
                acc[t] += value * w[t]


def sparse_dense_mm(x: sparse.csr_matrix, weight_t: np.ndarray) -> np.ndarray:
    """``x @ weight_t`` for CSR ``x`` (cells × genes) and dense ``weight_t`` (genes × hidden), parallel over cells."""
    out = np.zeros((x.shape[0], weight_t.shape[1]), dtype=np.float32)
    if x.nnz:
        _spmm_rows(x.indptr, x.indices, x.data.astype(np.float32, copy=False), weight_t, out)
    return out
