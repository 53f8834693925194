"""The attribution engine: the exact fast path against captum, method identities, IG completeness (SPEC 1.1, 1.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

import sigscan as ss
from sigscan import _engine
from sigscan._engine import FastPath, attribute_captum, gauss_legendre

CPU = torch.device("cpu")
MODELS = ["scimilarity", "scvi"]
METHODS = ["ig", "dl", "ixg"]


def _layer(adata, model, method, **kwargs):
    ss.pp.attributions(adata, model, method=method, key_added="attr", device="cpu", progress=False, **kwargs)
    return adata.layers["attr"], adata.uns["sigscan"]["attributions"]["attr"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_and_data", MODELS, indirect=True)
def test_fast_path_equals_captum(model_and_data, method, assert_attributions_close):
    model, adata = model_and_data
    fast, fast_info = _layer(adata.copy(), model, method, engine="fast")
    reference, reference_info = _layer(adata.copy(), model, method, engine="captum")
    assert fast_info["engine"] == "fast"
    assert reference_info["engine"] == "captum"
    # L2-normalised encoders: point-gradient methods default to the pre-normalisation head (SPEC 1.1)
    expected_head = "prenorm" if model.l2_normalized and method != "ig" else "reference"
    assert fast_info["head"] == reference_info["head"] == expected_head
    assert fast.nnz > 0
    assert_attributions_close(fast, reference)


@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_captum_other_head(scimilarity_model, pbmc_small, method, assert_attributions_close):
    """IG with the pre-normalisation head; DL/IxG with the reference head are compared raw (their scaled values
    are normalised noise, see test_reference_head_gradient_vanishes)."""
    if method == "ig":
        fast, _ = _layer(pbmc_small.copy(), scimilarity_model, "ig", engine="fast", head="prenorm")
        reference, _ = _layer(pbmc_small.copy(), scimilarity_model, "ig", engine="captum", head="prenorm")
        assert_attributions_close(fast, reference)
        return
    x = scimilarity_model.prepare(pbmc_small)
    with _engine.inference_mode(scimilarity_model.module, CPU):
        fast = FastPath(scimilarity_model, normalize=True, device=CPU)(x, method=method, n_steps=50).toarray()
        reference = attribute_captum(scimilarity_model, x, method=method, n_steps=50, normalize=True, device=CPU)
    # both are noise around zero of the same tiny magnitude
    assert np.abs(fast).max() < 1e-6
    assert np.abs(reference.toarray()).max() < 1e-6


def test_reference_head_gradient_vanishes(scimilarity_model, pbmc_small):
    """SPEC 1.1: on an L2-normalised encoder the summation head is maximal at x, so its gradient there is ~0,
    while the pre-normalisation head's gradient is of the size of a single latent dimension's gradient."""
    model = scimilarity_model
    x = torch.as_tensor(model.prepare(pbmc_small).toarray())

    def gradient(function):
        inputs = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(function(inputs).sum(), inputs)
        return grad.abs().median().item()

    with torch.no_grad():
        w_reference, w_prenorm = model.embed(x), model.embed(x, normalize=False)
    reference = gradient(lambda z: (model.embed(z) * w_reference).abs().sum(dim=1))
    prenorm = gradient(lambda z: (model.embed(z, normalize=False) * w_prenorm).abs().sum(dim=1))
    single_dimension = gradient(lambda z: model.embed(z)[:, 0])
    assert single_dimension > 1e-4
    assert reference < 1e-6 * single_dimension
    assert prenorm > 0.05 * single_dimension

    # the engine sees the same: raw IxG attributions with the reference head are ~1e-5 of the prenorm head's
    x_csr = model.prepare(pbmc_small)
    with _engine.inference_mode(model.module, CPU):
        raw_reference = FastPath(model, normalize=True, device=CPU)(x_csr, method="ixg", n_steps=1)
        raw_prenorm = FastPath(model, normalize=False, device=CPU)(x_csr, method="ixg", n_steps=1)
    assert np.median(np.abs(raw_reference.data)) < 1e-5 * np.median(np.abs(raw_prenorm.data))


@pytest.mark.parametrize("engine", ["fast", "captum"])
def test_deeplift_equals_gradient_times_input_for_prelu(scimilarity_model, pbmc_small, engine):
    """captum's DeepLIFT treats PReLU like a linear map (no rescale rule), so on SCimilarity DL == IxG."""
    x = scimilarity_model.prepare(pbmc_small)
    with _engine.inference_mode(scimilarity_model.module, CPU):
        if engine == "fast":
            path = FastPath(scimilarity_model, normalize=False, device=CPU)
            dl, ixg = path(x, method="dl", n_steps=1), path(x, method="ixg", n_steps=1)
        else:
            dl, ixg = (
                attribute_captum(scimilarity_model, x, method=m, n_steps=1, normalize=False, device=CPU)
                for m in ("dl", "ixg")
            )
    scale = np.abs(ixg.data).max()
    np.testing.assert_allclose(dl.toarray(), ixg.toarray(), rtol=0, atol=1e-5 * scale)


