"""``ss.pp.embeddings``: equals the model's own forward pass on the aligned, prepared input; writes obsm + provenance."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import sigscan as ss


def _reference(model, adata) -> np.ndarray:
    """The plain way: dense prepared input through ``model.embed`` (normalised), one call."""
    x = model.prepare(adata)
    with torch.no_grad():
        return model.embed(torch.as_tensor(x.toarray()), normalize=True).numpy()


@pytest.mark.parametrize("model_and_data", ["scimilarity", "scvi"], indirect=True)
def test_embeddings_equal_the_model_forward_pass(model_and_data):
    model, adata = model_and_data
    counts = adata.X.copy()
    ss.pp.embeddings(adata, model, batch_size=7, device="cpu", progress=False)
    key = f"X_{model.name}"
    result = adata.obsm[key]
    assert result.dtype == np.float32
    assert result.shape == (adata.n_obs, model.embedding_dim)
    np.testing.assert_allclose(result, _reference(model, adata), rtol=1e-4, atol=1e-5)
    if model.l2_normalized:
        np.testing.assert_allclose(np.linalg.norm(result, axis=1), 1, rtol=1e-5)
    provenance = adata.uns["sigscan"]["embeddings"][key]
    assert provenance["weights_sha256"] == model.checksum
    assert (adata.X != counts).nnz == 0  # the counts are untouched


def test_embeddings_scgpt_match_forward_and_copy(tmp_path):
    genes = pd.Index([f"GENE{i}" for i in range(30)])
    model = ss.models.ScGPT.random(genes, embsize=16, nheads=2, d_hid=16, nlayers=1, random_state=0)
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.poisson(1.0, size=(9, 30)).astype(np.float32), var=pd.DataFrame(index=genes))
    result = ss.pp.embeddings(adata, model, key_added="emb", batch_size=4, device="cpu", progress=False, copy=True)
    assert "emb" not in adata.obsm  # copy=True leaves the input alone
    np.testing.assert_allclose(result.obsm["emb"], _reference(model, adata), rtol=1e-4, atol=1e-5)


def test_embeddings_from_backed_file_equal_in_memory(pbmc_small, scimilarity_model, tmp_path):
    path = tmp_path / "cells.h5ad"
    pbmc_small.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    ss.pp.embeddings(backed, scimilarity_model, batch_size=10, device="cpu", progress=False)
    ss.pp.embeddings(pbmc_small, scimilarity_model, batch_size=10, device="cpu", progress=False)
    np.testing.assert_array_equal(backed.obsm["X_scimilarity"], pbmc_small.obsm["X_scimilarity"])


def test_embeddings_refuse_log_data_and_leave_adata_unchanged(pbmc_small, scimilarity_model):
    pbmc_small.X.data = np.log1p(pbmc_small.X.data)
    with pytest.raises(ValueError, match="raw counts"):
        ss.pp.embeddings(pbmc_small, scimilarity_model, device="cpu", progress=False)
    assert "X_scimilarity" not in pbmc_small.obsm
