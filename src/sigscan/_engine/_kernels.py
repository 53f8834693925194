"""Kernels of the CPU fast path: the sparse first layer and the gene-gradient gather (numba and one dense GEMM).

A batch's non-zeros are grouped by gene (:class:`GeneMajor`). Genes expressed in a large share of the batch's cells
(ribosomal and housekeeping genes: in PBMCs ~950 genes carry half of all non-zeros) are *dense*: their columns go
through one dense matrix product, which runs near the FLOP limit even with the zeros it multiplies. The other genes
go through numba kernels that read each gene's weight row once per batch. The split is decided in one place,
:func:`dense_genes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from scipy import sparse

#: a gene is computed densely when at least this share of the batch's cells express it: the sparse kernels run at
#: ~40 (first layer) and ~25 (gather) GFLOP/s, a dense float32 GEMM at ~140 GFLOP/s on the 2-core SPEC machine, so
#: dense wins once more than ~20–30% of its entries are non-zero
DENSE_SHARE = 0.25
#: ... and at least this many cells: in a small batch copying the weight row costs more than the sparse work
DENSE_MIN_CELLS = 32


@numba.njit(cache=True)
def _group_by_gene(indptr, indices, data, slot, col_ptr, rows, positions, values):  # pragma: no cover - compiled
    """Counting sort of a CSR batch's sparse-gene entries (``slot[j] < 0``) by gene.

    ``col_ptr[j + 1]`` holds gene ``j``'s count on entry. Within a gene, cells stay in ascending order (like
    ``tocsc``).
    """
    for j in range(col_ptr.shape[0] - 1):
        col_ptr[j + 1] += col_ptr[j]
    fill = col_ptr[:-1].copy()
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if slot[j] >= 0:
                continue
            q = fill[j]
            fill[j] = q + 1
            rows[q] = i
            positions[q] = p
            values[q] = data[p]


@dataclass(frozen=True)
class GeneMajor:
    """A CSR batch split for the kernels: sparse genes grouped by gene, dense genes left in the CSR arrays.

    Sparse genes: for gene ``j``, entries ``col_ptr[j]:col_ptr[j + 1]`` give the cell (``rows``), the position in
    the CSR arrays (``positions``) and the value (``values``), so that each weight row is read once per batch (and
    thread); ``sparse`` lists the sparse genes with at least one non-zero. Dense genes (``dense``, see
    :func:`dense_genes`) are read from the CSR arrays (``indptr``, ``indices``, ``data``) row by row; ``slot[j]`` is
    gene ``j``'s column among them, or -1.
    """

    n_cells: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    dense: np.ndarray
    slot: np.ndarray
    sparse: np.ndarray
    col_ptr: np.ndarray
    rows: np.ndarray
    positions: np.ndarray
    values: np.ndarray

    @classmethod
    def from_csr(cls, x: sparse.csr_matrix) -> GeneMajor:
        n_cells, n_genes = x.shape
        indptr = x.indptr.astype(np.int64, copy=False)
        indices = x.indices.astype(np.int64, copy=False)
        data = x.data.astype(np.float32, copy=False)
        counts = np.bincount(indices, minlength=n_genes)
        dense = dense_genes(counts, n_cells)
        slot = np.full(n_genes, -1, dtype=np.int64)
        slot[dense] = np.arange(len(dense))
        counts[dense] = 0
        n_sparse = int(counts.sum())
        col_ptr = np.zeros(n_genes + 1, dtype=np.int64)
        col_ptr[1:] = counts
        rows = np.empty(n_sparse, dtype=np.int64)
        positions = np.empty(n_sparse, dtype=np.int64)
        values = np.empty(n_sparse, dtype=np.float32)
        _group_by_gene(indptr, indices, data, slot, col_ptr, rows, positions, values)
        sparse_genes = np.flatnonzero(counts)
        return cls(n_cells, indptr, indices, data, dense, slot, sparse_genes, col_ptr, rows, positions, values)


def dense_genes(counts: np.ndarray, n_cells: int) -> np.ndarray:
    """Genes (indices) whose number of expressing cells in the batch makes a dense product the cheaper way."""
    return np.flatnonzero((counts >= DENSE_SHARE * n_cells) & (counts >= DENSE_MIN_CELLS))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _first_layer(col_ptr, rows, values, genes, weight_t, out, n_parts):  # pragma: no cover - compiled
    n_cells = out.shape[0]
    n_hidden = weight_t.shape[1]
    for part in numba.prange(n_parts):  # each task owns a range of cells: no write conflicts
        lo = part * n_cells // n_parts
        hi = (part + 1) * n_cells // n_parts
        for j in genes:
            w = weight_t[j]
            for p in range(col_ptr[j], col_ptr[j + 1]):
                i = rows[p]
                if i < lo or i >= hi:
                    continue
                value = values[p]
                row = out[i]
                for t in range(n_hidden):
                    row[t] += value * w[t]


@numba.njit(parallel=True, cache=True)
def _scatter_dense(indptr, indices, data, slot, out):  # pragma: no cover - compiled
    """``out[i, slot[j]] = x[i, j]`` for the dense genes (``out`` zero-filled: cells × dense genes)."""
    for i in numba.prange(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            k = slot[indices[p]]
            if k >= 0:
                out[i, k] = data[p]


@numba.njit(parallel=True, fastmath=True, cache=True)
def _gene_dots(col_ptr, rows, positions, genes, hidden, weight_t, out):  # pragma: no cover - compiled
    n_hidden = hidden.shape[1]
    for k in numba.prange(genes.shape[0]):
        j = genes[k]
        w = weight_t[j]
        for p in range(col_ptr[j], col_ptr[j + 1]):
            h = hidden[rows[p]]
            acc = np.float32(0.0)
            for t in range(n_hidden):
                acc += h[t] * w[t]
            out[positions[p]] = acc


@numba.njit(parallel=True, cache=True)
def _gather_dense(indptr, indices, slot, product, out):  # pragma: no cover - compiled
    """``out[p] = product[i, slot[j]]`` for the non-zeros ``p = (i, j)`` of the dense genes."""
    for i in numba.prange(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            k = slot[indices[p]]
            if k >= 0:
                out[p] = product[i, k]


def dense_weights(batch: GeneMajor, weight_t: torch.Tensor) -> torch.Tensor:
    """The weight rows of the batch's dense genes (``len(batch.dense)`` × hidden), gathered once per batch."""
    return weight_t.index_select(0, torch.from_numpy(batch.dense))


