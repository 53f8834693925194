"""``ss.models.SCVI``: the encoder's true input, the embedding, saved folders (SPEC 1.2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import sparse

import sigscan as ss

scvi = pytest.importorskip("scvi")


def _embed(model, adata):
    with torch.no_grad():
        return model.embed(torch.as_tensor(model.prepare(adata).toarray())).numpy()


def test_input_is_log1p_of_counts(scvi_model, scvi_adata):
    assert scvi_model.log_variational
    x = scvi_model.prepare(scvi_adata)
    assert sparse.isspmatrix_csr(x) and x.dtype == np.float32
    assert list(scvi_model.gene_order) == list(scvi_adata.var_names)
    np.testing.assert_allclose(x.toarray(), np.log1p(scvi_adata.X.toarray()), rtol=1e-6)


def test_input_aligned_to_model_genes(scvi_model, scvi_adata):
    """Columns shuffled and some genes missing: the model still sees log1p counts in its own gene order."""
    rng = np.random.default_rng(0)
    keep = rng.permutation(scvi_adata.n_vars)[:350]
    shuffled = scvi_adata[:, keep].copy()
    x = scvi_model.prepare(shuffled).toarray()
    expected = np.log1p(scvi_adata.X.toarray())
    missing = np.setdiff1d(np.arange(scvi_adata.n_vars), keep)
    expected[:, missing] = 0
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_embedding_is_posterior_mean(trained_scvi, scvi_model, scvi_adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latent = trained_scvi.get_latent_representation(scvi_adata)
    assert scvi_model.embedding_dim == latent.shape[1] == 8
    np.testing.assert_allclose(_embed(scvi_model, scvi_adata), latent, rtol=1e-4, atol=1e-5)


def test_first_linear_split(scvi_model, scvi_adata):
    split = scvi_model.first_linear()
    x = torch.as_tensor(scvi_model.prepare(scvi_adata).toarray())
    with torch.no_grad():
        rest = split.rest(x @ split.weight.T + split.bias).numpy()
    np.testing.assert_allclose(rest, _embed(scvi_model, scvi_adata), rtol=1e-5, atol=1e-5)


def test_saved_folder_round_trip(scvi_dir, scvi_model, scvi_adata):
    loaded = ss.models.SCVI(scvi_dir)
    assert loaded.scvi_model.adata is None  # loaded without its training data
    assert list(loaded.gene_order) == list(scvi_model.gene_order)
    assert loaded.checksum == scvi_model.checksum
    np.testing.assert_array_equal(_embed(loaded, scvi_adata), _embed(scvi_model, scvi_adata))
    a, b = scvi_adata.copy(), scvi_adata.copy()
    ss.pp.attributions(a, scvi_model, method="ig", n_steps=5, device="cpu", progress=False)
    ss.pp.attributions(b, loaded, method="ig", n_steps=5, device="cpu", progress=False)
    np.testing.assert_array_equal(a.layers["attr_scvi_ig"].toarray(), b.layers["attr_scvi_ig"].toarray())


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.pt"):
        ss.models.SCVI(tmp_path)


def test_covariate_encoding_is_refused(scvi_adata):
    adata = scvi_adata.copy()
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
        model = scvi.model.SCVI(adata, n_hidden=8, n_latent=2, n_layers=1, encode_covariates=True)
    with pytest.raises(ValueError, match="encode_covariates=False"):
        ss.models.SCVI(model)


def test_without_log_variational_the_input_is_the_counts(scvi_adata):
    adata = scvi_adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scvi.model.SCVI.setup_anndata(adata)
        untrained = scvi.model.SCVI(adata, n_hidden=8, n_latent=2, n_layers=1, log_variational=False)
    model = ss.models.SCVI(untrained)
    assert not model.log_variational
    np.testing.assert_array_equal(model.prepare(adata).toarray(), adata.X.toarray())
    untrained.is_trained_ = True  # random weights suffice to compare the two forward passes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latent = untrained.get_latent_representation(adata)
    np.testing.assert_allclose(_embed(model, adata), latent, rtol=1e-4, atol=1e-5)


def test_small_models_lower_the_overlap_threshold(scvi_model):
    assert scvi_model.min_gene_overlap == 200  # half of the 400 model genes
    assert not scvi_model.l2_normalized
