import warnings

import anndata as ad
import numpy as np
import pytest

import sigscan as ss

LAYER = "attr_scimilarity_ixg"


@pytest.fixture(scope="session")
def model():
    genes = ss.datasets.pbmc3k().var_names
    return ss.models.SCimilarity.random(genes, hidden_dim=(32,), latent_dim=8)


def _attributed(adata: ad.AnnData, model) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.pp.attributions(adata, model, method="ixg", progress=False)
    return adata


@pytest.fixture(scope="session")
def pbmc(model):
    """240 PBMC3k cells with an ixg attribution layer (data genes = model genes)."""
    return _attributed(ss.datasets.pbmc3k()[:240].copy(), model)


@pytest.fixture(scope="session")
def kang(model):
    """200 Kang cells (1,267 genes, a subset of the model's) with an ixg attribution layer."""
    adata = ss.datasets.kang_ifnb()
    rng = np.random.default_rng(0)
    adata = adata[np.sort(rng.choice(adata.n_obs, 200, replace=False))].copy()
    return _attributed(adata, model)


@pytest.fixture(scope="session")
def gene_set(pbmc, kang):
    """40 genes present in both datasets, with non-zero attributions in many cells."""
    shared = kang.var_names.intersection(pbmc.var_names)
    density = np.asarray((pbmc[:, shared].layers[LAYER] > 0).sum(axis=0)).ravel()
    return list(shared[np.argsort(-density, kind="stable")[:40]])
