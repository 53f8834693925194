"""tl.concepts: the Top-K sparse autoencoder (planted programs, sparsity, determinism, storage, bad input)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import optimize, sparse
from sklearn.metrics import roc_auc_score

import sigscan as ss
from sigscan.tl._concepts import TopKSAE, geometric_median


def test_recovers_one_concept_per_planted_program(planted_concepts):
    adata, _, on = planted_concepts
    activations = adata.obsm["concepts"].toarray()
    for program in range(on.shape[1]):
        best = max(roc_auc_score(on[:, program], activations[:, c]) for c in range(activations.shape[1]))
        assert best >= 0.95, f"program {program}: best concept AUROC {best:.3f}"


def test_outputs_and_topk_sparsity(planted_concepts, planted_sae):
    adata, _, _ = planted_concepts
    codes = adata.obsm["concepts"]
    assert sparse.isspmatrix_csr(codes) and codes.dtype == np.float32
    assert codes.shape == (adata.n_obs, planted_sae["n_concepts"])
    assert codes.getnnz(axis=1).max() <= planted_sae["k"]
    assert (codes.data > 0).all()
    record = adata.uns["sigscan"]["concepts"]
    assert set(record) >= {"weights", "scale", "use_rep", "params", "training_curve", "variance_explained"}
    assert record["use_rep"] == "X_linear" and "X_linear" in adata.obsm
    assert record["params"]["n_epochs"] == planted_sae["n_epochs"]
    assert len(record["training_curve"]["mse"]) == planted_sae["n_epochs"]
    assert record["training_curve"]["mse"][-1] < record["training_curve"]["mse"][0]
    norms = np.linalg.norm(record["weights"]["W_dec"], axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert 0.5 < record["variance_explained"] <= 1.0
    assert 0.0 <= record["dead_fraction"] < 1.0


def test_variance_explained_and_dead_fraction_recomputed(planted_concepts):
    adata, _, _ = planted_concepts
    record = adata.uns["sigscan"]["concepts"]
    sae = ss.tl.ConceptModel.from_uns(adata)
    x = adata.obsm["X_linear"]
    reconstruction = sae.reconstruct(x)
    fve = 1 - ((x - reconstruction) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert record["variance_explained"] == pytest.approx(fve, rel=1e-4)
    used = np.unique(adata.obsm["concepts"].indices).size
    assert record["dead_fraction"] == pytest.approx(1 - used / sae.n_concepts)
    # encode() equals what the function stored
    assert (sae.encode(x) != adata.obsm["concepts"]).nnz == 0


def test_bit_identical_for_the_same_random_state(planted, planted_sae):
    adata, model, _ = planted
    ss.pp.embeddings(adata, model, progress=False)
    settings = {**planted_sae, "n_epochs": 3}
    results = []
    for seed in (0, 0, 1):
        ss.tl.concepts(adata, use_rep="X_linear", random_state=seed, **settings)
        results.append(adata.uns["sigscan"]["concepts"]["weights"])
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert np.array_equal(results[0][name], results[1][name]), name
    assert not np.array_equal(results[0]["W_dec"], results[2]["W_dec"])


def test_concepts_from_reuses_the_trained_dictionary(planted_concepts, _planted):
    trained, model, _ = planted_concepts
    new = _planted[0][:50].copy()
    ss.tl.concepts(new, model, concepts_from=trained)
    assert new.uns["sigscan"]["concepts"]["use_rep"] == "X_linear"
    expected = trained.obsm["concepts"][:50]
    got = new.obsm["concepts"]
    np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-5, atol=1e-6)
    for name, value in trained.uns["sigscan"]["concepts"]["weights"].items():
        assert np.array_equal(new.uns["sigscan"]["concepts"]["weights"][name], value)
    # a ConceptModel works too, and a few cells are enough when encoding
    tiny = _planted[0][:3].copy()
    ss.tl.concepts(tiny, model, concepts_from=ss.tl.ConceptModel.from_uns(trained))
    assert tiny.obsm["concepts"].shape == (3, 8)


def test_h5ad_round_trip(planted_concepts, tmp_path):
    adata, _, _ = planted_concepts
    adata.write_h5ad(tmp_path / "concepts.h5ad")
    back = ad.read_h5ad(tmp_path / "concepts.h5ad")
    sae = ss.tl.ConceptModel.from_uns(back)
    assert (sae.encode(back.obsm["X_linear"]) != adata.obsm["concepts"]).nnz == 0
    assert back.uns["sigscan"]["concepts_genes"].shape == adata.uns["sigscan"]["concepts_genes"].shape


def test_geometric_median_matches_a_numerical_minimiser():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(size=(40, 3)), rng.normal(8, 1, size=(5, 3))])  # outliers pull the mean, not the median
    median = geometric_median(x)
    best = optimize.minimize(
        lambda p: np.linalg.norm(x - p, axis=1).sum(),
        x.mean(0),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000},
    )
    np.testing.assert_allclose(median, best.x, atol=1e-4)
    assert np.linalg.norm(median) < np.linalg.norm(x.mean(0))


def test_decoder_gradient_parallel_component_removed():
    sae = TopKSAE(5, 7, 2)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(5, 7))
    sae.normalize_decoder()
    sae.W_dec.grad = torch.randn(5, 7)
    sae.remove_parallel_gradient()
    np.testing.assert_allclose((sae.W_dec.grad * sae.W_dec).sum(0).detach().numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_concepts": 8, "k": 8}, ValueError, "smaller than n_concepts"),
        ({"n_concepts": 8, "k": 0}, ValueError, "k must be a positive integer"),
        ({"use_rep": "X_missing"}, KeyError, "no 'X_missing'"),
        ({"b_dec_init": "median"}, ValueError, "b_dec_init"),
        ({}, ValueError, "Pass use_rep= .* or model="),
    ],
)
def test_bad_arguments_leave_adata_unchanged(planted, snapshot, assert_unchanged, kwargs, error, match):
    adata, _, _ = planted
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        ss.tl.concepts(adata, **({"use_rep": "X_linear"} if "use_rep" not in kwargs and kwargs else {}), **kwargs)
    assert_unchanged(adata, before)


def test_too_few_cells_and_foreign_model(planted, snapshot, assert_unchanged):
    adata, model, _ = planted
    few = adata[:5].copy()
    before = snapshot(few)
    with pytest.raises(ValueError, match="at least 10"):
        ss.tl.concepts(few, model, n_concepts=4, k=1)
    assert_unchanged(few, before)
    foreign = ss.models.TorchEncoder(torch.nn.Sequential(torch.nn.Linear(30, 4)), [f"OTHER{i}" for i in range(30)])
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"(?i)overlap|genes"):
        ss.tl.concepts(adata, foreign, n_concepts=4, k=1)
    assert_unchanged(adata, before)
