"""``ss.pp.downsample_counts``: binomial thinning (oracle: the binomial law of each cell's total)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import sigscan as ss
from sigscan._thinning import thin_counts


def _replicated_cell(n_copies: int = 4000) -> sparse.csr_matrix:
    """One cell with 200 counts over 6 genes, repeated: each row is an independent draw."""
    row = np.array([[0, 120, 50, 0, 25, 5, 0]], dtype=np.float32)
    return sparse.csr_matrix(np.repeat(row, n_copies, axis=0))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_cell_totals_are_binomial(fraction):
    counts = _replicated_cell()
    thinned = thin_counts(counts, fraction, np.random.default_rng(0))
    totals = np.asarray(thinned.sum(axis=1)).ravel()
    n, p = 200, 1 - fraction
    mean, variance = n * p, n * p * (1 - p)
    standard_error = np.sqrt(variance / totals.size)
    assert abs(totals.mean() - mean) < 4 * standard_error
    # the sample variance of 4,000 draws is within ~5% of the binomial variance (4.5 standard errors here)
    assert totals.var(ddof=1) == pytest.approx(variance, rel=0.1)
    # genes are thinned independently: the per-gene counts are binomial too
    gene = np.asarray(thinned[:, 1].todense()).ravel()
    assert gene.mean() == pytest.approx(120 * p, abs=4 * np.sqrt(120 * p * (1 - p) / gene.size))


def test_never_adds_counts_and_keeps_sparsity_pattern():
    adata = ss.datasets.pbmc3k()[:200].copy()
    before = adata.X.copy()
    thinned = ss.pp.downsample_counts(adata, 0.3, random_state=1, copy=True).X
    assert sparse.issparse(thinned) and thinned.format == "csr"
    assert thinned.dtype == before.dtype
    difference = before - thinned
    assert difference.min() >= 0
    assert (thinned.data > 0).all()  # explicit zeros are dropped
    assert ((thinned != 0) > (before != 0)).nnz == 0  # no new non-zeros
    assert np.array_equal(thinned.data, np.round(thinned.data))
    assert 0.6 < thinned.sum() / before.sum() < 0.8


def test_fraction_zero_is_identity_and_input_unchanged(pbmc_small, snapshot, assert_unchanged):
    state = snapshot(pbmc_small)
    copy = ss.pp.downsample_counts(pbmc_small, 0.0, copy=True)
    assert_unchanged(pbmc_small, state)
    assert (copy.X != pbmc_small.X).nnz == 0
    assert copy.X is not pbmc_small.X and not np.shares_memory(copy.X.data, pbmc_small.X.data)
    ss.pp.downsample_counts(pbmc_small, 0.5, copy=True)
    assert_unchanged(pbmc_small, state)


def test_in_place_layer_key_added_and_seed(pbmc_small):
    original = pbmc_small.layers["counts"].copy()
    ss.pp.downsample_counts(pbmc_small, 0.5, layer="counts", key_added="thinned", random_state=3)
    assert (pbmc_small.layers["counts"] != original).nnz == 0
    again = thin_counts(original, 0.5, np.random.default_rng(3))
    assert (pbmc_small.layers["thinned"] != again).nnz == 0
    other = thin_counts(original, 0.5, np.random.default_rng(4))
    assert (other != again).nnz > 0
    assert pbmc_small.uns["sigscan"]["downsample_counts"]["fraction"] == 0.5
    ss.pp.downsample_counts(pbmc_small, 0.5)  # X replaced by a thinned matrix
    assert pbmc_small.X.sum() < original.sum()


def test_dense_input_gives_csr():
    dense = np.array([[3, 0, 2], [0, 0, 0], [10, 1, 0]], dtype=np.float32)
    thinned = thin_counts(dense, 0.5, np.random.default_rng(0))
    assert sparse.isspmatrix_csr(thinned)
    assert (thinned.toarray() <= dense).all()
    assert dense.sum() == 16  # input untouched


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_fraction_outside_unit_interval(pbmc_small, fraction):
    with pytest.raises(ValueError, match=r"outside \[0, 1\).*up to but not including 1"):
        ss.pp.downsample_counts(pbmc_small, fraction)


def test_non_counts_rejected(pbmc_small):
    pbmc_small.X = pbmc_small.X * 0.5
    with pytest.raises(ValueError, match="layer="):
        ss.pp.downsample_counts(pbmc_small, 0.5)
    with pytest.raises(KeyError, match="available layers"):
        ss.pp.downsample_counts(pbmc_small, 0.5, layer="raw")