def sparse_dense_mm(batch: GeneMajor, weight_t: np.ndarray, dense_w: torch.Tensor) -> np.ndarray:
    """``x @ weight_t`` for the batch ``x`` (cells × genes) and dense ``weight_t`` (genes × hidden).

    Sparse genes gene by gene, each thread updating its own range of cells, so that a weight row is read once per
    batch and thread (measured 2.4× faster than cell by cell, which reads one weight row per non-zero); dense genes
    as one GEMM of their (zero-filled) columns with ``dense_w``.
    """
    out = np.zeros((batch.n_cells, weight_t.shape[1]), dtype=np.float32)
    if len(batch.sparse):
        _first_layer(batch.col_ptr, batch.rows, batch.values, batch.sparse, weight_t, out, numba.get_num_threads())
    if len(batch.dense):
        columns = np.zeros((batch.n_cells, len(batch.dense)), dtype=np.float32)
        _scatter_dense(batch.indptr, batch.indices, batch.data, batch.slot, columns)
        torch.from_numpy(out).addmm_(torch.from_numpy(columns), dense_w)
    return out


def sampled_rowdot(batch: GeneMajor, hidden: np.ndarray, weight_t: np.ndarray, dense_w: torch.Tensor) -> np.ndarray:
    """For every non-zero (i, j) of the batch, in CSR order: ``hidden[i] · weight_t[j]`` (cost ∝ non-zeros).

    Sparse genes one by one: a weight row serves every cell expressing that gene while the cells' ``hidden`` rows
    stay in cache. Dense genes: one GEMM ``hidden @ dense_wᵀ``, read at their non-zeros.
    """
    out = np.empty(len(batch.indices), dtype=np.float32)
    hidden = np.ascontiguousarray(hidden, dtype=np.float32)
    if len(batch.sparse):
        _gene_dots(batch.col_ptr, batch.rows, batch.positions, batch.sparse, hidden, weight_t, out)
    if len(batch.dense):
        product = torch.mm(torch.from_numpy(hidden), dense_w.T).numpy()
        _gather_dense(batch.indptr, batch.indices, batch.slot, product, out)
    return out