def test_deeplift_differs_from_gradient_times_input_for_relu(scvi_model, scvi_adata):
    """The scVI encoder has ReLUs, where the rescale rule applies: DL is not IxG (the identity above is no tautology)."""
    dl, _ = _layer(scvi_adata.copy(), scvi_model, "dl")
    ixg, _ = _layer(scvi_adata.copy(), scvi_model, "ixg")
    assert np.abs((dl - ixg).toarray()).max() > 1.0


@pytest.mark.parametrize("model_and_data", MODELS, indirect=True)
def test_ig_completeness(model_and_data):
    """Σ_j IG_j ≈ s(x) − s(0); the error shrinks with more steps (the heads have ReLU/abs kinks, so it is not 1e-7)."""
    model, adata = model_and_data
    result = ss.pp.completeness(adata, model, n_steps=50, device="cpu")
    assert list(result.index) == list(adata.obs_names)
    assert (result["delta"].abs() > 0).all()
    errors = result["relative_error"]
    assert errors.median() < 0.02
    assert errors.max() < 0.1
    finer = ss.pp.completeness(adata, model, n_steps=400, device="cpu")["relative_error"]
    assert finer.median() < errors.median() / 2
    coarse = ss.pp.completeness(adata, model, n_steps=2, device="cpu")["relative_error"]
    assert coarse.median() > errors.median()


def test_completeness_same_on_both_engines(scimilarity_model, pbmc_small):
    fast = ss.pp.completeness(pbmc_small, scimilarity_model, n_steps=20, engine="fast", device="cpu")
    reference = ss.pp.completeness(pbmc_small, scimilarity_model, n_steps=20, engine="captum", device="cpu")
    np.testing.assert_allclose(fast["delta"], reference["delta"], rtol=1e-5)
    np.testing.assert_allclose(fast["attribution_sum"], reference["attribution_sum"], rtol=1e-3)


def test_gauss_legendre_rule():
    nodes, weights = gauss_legendre(7)
    assert np.all((nodes > 0) & (nodes < 1))
    assert weights.sum() == pytest.approx(1.0)
    # exact for polynomials up to degree 2n - 1 on [0, 1]
    for degree in range(14):
        assert (weights * nodes**degree).sum() == pytest.approx(1 / (degree + 1), rel=1e-12)


def test_fast_path_chunking_does_not_change_results(scimilarity_model, pbmc_small, monkeypatch):
    """IG steps split over several calls give the same numbers."""
    whole, _ = _layer(pbmc_small.copy(), scimilarity_model, "ig", n_steps=10)
    monkeypatch.setattr(_engine, "_FAST_ROWS", 50)  # 48 cells: one step per call
    chunked, _ = _layer(pbmc_small.copy(), scimilarity_model, "ig", n_steps=10)
    np.testing.assert_allclose(chunked.toarray(), whole.toarray(), rtol=1e-5, atol=1e-5)


def test_batch_size_does_not_change_results(scvi_model, scvi_adata):
    one_batch, _ = _layer(scvi_adata.copy(), scvi_model, "ig", n_steps=10, batch_size=1000)
    small_batches, _ = _layer(scvi_adata.copy(), scvi_model, "ig", n_steps=10, batch_size=7)
    np.testing.assert_allclose(small_batches.toarray(), one_batch.toarray(), rtol=1e-4, atol=1e-4)


