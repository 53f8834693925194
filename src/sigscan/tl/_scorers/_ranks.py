"""Vectorised within-cell ranks of a few genes, for a whole chunk of cells at once.

Rank-based scorers (UCell, JASMINE, AUCell) need, for every cell, the rank of each gene-set gene among that cell's
expressed genes. Instead of ranking every gene of every cell, each chunk is sorted once with a composite 64-bit key
``(cell, value)`` (the float32 bit pattern mapped to an order-preserving unsigned integer); the rank of any entry is
then two binary searches. Zeros are never stored, so they are handled analytically: every zero is unexpressed and
ranks after all expressed genes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

_SIGN = np.uint32(0x80000000)


def _orderable(values: np.ndarray) -> np.ndarray:
    """Map float32 values to uint32 keys with the same order (IEEE-754 trick; -0.0 and 0.0 never occur here)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN).astype(np.uint64)


@dataclass
class ChunkRanks:
    """Sorted keys of one CSR chunk (sorted indices, no stored zeros) and lookups of gene entries in it."""

    chunk: sparse.csr_matrix

    def __post_init__(self) -> None:
        chunk = self.chunk
        self.n_cells, self.n_genes = chunk.shape
        self.nnz_per_cell = np.diff(chunk.indptr).astype(np.int64)
        self.cell_of_entry = np.repeat(np.arange(self.n_cells, dtype=np.uint64), self.nnz_per_cell)
        self._value_keys = (self.cell_of_entry << np.uint64(32)) | _orderable(chunk.data)
        self.sorted_value_keys = np.sort(self._value_keys)
        # (cell, gene) keys are already sorted: rows are contiguous and indices sorted within rows
        self.position_keys = self.cell_of_entry.astype(np.int64) * self.n_genes + chunk.indices

    def lookup(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``columns`` (sorted first) in every cell: ``(expressed, values)``, both cells × len(columns)."""
        columns = np.sort(np.asarray(columns, dtype=np.int64))  # sorted queries: cache-friendly binary searches
        cells = np.arange(self.n_cells, dtype=np.int64)[:, None]
        queries = (cells * self.n_genes + np.asarray(columns, dtype=np.int64)[None, :]).ravel()
        if self.position_keys.size == 0:
            shape = (self.n_cells, len(columns))
            return np.zeros(shape, dtype=bool), np.zeros(shape, dtype=np.float32)
        where = np.searchsorted(self.position_keys, queries)
        where_clipped = np.minimum(where, self.position_keys.size - 1)
        expressed = self.position_keys[where_clipped] == queries
        values = np.where(expressed, self.chunk.data[where_clipped], 0).astype(np.float32)
        shape = (self.n_cells, len(columns))
        return expressed.reshape(shape), values.reshape(shape)

    def counts_around(self, cells: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For expressed entries ``(cell, value)``: how many expressed genes of that cell are lower, equal, higher."""
        cells = np.asarray(cells, dtype=np.uint64)
        keys = (cells << np.uint64(32)) | _orderable(values)
        left = np.searchsorted(self.sorted_value_keys, keys, side="left")
        right = np.searchsorted(self.sorted_value_keys, keys, side="right")
        starts = self.chunk.indptr[:-1][cells.astype(np.int64)]
        stops = self.chunk.indptr[1:][cells.astype(np.int64)]
        return left - starts, right - left, stops - right

    def descending_ordinal_ranks(self, columns: np.ndarray) -> np.ndarray:
        """Ranks 1..n_genes of ``columns`` (sorted first) in every cell by decreasing value, ties in gene order.

        As ``scipy.stats.rankdata(-row, method="ordinal")``; cells × len(columns), int64.
        """
        columns = np.sort(np.asarray(columns, dtype=np.int64))
        expressed, _ = self.lookup(columns)
        cells = np.broadcast_to(np.arange(self.n_cells)[:, None], expressed.shape)
        ranks = np.empty(expressed.shape, dtype=np.int64)
        # expressed genes: higher values first; among equal values, lower gene index first
        # a stable sort keeps CSR order (gene order within a cell) among equal values
        descending = (self.cell_of_entry << np.uint64(32)) | (np.uint64(0xFFFFFFFF) - _orderable(self.chunk.data))
        order = np.argsort(descending, kind="stable")
        rank_of_entry = np.empty(order.size, dtype=np.int64)
        rank_of_entry[order] = (
            np.arange(order.size) - self.chunk.indptr[:-1][self.cell_of_entry[order].astype(np.int64)]
        )
        queries = (cells.astype(np.int64) * self.n_genes + columns[None, :]).ravel()
        where = np.searchsorted(self.position_keys, queries).reshape(expressed.shape)
        ranks[expressed] = rank_of_entry[where[expressed]] + 1
        # unexpressed genes come after the cell's expressed genes, in gene order among themselves
        nnz_before = where - self.chunk.indptr[:-1][:, None]
        zero_rank = self.nnz_per_cell[:, None] + (columns[None, :] - nnz_before) + 1
        ranks[~expressed] = zero_rank[~expressed]
        return ranks
