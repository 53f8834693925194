"""Fixtures shared by the scoring tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import sigscan as ss


@pytest.fixture(scope="session")
def pbmc_counts() -> ad.AnnData:
    """PBMC3k, the 2,638 labelled cells, raw counts (CSR float32)."""
    adata = ss.datasets.pbmc3k()
    return adata[adata.obs["cell_type"] != "unknown"].copy()


@pytest.fixture(scope="session")
def pbmc_lognorm(pbmc_counts: ad.AnnData) -> ad.AnnData:
    """PBMC3k labelled cells, normalize_total(1e4) + log1p in X, counts in layers["counts"]."""
    adata = pbmc_counts.copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture
def tiny() -> ad.AnnData:
    """5 cells × 6 genes with ties, zeros and an all-zero cell (values are already 'log-normalised')."""
    x = np.array(
        [
            [5, 3, 3, 0, 1, 0],
            [0, 0, 0, 0, 0, 0],
            [1, 2, 0, 4, 0, 2],
            [2, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=np.float32,
    )
    return ad.AnnData(
        sparse.csr_matrix(x),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(5)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(6)]),
    )


@pytest.fixture(scope="session")
def pbmc_gene_sets() -> dict[str, list[str]]:
    return ss.datasets.gene_sets("panglaodb_immune")
