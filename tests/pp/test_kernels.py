"""The CPU fast-path kernels against scipy: first layer ``x Wᵀ`` and the gene-gradient gather, dense split on and off."""

import numpy as np
import pytest
import torch
from scipy import sparse

from sigscan._engine import _kernels


def _batch(rng, n_cells, n_genes, *, frequent=5, empty_rows=(0,)):
    """Random counts with a few genes expressed in (almost) every cell and some empty cells."""
    x = sparse.random(n_cells, n_genes, density=0.05, random_state=rng, format="lil", dtype=np.float32)
    x[:, :frequent] = rng.integers(1, 5, size=(n_cells, frequent)).astype(np.float32)
    for row in empty_rows:
        x[row, :] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    # unsorted indices within rows, as the engine receives them from the gene alignment
    order = np.concatenate(
        [rng.permutation(np.arange(lo, hi)) for lo, hi in zip(x.indptr[:-1], x.indptr[1:], strict=True)]
    )
    return sparse.csr_matrix((x.data[order], x.indices[order], x.indptr), shape=x.shape)


@pytest.mark.parametrize("share", [0.25, 2.0])  # dense split on, off
def test_kernels_equal_scipy(share, monkeypatch):
    monkeypatch.setattr(_kernels, "DENSE_SHARE", share)
    rng = np.random.default_rng(0)
    x = _batch(rng, 120, 300)
    weight_t = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    hidden = rng.standard_normal((120, 64)).astype(np.float32)
    batch = _kernels.GeneMajor.from_csr(x)
    assert (len(batch.dense) > 0) == (share < 1)
    assert not set(batch.dense) & set(batch.sparse)
    np.testing.assert_array_equal(np.sort(np.r_[batch.dense, batch.sparse]), np.unique(x.indices))
    dense_w = _kernels.dense_weights(batch, weight_t)

    u = _kernels.sparse_dense_mm(batch, weight_t.numpy(), dense_w)
    np.testing.assert_allclose(u, x @ weight_t.numpy(), rtol=1e-4, atol=1e-4)

    dots = _kernels.sampled_rowdot(batch, hidden, weight_t.numpy(), dense_w)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    expected = np.einsum("nh,nh->n", hidden[rows], weight_t.numpy()[x.indices])  # CSR order
    np.testing.assert_allclose(dots, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("share", [0.25, 2.0])  # dense split on, off
def test_group_by_gene_equals_tocsc(share, monkeypatch):
    """The grouped entries are exactly the sparse genes' entries, in ``tocsc`` order."""
    monkeypatch.setattr(_kernels, "DENSE_SHARE", share)
    rng = np.random.default_rng(1)
    x = _batch(rng, 50, 80, empty_rows=(0, 7, 49))
    batch = _kernels.GeneMajor.from_csr(x)
    assert (len(batch.dense) > 0) == (share < 1)
    np.testing.assert_array_equal(batch.slot[batch.dense], np.arange(len(batch.dense)))
    # CSR positions + 1 (0 is dropped as an explicit zero below)
    by_gene = sparse.csr_matrix((np.arange(1, x.nnz + 1), x.indices, x.indptr), shape=x.shape).tocsc()
    by_gene[:, batch.dense] = 0  # dense genes stay in the CSR arrays
    by_gene.eliminate_zeros()
    by_gene.sort_indices()
    np.testing.assert_array_equal(batch.col_ptr, by_gene.indptr)
    np.testing.assert_array_equal(batch.rows, by_gene.indices)
    np.testing.assert_array_equal(batch.positions, by_gene.data - 1)
    np.testing.assert_array_equal(batch.values, x.data[by_gene.data - 1])


def test_small_batches_stay_sparse():
    """Below ``DENSE_MIN_CELLS`` cells every gene goes through the sparse kernels."""
    counts = np.array([8, 8, 3, 0])
    assert len(_kernels.dense_genes(counts, 8)) == 0
    assert list(_kernels.dense_genes(np.array([40, 10, 0]), 40)) == [0]


def test_empty_batch():
    x = sparse.csr_matrix((3, 10), dtype=np.float32)
    batch = _kernels.GeneMajor.from_csr(x)
    weight_t = torch.ones(10, 4)
    dense_w = _kernels.dense_weights(batch, weight_t)
    np.testing.assert_array_equal(_kernels.sparse_dense_mm(batch, weight_t.numpy(), dense_w), np.zeros((3, 4)))
    assert _kernels.sampled_rowdot(batch, np.ones((3, 4), np.float32), weight_t.numpy(), dense_w).shape == (0,)
