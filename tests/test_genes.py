"""Gene identifiers: symbols vs Ensembl IDs, var-column mapping, overlap threshold (SPEC 1.2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan._genes import align_genes, identifier_type


def _layer(adata, model, **kwargs):
    ss.pp.attributions(adata, model, method="ixg", key_added="attr", device="cpu", progress=False, **kwargs)
    return adata.layers["attr"], adata.uns["sigscan"]["attributions"]["attr"]


@pytest.fixture(scope="module")
def census_like_model(_pbmc_small):
    """A model whose gene order is Ensembl IDs (as the CELLxGENE Census models), 1,200 genes of the slice."""
    ids = list(_pbmc_small.var["gene_ids"].astype(str)[::2][:1200])
    return ss.models.SCimilarity.random(ids, hidden_dim=(32,), latent_dim=8, random_state=4)


def test_identifier_type():
    assert identifier_type(["ENSG00000141510", "ENSG00000012048.12", "ENSMUSG00000059552"]) == "ensembl"
    assert identifier_type(["TP53", "BRCA1", "CD3E"]) == "symbol"
    assert identifier_type(["TP53", "ENSG00000141510", "CD3E"]) == "symbol"  # majority vote
    assert identifier_type([]) == "symbol"


def test_ensembl_model_symbols_in_var_names_ids_in_column(census_like_model, pbmc_small):
    """Census-like: gene_order of Ensembl IDs, data with symbols in var_names and IDs in var['gene_ids']."""
    assert identifier_type(pbmc_small.var_names) == "symbol"
    layer, info = _layer(pbmc_small.copy(), census_like_model)
    assert info["gene_identifiers"] == "var['gene_ids']"
    assert info["n_genes_overlap"] == 1200
    # the same attributions as on data indexed by the IDs themselves
    by_id = pbmc_small.copy()
    by_id.var_names = by_id.var["gene_ids"].astype(str).to_numpy()
    expected, expected_info = _layer(by_id, census_like_model)
    assert expected_info["gene_identifiers"] == "var_names"
    np.testing.assert_array_equal(layer.toarray(), expected.toarray())
    assert layer.nnz > 0


def test_explicit_gene_ids_column(census_like_model, pbmc_small, snapshot, assert_unchanged):
    adata = pbmc_small.copy()
    adata.var = adata.var.rename(columns={"gene_ids": "ensembl_gene"})  # a name sigscan does not guess
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"expects Ensembl gene IDs.*look like gene symbols.*gene_ids='<var column>'"):
        _layer(adata, census_like_model)
    assert_unchanged(adata, before)
    layer, info = _layer(adata, census_like_model, gene_ids="ensembl_gene")
    assert info["gene_identifiers"] == "var['ensembl_gene']"
    expected, _ = _layer(pbmc_small.copy(), census_like_model)
    np.testing.assert_array_equal(layer.toarray(), expected.toarray())


def test_symbol_model_ids_in_var_names(scimilarity_model, pbmc_small):
    adata = pbmc_small.copy()
    adata.var["symbol"] = adata.var_names.to_numpy()
    adata.var_names = adata.var["gene_ids"].astype(str).to_numpy()
    layer, info = _layer(adata, scimilarity_model)  # found in the well-known column "symbol"
    assert info["gene_identifiers"] == "var['symbol']"
    expected, _ = _layer(pbmc_small.copy(), scimilarity_model)
    np.testing.assert_array_equal(layer.toarray(), expected.toarray())
    adata.var = adata.var.rename(columns={"symbol": "hgnc"})
    layer, info = _layer(adata, scimilarity_model, gene_symbols="hgnc")
    assert info["gene_identifiers"] == "var['hgnc']"
    np.testing.assert_array_equal(layer.toarray(), expected.toarray())


def test_ensembl_version_suffixes_are_ignored():
    var = pd.DataFrame(index=["ENSG00000000001.3", "ENSG00000000002", "ENSG00000000003.1"])
    alignment = align_genes(var, pd.Index(["ENSG00000000003.7", "ENSG00000000001", "ENSG00000000009.2"]))
    np.testing.assert_array_equal(alignment.data_to_model, [1, -1, 0])


def test_duplicates_first_occurrence_wins():
    var = pd.DataFrame(index=pd.Index(["A", "B", "A", "C"]))
    alignment = align_genes(var, pd.Index(["C", "A", "D"]))
    np.testing.assert_array_equal(alignment.data_to_model, [1, -1, -1, 0])
    assert alignment.n_overlap == 2
    np.testing.assert_array_equal(alignment.in_model, [True, False, False, True])


def test_to_model_and_back():
    var = pd.DataFrame(index=["G0", "G1", "G2", "G3", "G4"])
    alignment = align_genes(var, pd.Index(["G3", "G9", "G0", "G4"]))
    counts = sparse.csr_matrix(np.arange(15, dtype=np.float32).reshape(3, 5))
    model_space = alignment.to_model(counts).toarray()
    np.testing.assert_array_equal(model_space, counts.toarray()[:, [3, 0, 0, 4]] * [1, 0, 1, 1])
    rows = np.flatnonzero(alignment.data_to_model >= 0)  # a 0/1 selection matrix is the same map
    selection = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, alignment.data_to_model[rows])),
        shape=(len(alignment.data_to_model), alignment.n_model_genes),
    )
    np.testing.assert_array_equal((counts @ selection).toarray(), model_space)
    back = alignment.to_data(sparse.csr_matrix(model_space)).toarray()
    np.testing.assert_array_equal(back, counts.toarray() * [1, 0, 0, 1, 1])


def test_overlap_below_threshold():
    var = pd.DataFrame(index=[f"G{i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"Only 3 of the 5 genes of m were found.*minimum 4.*min_gene_overlap"):
        align_genes(var, pd.Index(["G1", "G2", "G3", "X1", "X2"]), min_overlap=4, model_name="m")
    assert align_genes(var, pd.Index(["G1", "G2", "G3", "X1", "X2"]), min_overlap=3).n_overlap == 3


def test_min_gene_overlap_parameter(scimilarity_genes, pbmc_small, tmp_path):
    few = pbmc_small[:, pbmc_small.var_names.isin(scimilarity_genes[:300])].copy()
    model = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(8,), latent_dim=4)
    with pytest.raises(ValueError, match=r"Only 300 of the 1550 genes"):
        _layer(few.copy(), model)
    relaxed = ss.models.SCimilarity(model.save(tmp_path / "m"), min_gene_overlap=250)
    layer, info = _layer(few.copy(), relaxed)
    assert info["n_genes_overlap"] == 300
    assert layer.nnz > 0


def test_missing_requested_column():
    var = pd.DataFrame({"gene_ids": ["ENSG00000000001"]}, index=["A"])
    with pytest.raises(ValueError, match=r"no column 'symbols'.*available columns: \['gene_ids'\]"):
        align_genes(var, pd.Index(["A"]), gene_symbols="symbols")