def test_module_state_restored_and_dropout_off(scimilarity_genes, pbmc_small):
    """Attributions run in eval mode with frozen weights; the module's own mode and flags are restored after."""
    model = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(32,), latent_dim=8, random_state=3)
    expected, _ = _layer(pbmc_small.copy(), model, "ixg")
    model.module.train()
    flags = [p.requires_grad for p in model.module.parameters()]
    in_train_mode, _ = _layer(pbmc_small.copy(), model, "ixg")
    assert model.module.training
    assert [p.requires_grad for p in model.module.parameters()] == flags
    np.testing.assert_array_equal(in_train_mode.toarray(), expected.toarray())


def test_captum_path_signed_sparsity(scvi_model, scvi_adata):
    """Signed attributions keep exactly the input's sparsity pattern on both paths."""
    x = scvi_model.prepare(scvi_adata)
    with _engine.inference_mode(scvi_model.module, CPU):
        fast = FastPath(scvi_model, normalize=False, device=CPU)(x, method="ig", n_steps=5)
        reference = attribute_captum(scvi_model, x, method="ig", n_steps=5, normalize=False, device=CPU)
    for attr in (fast, reference):
        assert sparse.isspmatrix_csr(attr)
        np.testing.assert_array_equal(attr.indptr, x.indptr)
        np.testing.assert_array_equal(attr.indices, x.indices)


@pytest.mark.parametrize("method", ["ig", "ixg"])
@pytest.mark.parametrize("model_and_data", MODELS, indirect=True)
def test_layer_matches_the_definition_computed_by_hand(model_and_data, method):
    """SPEC 1.1 written out with plain autograd (no captum, no engine): s(x') = Σ_k |f_k(x') f_k(x)|, IG with
    Gauss–Legendre nodes on [0, 1] (or the gradient at x for IxG), times x, absolute, scaled to 1000 per cell."""
    model, adata = model_and_data
    adata = adata[:6].copy()
    normalize = not model.l2_normalized or method == "ig"  # the default head: prenorm for IxG on SCimilarity
    x = torch.as_tensor(model.prepare(adata).toarray(), dtype=torch.float64)
    module = model.module.double()
    try:
        with torch.no_grad():
            w = model.embed(x, normalize=normalize)

        def gradient(points):
            points = points.clone().requires_grad_(True)
            s = (model.embed(points, normalize=normalize) * w).abs().sum()
            (grad,) = torch.autograd.grad(s, points)
            return grad

        if method == "ixg":
            attr = x * gradient(x)
        else:
            nodes, weights = np.polynomial.legendre.leggauss(50)
            attr = x * sum(0.5 * wt * gradient(0.5 * (node + 1) * x) for node, wt in zip(nodes, weights, strict=True))
    finally:
        module.float()
    expected = attr.abs().numpy()
    expected = 1000 * expected / expected.sum(axis=1, keepdims=True)
    # into the dataset's columns: model genes the data lacks have zero input, hence zero attribution
    columns = adata.var_names.get_indexer(model.gene_order)
    assert not expected[:, columns < 0].any()
    expected_layer = np.zeros(adata.shape)
    expected_layer[:, columns[columns >= 0]] = expected[:, columns >= 0]
    ss.pp.attributions(adata, model, method=method, key_added="attr", device="cpu", progress=False)
    np.testing.assert_allclose(adata.layers["attr"].toarray(), expected_layer, rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", ["ig", "dl", "ixg"])
@pytest.mark.parametrize("model_name", ["scimilarity_model", "scvi_model"])
def test_folded_chain_equals_autograd_fast_path(model_name, method, request, monkeypatch):
    """The hand-derived gradients of the folded affine chain equal autograd over the same rest of the network."""
    model = request.getfixturevalue(model_name)
    adata = request.getfixturevalue("pbmc_small" if model_name == "scimilarity_model" else "scvi_adata")
    head = "prenorm" if method != "ig" else "auto"
    chained, _ = _layer(adata.copy(), model, method, n_steps=10, head=head)
    monkeypatch.setattr(_engine, "compile_chain", lambda *args, **kwargs: None)
    autograd, _ = _layer(adata.copy(), model, method, n_steps=10, head=head)
    assert chained.nnz == autograd.nnz
    np.testing.assert_allclose(chained.toarray(), autograd.toarray(), rtol=1e-4, atol=2e-4)
