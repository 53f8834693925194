"""scGPT's per-cell quantile binning of expression values, made deterministic.

The published rule (``scgpt.preprocess.binning`` with ``n_bins=51``), for one cell:

- the cell's non-zero values ``v`` define ``n_bins - 1`` edges ``np.quantile(v, np.linspace(0, 1, n_bins - 1))``;
- each value gets ``left = np.digitize(v, edges)`` (edges ``<= v``) and ``right = np.digitize(v, edges, right=True)``
  (edges ``< v``); the bin is ``ceil(u · (right − left) + left)`` with ``u ~ U[0, 1)``, i.e. a value that equals
  ``k = left − right`` edges is spread uniformly over the bins ``right + 1 … left``; values equal to no edge keep
  ``left``. Bins run from 1 to ``n_bins − 1``; zeros stay 0.

The published code draws ``u`` with the global, unseeded NumPy generator. Here ``u`` comes from a generator seeded
by ``seed`` and a hash of the cell's expressed genes (their positions in the model's gene order), so a cell is binned
identically in every run, whatever the batch it is in or the order of the cells.

The rule depends on the values only through within-cell comparisons with interpolated quantiles, so it is meant to
be invariant to strictly increasing transforms. Floating-point rounding of the interpolation can make an edge land
exactly on a value for one transform and not for another; raw counts (what the published embedding path bins) and
normalised or log-normalised values therefore give the same bins for almost all, not all, values.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import sparse

#: number of bins of the published models (bin 0 holds zeros, 1 … 50 the expressed genes)
N_BINS = 51


def quantile_edges(values: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The ``n_bins - 1`` quantile edges of one cell's non-zero values (NumPy's default linear quantiles)."""
    return np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, n_bins - 1))


def digitize_bounds(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)``: for every value, the number of edges ``<=`` it and the number ``<`` it."""
    values = np.asarray(values, dtype=np.float64)
    return np.digitize(values, edges), np.digitize(values, edges, right=True)


def tie_uniforms(genes: np.ndarray, seed: int) -> np.ndarray:
    """One uniform draw per expressed gene, from a generator keyed by ``seed`` and the cell's expressed genes."""
    digest = hashlib.blake2b(np.ascontiguousarray(genes, dtype=np.int64).tobytes(), digest_size=16)
    key = int.from_bytes(digest.digest(), "little")
    generator = np.random.default_rng([int(seed) & 0xFFFFFFFF, key & (2**64 - 1), key >> 64])
    return generator.random(len(genes))


def bin_cell(genes: np.ndarray, values: np.ndarray, *, seed: int = 0, n_bins: int = N_BINS) -> np.ndarray:
    """Deterministic bins of one cell's non-zero ``values`` at gene positions ``genes``."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    left, right = digitize_bounds(values, quantile_edges(values, n_bins))
    if not (left - right > 1).any():  # a value equal to a single edge has one possible bin: no draw needed
        return left.astype(np.int64)
    uniforms = tie_uniforms(genes, seed)
    return np.ceil(uniforms * (right - left) + left).astype(np.int64)


def bin_matrix(values: sparse.csr_matrix, *, seed: int = 0, n_bins: int = N_BINS) -> sparse.csr_matrix:
    """Bin every row of a non-negative CSR matrix (cells × genes); returns CSR float32 with the same sparsity.

    Explicit zeros are dropped first; the input is not modified.
    """
    if n_bins < 3:
        raise ValueError(f"n_bins must be at least 3 (bin 0 for zeros and two or more expression bins), not {n_bins}.")
    x = sparse.csr_matrix(values, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    if x.nnz and x.data.min() < 0:
        raise ValueError(
            f"scGPT binning needs non-negative expression values; found a minimum of {x.data.min():g}. "
            "Pass raw counts (or normalised, unscaled values) via layer=."
        )
    data = np.empty(x.nnz, dtype=np.float32)
    for i in range(x.shape[0]):
        lo, hi = x.indptr[i], x.indptr[i + 1]
        data[lo:hi] = bin_cell(x.indices[lo:hi], x.data[lo:hi], seed=seed, n_bins=n_bins)
    return sparse.csr_matrix((data, x.indices.copy(), x.indptr.copy()), shape=x.shape)
