"""Each error names the fix that works for its caller; silent acceptance became a warning or an error (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

import sigscan as ss
from sigscan.cli import main
from sigscan.cli._common import error_message


@pytest.fixture(scope="module")
def model_and_data():
    adata = ss.datasets.pbmc3k()[:40].copy()
    model = ss.models.SCimilarity.random(adata.var_names[:1500], hidden_dim=(8,), latent_dim=4)
    return model, adata


def _with_attributions(model_and_data):
    model, adata = model_and_data
    adata = adata.copy()
    ss.pp.attributions(adata, model, method="ixg", progress=False)
    return adata


def test_compare_scorers_names_attribution_layer(model_and_data):
    _, adata = model_and_data
    adata = adata.copy()
    adata.obs["group"] = ["a", "b"] * 20
    adata.layers["attr_one_ig"] = adata.X.copy()
    adata.layers["attr_two_ig"] = adata.X.copy()
    with pytest.raises(ValueError, match="pass attribution_layer= to pick one"):
        ss.tl.compare_scorers(adata, {"a": ["LYZ", "CD74"]}, "group", methods=["attribution"], progress=False)


def test_cli_names_its_flags(tmp_path, capsys):
    adata = ss.datasets.toy(n_cells=60, n_genes=40)
    adata.uns.pop("programs")
    adata.layers["attr_one_ig"] = adata.X.copy()
    adata.layers["attr_two_ig"] = adata.X.copy()
    adata.write_h5ad(tmp_path / "two.h5ad")
    assert main(["score", str(tmp_path / "two.h5ad"), "--genes", str(adata.var_names[0]), "--method", "attribution"])
    err = capsys.readouterr().err
    assert "pass --layer to pick one" in err and "layer=" not in err
    flags = {"layer": "--layer", "attribution_layer": "--attribution-layer", "overwrite": "--overwrite"}
    assert error_message(ValueError("pass attribution_layer= or layer='counts'"), flags) == (
        "pass --attribution-layer or --layer counts"
    )
    assert error_message(ValueError("pass overwrite=True"), flags) == "pass --overwrite"


def test_different_gene_panel_is_not_called_an_identifier_problem(model_and_data):
    _, adata = model_and_data
    other_panel = ss.models.SCimilarity.random([f"PANEL{i}" for i in range(300)], hidden_dim=(8,), latent_dim=4)
    with pytest.raises(ValueError, match="different gene panel") as error:
        ss.pp.attributions(adata.copy(), other_panel, method="ixg", progress=False)
    assert "gene_symbols=" not in str(error.value) and "PANEL0" in str(error.value)
    ensembl = ss.models.SCimilarity.random([f"ENSG{i:011d}" for i in range(300)], hidden_dim=(8,), latent_dim=4)
    symbols_only = adata.copy()
    symbols_only.var = symbols_only.var.iloc[:, :0]  # no var column with Ensembl IDs
    with pytest.raises(ValueError, match=r"look like gene symbols\. Pass gene_ids="):
        ss.pp.attributions(symbols_only, ensembl, method="ixg", progress=False)


def test_non_integer_counts_diagnosis(model_and_data):
    model, adata = model_and_data
    corrected = adata.copy()
    corrected.X = corrected.X.astype(np.float32) * np.float32(0.93)  # ambient-corrected counts keep their scale
    with pytest.raises(ValueError, match="ambient-corrected") as error:
        ss.pp.attributions(corrected, model, method="ixg", progress=False)
    assert "log-normalised" not in str(error.value)
    logged = adata.copy()
    sc.pp.normalize_total(logged)
    sc.pp.log1p(logged)
    with pytest.raises(ValueError, match="log-normalised"):
        ss.pp.attributions(logged, model, method="ixg", progress=False)


def test_duplicated_var_names_warn(model_and_data):
    model, adata = model_and_data
    adata = adata.copy()
    names = list(adata.var_names)
    names[1] = names[0]
    adata.var_names = names
    with pytest.warns(UserWarning, match=rf"1 model genes appear more than once .*{names[0]!r}"):
        ss.pp.attributions(adata, model, method="ixg", progress=False)


def test_empty_cells_warn_with_count(model_and_data):
    model, adata = model_and_data
    adata = adata.copy()
    counts = adata.X.tolil()
    counts[[0, 5], :] = 0
    adata.X = sparse.csr_matrix(counts)
    with pytest.warns(UserWarning, match="2 cells of adata.X have no counts in the model's genes"):
        ss.pp.attributions(adata, model, method="ixg", progress=False)
    sums = np.asarray(adata.layers["attr_scimilarity_ixg"].sum(axis=1)).ravel()
    assert sums[0] == 0 and sums[5] == 0 and np.allclose(np.delete(sums, [0, 5]), 1000, rtol=1e-4)


def test_genes_outside_the_model_warn(model_and_data):
    adata = _with_attributions(model_and_data)
    outside = adata.var_names[1600]  # the model has the first 1,500 genes
    with pytest.warns(UserWarning, match=rf"1 of 2 genes .* not in the model's gene space \(e.g. {outside!r}\)"):
        ss.tl.attribution_score(adata, [adata.var_names[0], outside])


def test_counts_layer_is_not_an_attribution_layer(model_and_data):
    adata = _with_attributions(model_and_data)
    adata.layers["counts"] = adata.X.copy()
    with pytest.raises(ValueError, match=r"holds integer counts, not attributions.*present: attr_scimilarity_ixg"):
        ss.tl.attribution_score(adata, list(adata.var_names[:10]), layer="counts")


def test_key_added_of_another_model_warns(model_and_data):
    model, adata = model_and_data
    adata = adata.copy()
    other = ss.models.SCimilarity.random(adata.var_names[:1500], hidden_dim=(8,), latent_dim=4, random_state=7)
    ss.pp.attributions(adata, model, method="ixg", progress=False, key_added="attr_run")
    with pytest.warns(UserWarning, match="key_added='attr_run' already holds attributions of another run"):
        ss.pp.attributions(adata, other, method="ixg", progress=False, key_added="attr_run")


def test_compare_scorers_zero_splits_is_an_error():
    adata = ss.datasets.toy(n_cells=100, n_genes=60)
    with pytest.raises(ValueError, match="pass n_splits= of 1 or more"):
        ss.tl.compare_scorers(adata, adata.uns["programs"], "group", methods=["mean"], n_splits=0, progress=False)
    table = ss.tl.compare_scorers(
        adata, adata.uns["programs"], "group", methods=["mean"], classifiers=["otsu"], n_splits=0, progress=False
    )
    assert set(table["classifier"]) == {"otsu"}
