"""``ss.models.SCimilarity``: published folder format, input preparation, architecture (SPEC 1.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scanpy as sc
import torch
from scipy import sparse

import sigscan as ss


def _embed(model, adata, normalize=True):
    with torch.no_grad():
        return model.embed(torch.as_tensor(model.prepare(adata).toarray()), normalize=normalize).numpy()


def test_folder_round_trip(scimilarity_model, pbmc_small, tmp_path):
    folder = scimilarity_model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.ckpt", "gene_order.tsv", "layer_sizes.json"]
    loaded = ss.models.SCimilarity(folder)
    assert list(loaded.gene_order) == list(scimilarity_model.gene_order)
    assert loaded.embedding_dim == 16
    assert loaded.checksum == scimilarity_model.checksum
    np.testing.assert_array_equal(_embed(loaded, pbmc_small), _embed(scimilarity_model, pbmc_small))
    # and the attribution layers are identical
    a, b = pbmc_small.copy(), pbmc_small.copy()
    ss.pp.attributions(a, scimilarity_model, method="ixg", device="cpu", progress=False)
    ss.pp.attributions(b, loaded, method="ixg", device="cpu", progress=False)
    np.testing.assert_array_equal(
        a.layers["attr_scimilarity_ixg"].toarray(), b.layers["attr_scimilarity_ixg"].toarray()
    )


def test_published_folder_format(scimilarity_model, tmp_path):
    """layer_sizes.json maps every state_dict entry to its shape (what SCimilarity's trainer writes);
    encoder.ckpt holds {"state_dict": ...}; gene_order.tsv one gene per line."""
    folder = scimilarity_model.save(tmp_path / "model")
    n_genes = scimilarity_model.n_genes
    layer_sizes = json.loads((folder / "layer_sizes.json").read_text())
    state = scimilarity_model.module.state_dict()
    assert layer_sizes == {name: list(tensor.shape) for name, tensor in state.items()}
    assert layer_sizes["network.0.1.weight"] == [64, n_genes]
    assert layer_sizes["network.0.2.running_mean"] == [64]
    assert layer_sizes["network.0.2.num_batches_tracked"] == []
    assert layer_sizes["network.0.3.weight"] == [1]  # PReLU
    assert layer_sizes["network.1.1.weight"] == [64, 64]
    assert layer_sizes["network.2.weight"] == [16, 64]
    checkpoint = torch.load(folder / "encoder.ckpt", weights_only=False)
    assert set(checkpoint) == {"state_dict"}
    assert (folder / "gene_order.tsv").read_text().splitlines() == list(scimilarity_model.gene_order)


def test_architecture_inferred_from_layer_sizes(scimilarity_genes, tmp_path):
    model = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(48, 32, 24), latent_dim=8, random_state=5)
    loaded = ss.models.SCimilarity(model.save(tmp_path / "m"))
    assert [layer[1].out_features for layer in loaded.module.network[:-1]] == [48, 32, 24]
    assert loaded.embedding_dim == 8
    assert loaded.checksum == model.checksum


def test_folder_errors(scimilarity_model, tmp_path):
    folder = scimilarity_model.save(tmp_path / "model")
    (folder / "layer_sizes.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing layer_sizes.json.*encoder.ckpt, gene_order.tsv"):
        ss.models.SCimilarity(folder)
    folder = scimilarity_model.save(tmp_path / "model2")
    (folder / "gene_order.tsv").write_text("\n".join(scimilarity_model.gene_order[:-3]) + "\n")
    with pytest.raises(ValueError, match=r"gene_order.tsv has 1547 genes but the first layer expects 1550"):
        ss.models.SCimilarity(folder)


def test_input_is_cp10k_over_model_genes_then_log1p(scimilarity_model, pbmc_small):
    """Counts aligned to gene_order first (missing -> 0), then normalize_total(1e4) over those genes, then log1p."""
    x = scimilarity_model.prepare(pbmc_small)
    assert sparse.isspmatrix_csr(x)
    assert x.dtype == np.float32
    assert x.shape == (pbmc_small.n_obs, scimilarity_model.n_genes)
    # oracle with scanpy on the aligned counts
    genes = scimilarity_model.gene_order
    present = [g for g in genes if g in pbmc_small.var_names]
    aligned = np.zeros((pbmc_small.n_obs, len(genes)), dtype=np.float32)
    aligned[:, genes.get_indexer(present)] = pbmc_small[:, present].X.toarray()
    oracle = sc.AnnData(aligned)
    sc.pp.normalize_total(oracle, target_sum=1e4)
    sc.pp.log1p(oracle)
    np.testing.assert_allclose(x.toarray(), oracle.X, rtol=1e-5, atol=1e-6)
    # the model genes the data lacks are zero
    assert x[:, genes.get_indexer([g for g in genes if g.startswith("ABSENT")])].nnz == 0
    # and normalising over all data genes would differ (the order of the two steps matters)
    whole = pbmc_small.copy()
    sc.pp.normalize_total(whole, target_sum=1e4)
    sc.pp.log1p(whole)
    wrong = whole[:, present].X.toarray()
    assert not np.allclose(x[:, genes.get_indexer(present)].toarray(), wrong, rtol=1e-3)


def test_embedding_l2_normalised_and_first_linear_split(scimilarity_model, pbmc_small):
    embedding = _embed(scimilarity_model, pbmc_small)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)
    prenorm = _embed(scimilarity_model, pbmc_small, normalize=False)
    assert not np.allclose(np.linalg.norm(prenorm, axis=1), 1.0, rtol=1e-2)
    np.testing.assert_allclose(prenorm / np.linalg.norm(prenorm, axis=1, keepdims=True), embedding, atol=1e-6)
    split = scimilarity_model.first_linear()
    x = torch.as_tensor(scimilarity_model.prepare(pbmc_small).toarray())
    with torch.no_grad():
        rest = split.rest(x @ split.weight.T + split.bias).numpy()
    np.testing.assert_allclose(rest, prenorm, rtol=1e-5, atol=1e-5)


def test_random_is_seeded(scimilarity_genes):
    a = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(8,), latent_dim=4, random_state=11)
    b = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(8,), latent_dim=4, random_state=11)
    c = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(8,), latent_dim=4, random_state=12)
    assert a.checksum == b.checksum != c.checksum
    assert a.l2_normalized and a.requires_counts
    assert repr(a) == "SCimilarity(name='scimilarity', n_genes=1550, embedding_dim=4)"


def test_encoder_is_the_published_architecture():
    encoder = ss.models.SCimilarityEncoder(10, latent_dim=3, hidden_dim=(6, 5))
    block = encoder.network[0]
    assert [type(m).__name__ for m in block] == ["Dropout", "Linear", "BatchNorm1d", "PReLU"]
    assert block[0].p == 0.4
    assert encoder.network[1][0].p == 0.5
    assert isinstance(encoder.network[2], torch.nn.Linear)
    with pytest.raises(ValueError, match="equal hidden sizes"):
        ss.models.SCimilarityEncoder(10, hidden_dim=(6, 5), residual=True)


@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_residual_encoder_fast_path_and_round_trip(
    scimilarity_genes, pbmc_small, tmp_path, method, assert_attributions_close
):
    torch.manual_seed(7)
    encoder = ss.models.SCimilarityEncoder(len(scimilarity_genes), latent_dim=8, hidden_dim=(32, 32, 32), residual=True)
    model = ss.models.SCimilarity.from_module(encoder, scimilarity_genes)
    layers = {}
    for engine in ("fast", "captum"):
        adata = pbmc_small.copy()
        ss.pp.attributions(adata, model, method=method, n_steps=20, engine=engine, device="cpu", progress=False)
        layers[engine] = adata.layers[f"attr_scimilarity_{method}"]
    assert_attributions_close(layers["fast"], layers["captum"])
    # the folder does not record residual connections: they are passed when loading
    folder = model.save(tmp_path / "residual")
    np.testing.assert_allclose(
        _embed(ss.models.SCimilarity(folder, residual=True), pbmc_small), _embed(model, pbmc_small), rtol=0, atol=0
    )
    assert not np.allclose(_embed(ss.models.SCimilarity(folder), pbmc_small), _embed(model, pbmc_small), atol=1e-3)
