"""tl.concept_genes: planted genes on top, the counterfactual fast path equals brute force, IG is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import sigscan as ss
from sigscan._engine import ModelSettings
from sigscan.tl._concept_genes import _ConceptReadout, _Explainer


def _program_concepts(adata, on):
    activations = adata.obsm["concepts"].toarray()
    return [
        int(np.argmax([roc_auc_score(on[:, p], activations[:, c]) for c in range(activations.shape[1])]))
        for p in range(on.shape[1])
    ]


@pytest.mark.parametrize("method", ["counterfactual", "ig"])
def test_planted_genes_rank_on_top(planted_concepts, method):
    adata, model, on = planted_concepts
    concepts = _program_concepts(adata, on)
    if method == "ig":
        ss.tl.concept_genes(adata, model, concepts=concepts, method="ig", n_cells=30, progress=False)
    table = adata.uns["sigscan"]["concepts_genes"]
    assert list(table.columns) == ["concept", "gene", "score", "frac_cells", "rank"]
    for p, c in enumerate(concepts):
        planted = set(adata.uns["programs"][f"PROGRAM{p}"])
        top = table.loc[table["concept"] == c].sort_values("rank")["gene"].head(len(planted))
        # a random linear encoder can map a planted gene against its program's direction: most, not all, on top
        assert len(planted & set(top)) >= len(planted) - 2, (p, c, list(top))
        assert set(top[:3]) <= planted, (p, c, list(top))


def test_outputs(planted_concepts):
    adata, _, _ = planted_concepts
    scores = adata.varm["concepts_genes"]
    assert scores.dtype == np.float32 and scores.shape == (adata.n_vars, 8)
    assert adata.var["concepts_in_model"].all()
    table = adata.uns["sigscan"]["concepts_genes"]
    assert (table["score"] > 0).all() and table["frac_cells"].between(0, 1).all()
    for c, group in table.groupby("concept"):
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        np.testing.assert_allclose(group["score"], scores[adata.var_names.get_indexer(group["gene"]), c])
    params = adata.uns["sigscan"]["concepts_genes_params"]
    assert params["method"] == "counterfactual" and params["n_cells"] == 60


def test_subset_of_concepts_keeps_the_others(planted_concepts):
    adata, model, _ = planted_concepts
    before = adata.varm["concepts_genes"].copy()
    ss.tl.concept_genes(adata, model, concepts=[1], method="ig", n_cells=5, progress=False)
    after = adata.varm["concepts_genes"]
    np.testing.assert_array_equal(np.delete(after, 1, axis=1), np.delete(before, 1, axis=1))
    assert not np.array_equal(after[:, 1], before[:, 1])


def _explainer_setup(model, adata, n_concepts=6, k=2):
    ss.tl.concepts(adata, model, n_concepts=n_concepts, k=k, n_epochs=2, batch_size=16, device="cpu")
    sae = ss.tl.ConceptModel.from_uns(adata)
    settings = ModelSettings.resolve(model, adata.var, device="cpu")
    x = settings.model_input(adata.X[:3])
    readout = _ConceptReadout(sae.module(), sae.scale, model.l2_normalized)
    return settings, x, readout


def _brute_force_knockouts(model, readout, x, concepts):
    """Plain loop: for every stored entry, zero it in the dense input and run the full model and the dictionary."""
    dense = torch.as_tensor(x.toarray())
    with torch.no_grad():
        base = readout(model.embed(dense, normalize=False))[:, concepts]
        out = []
        for i in range(x.shape[0]):
            for j in x.indices[x.indptr[i] : x.indptr[i + 1]]:
                knocked = dense[i : i + 1].clone()
                knocked[0, j] = 0
                out.append((base[i] - readout(model.embed(knocked, normalize=False))[0, concepts]).numpy())
    return np.asarray(out)


@pytest.mark.parametrize("model_and_data", ["scimilarity", "scvi"], indirect=True)
def test_counterfactual_fast_path_equals_brute_force(model_and_data):
    model, adata = model_and_data
    settings, x, readout = _explainer_setup(model, adata)
    concepts = np.arange(6)
    with settings.inference():
        fast = _Explainer(model, readout, settings.device, fast=True).knockouts(x, concepts)
        general = _Explainer(model, readout, settings.device, fast=False).knockouts(x[:1], concepts)
        brute = _brute_force_knockouts(model, readout, x, concepts)
    assert fast.shape == (x.nnz, 6)
    np.testing.assert_allclose(fast, brute, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(general, brute[: x.indptr[1]], atol=2e-5, rtol=1e-4)
    assert np.abs(brute).max() > 1e-3  # the knock-outs do move the concepts


def test_ig_fast_path_equals_captum_and_is_complete(scimilarity_model, pbmc_small):
    settings, x, readout = _explainer_setup(scimilarity_model, pbmc_small)
    concept = np.array([0, 1, 2])
    with settings.inference():
        fast = _Explainer(scimilarity_model, readout, settings.device, fast=True)
        reference = _Explainer(scimilarity_model, readout, settings.device, fast=False)
        a = fast.integrated_gradients(x, concept, 64)
        b = reference.integrated_gradients(x, concept, 64)
        dense = torch.as_tensor(x.toarray())
        with torch.no_grad():
            at_x = readout(scimilarity_model.embed(dense, normalize=False))[np.arange(3), concept].numpy()
            at_0 = readout(scimilarity_model.embed(torch.zeros_like(dense), normalize=False))[np.arange(3), concept]
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-3)
    sums = np.add.reduceat(a, x.indptr[:-1])
    # completeness holds up to the quadrature error of 64 steps over the network's kinks (ReLU / PReLU)
    np.testing.assert_allclose(sums, at_x - at_0.numpy(), atol=2e-2 * max(1.0, np.abs(at_x).max()))


def test_bad_input_is_a_clear_error(planted_concepts, scimilarity_model, snapshot, assert_unchanged):
    adata, model, _ = planted_concepts
    before = snapshot(adata)
    with pytest.raises(ValueError, match="out of range"):
        ss.tl.concept_genes(adata, model, concepts=[99], progress=False)
    with pytest.raises(ValueError, match="Unknown method"):
        ss.tl.concept_genes(adata, model, method="shap", progress=False)
    with pytest.raises(KeyError, match=r"run ss\.tl\.concepts"):
        ss.tl.concept_genes(adata, model, key="other", progress=False)
    with pytest.raises(ValueError, match="dimensions"):
        ss.tl.concept_genes(adata, scimilarity_model, progress=False)
    assert_unchanged(adata, before)
