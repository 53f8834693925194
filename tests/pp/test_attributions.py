"""``ss.pp.attributions``: what is written where, containers, streaming, resumable output, bad input (SPEC 1.1, 1.4, 1.5)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan import _engine
from sigscan.pp import _store

PROVENANCE_KEYS = {
    "model",
    "model_class",
    "weights_sha256",
    "n_genes_model",
    "n_genes_overlap",
    "method",
    "n_steps",
    "head",
    "target_sum",
    "engine",
    "layer",
    "sigscan_version",
}


def run(adata, model, **kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("progress", False)
    return ss.pp.attributions(adata, model, **kwargs)


# --- what is computed -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "dl", "ixg"])
@pytest.mark.parametrize("model_and_data", ["scimilarity", "scvi"], indirect=True)
def test_layer_rows_sum_to_target_and_follow_counts_sparsity(model_and_data, method):
    model, adata = model_and_data
    adata.X.data[adata.X.indptr[3] : adata.X.indptr[4]] = 0  # an all-zero cell
    adata.X.eliminate_zeros()
    assert run(adata, model, method=method, n_steps=8) is None
    key = f"attr_{model.name}_{method}"
    layer = adata.layers[key]
    assert sparse.isspmatrix_csr(layer)
    assert layer.dtype == np.float32
    assert layer.shape == adata.shape
    sums = np.asarray(layer.sum(axis=1)).ravel()
    assert sums[3] == 0
    np.testing.assert_allclose(np.delete(sums, 3), 1000, rtol=1e-4)
    assert layer.data.min() > 0  # absolute values, explicit zeros dropped
    # zero input -> zero attribution: the layer's pattern lies inside the counts' pattern ...
    counts = sparse.csr_matrix(adata.X)
    assert (layer.astype(bool) > counts.astype(bool)).nnz == 0
    # ... and genes outside the model are zero
    in_model = adata.var[f"{key}_in_model"].to_numpy()
    assert in_model.dtype == bool
    assert layer[:, ~in_model].nnz == 0
    expected_mask = adata.var_names.isin(model.gene_order)
    np.testing.assert_array_equal(in_model, expected_mask)


def test_target_sum(scimilarity_model, pbmc_small):
    run(pbmc_small, scimilarity_model, method="ixg", target_sum=1.0, key_added="one")
    run(pbmc_small, scimilarity_model, method="ixg", key_added="thousand")
    np.testing.assert_allclose(pbmc_small.layers["one"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        pbmc_small.layers["one"].toarray() * 1000, pbmc_small.layers["thousand"].toarray(), rtol=1e-4, atol=1e-5
    )


def test_provenance(scimilarity_model, pbmc_small, tmp_path):
    run(pbmc_small, scimilarity_model, method="ig", n_steps=7, key_added="attr", target_sum=500, layer="counts")
    info = pbmc_small.uns["sigscan"]["attributions"]["attr"]
    assert PROVENANCE_KEYS <= set(info)
    assert info["model"] == "scimilarity"
    assert info["model_class"] == "SCimilarity"
    assert info["weights_sha256"] == scimilarity_model.checksum
    assert len(info["weights_sha256"]) == 64
    assert info["method"] == "ig"
    assert info["n_steps"] == 7
    assert info["head"] == "reference"
    assert info["target_sum"] == 500.0
    assert info["layer"] == "counts"
    assert info["n_genes_model"] == scimilarity_model.n_genes
    assert info["n_genes_overlap"] == int(pbmc_small.var_names.isin(scimilarity_model.gene_order).sum())
    assert info["sigscan_version"] == ss.__version__
    run(pbmc_small, scimilarity_model, method="ixg", key_added="attr2")
    assert pbmc_small.uns["sigscan"]["attributions"]["attr2"]["head"] == "prenorm"
    assert set(pbmc_small.uns["sigscan"]["attributions"]) == {"attr", "attr2"}
    # provenance and layer survive an h5ad round trip
    pbmc_small.write_h5ad(tmp_path / "a.h5ad")
    reread = ad.read_h5ad(tmp_path / "a.h5ad")
    assert reread.uns["sigscan"]["attributions"]["attr"]["weights_sha256"] == scimilarity_model.checksum
    np.testing.assert_array_equal(reread.layers["attr"].toarray(), pbmc_small.layers["attr"].toarray())


def test_layer_argument_and_dense_input(scimilarity_model, pbmc_small):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg", key_added="attr")
    # counts in a layer, X log-normalised
    adata = pbmc_small.copy()
    lognorm = adata.X.copy()
    lognorm.data = np.log1p(lognorm.data / 3)
    adata.X = lognorm
    run(adata, scimilarity_model, method="ixg", layer="counts", key_added="attr")
    np.testing.assert_array_equal(adata.layers["attr"].toarray(), expected.layers["attr"].toarray())
    # dense counts and CSC counts give the same layer
    for matrix in (pbmc_small.X.toarray(), sparse.csc_matrix(pbmc_small.X)):
        dense = ad.AnnData(matrix, obs=pbmc_small.obs, var=pbmc_small.var)
        run(dense, scimilarity_model, method="ixg", key_added="attr")
        np.testing.assert_allclose(dense.layers["attr"].toarray(), expected.layers["attr"].toarray(), atol=1e-5)


def test_integer_counts_and_all_zero_data(scimilarity_model, pbmc_small):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ig", n_steps=5)
    integers = pbmc_small.copy()
    integers.X = integers.X.astype(np.int32)  # as the shared .h5ad files store counts
    run(integers, scimilarity_model, method="ig", n_steps=5)
    np.testing.assert_array_equal(
        integers.layers["attr_scimilarity_ig"].toarray(), expected.layers["attr_scimilarity_ig"].toarray()
    )
    zeros = pbmc_small.copy()
    zeros.X = sparse.csr_matrix(zeros.shape, dtype=np.float32)
    for engine in ("fast", "captum"):
        run(zeros, scimilarity_model, method="ig", n_steps=5, engine=engine)
        assert zeros.layers["attr_scimilarity_ig"].nnz == 0


def test_copy_returns_new_object_and_leaves_input(scimilarity_model, pbmc_small, snapshot, assert_unchanged):
    before = snapshot(pbmc_small)
    result = run(pbmc_small, scimilarity_model, method="ixg", copy=True)
    assert isinstance(result, ad.AnnData)
    assert result is not pbmc_small
    assert "attr_scimilarity_ixg" in result.layers
    assert "attr_scimilarity_ixg" in result.uns["sigscan"]["attributions"]
    assert_unchanged(pbmc_small, before)


# --- MuData -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def mdata(pbmc_small):
    mudata = pytest.importorskip("mudata")
    protein = ad.AnnData(
        np.random.default_rng(0).poisson(5, size=(pbmc_small.n_obs, 4)).astype(np.float32),
        obs=pd.DataFrame(index=pbmc_small.obs_names),
        var=pd.DataFrame(index=[f"ADT{i}" for i in range(4)]),
    )
    return mudata.MuData({"gex": pbmc_small, "prot": protein})


def test_mudata_layer(scimilarity_model, pbmc_small, mdata):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg")
    run(mdata, scimilarity_model, method="ixg", mod="gex")
    layer = mdata.mod["gex"].layers["attr_scimilarity_ixg"]
    np.testing.assert_array_equal(layer.toarray(), expected.layers["attr_scimilarity_ixg"].toarray())
    assert "attr_scimilarity_ixg" in mdata.uns["sigscan"]["attributions"]
    # the RNA modality is found without mod= ("gex" is a known name)
    run(mdata, scimilarity_model, method="ixg", key_added="again")
    assert "again" in mdata.mod["gex"].layers


def test_mudata_as_modality(scimilarity_model, pbmc_small, mdata):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg")
    run(mdata, scimilarity_model, method="ixg", mod="gex", as_modality=True)
    modality = mdata.mod["attr:scimilarity"]
    assert list(mdata.mod) == ["gex", "prot", "attr:scimilarity"]
    assert mdata.n_vars == pbmc_small.n_vars + 4 + scimilarity_model.n_genes
    assert modality.shape == (pbmc_small.n_obs, scimilarity_model.n_genes)
    assert list(modality.var_names) == list(scimilarity_model.gene_order)
    assert list(modality.obs_names) == list(pbmc_small.obs_names)
    # same values as the layer, in the model's gene space (genes the data lacks are all zero)
    layer = expected.layers["attr_scimilarity_ixg"]
    shared = [g for g in scimilarity_model.gene_order if g in pbmc_small.var_names]
    np.testing.assert_array_equal(
        modality[:, shared].X.toarray(), layer[:, pbmc_small.var_names.get_indexer(shared)].toarray()
    )
    absent = [g for g in scimilarity_model.gene_order if g not in pbmc_small.var_names]
    assert absent and modality[:, absent].X.nnz == 0
    assert "attr_scimilarity_ixg" not in mdata.mod["gex"].layers
    assert mdata.uns["sigscan"]["attributions"]["attr_scimilarity_ixg"]["method"] == "ixg"


def test_mudata_copy(scimilarity_model, mdata):
    result = run(mdata, scimilarity_model, method="ixg", copy=True)
    assert result is not mdata
    assert "attr_scimilarity_ixg" in result.mod["gex"].layers
    assert "attr_scimilarity_ixg" not in mdata.mod["gex"].layers
    assert "sigscan" not in mdata.uns


def test_mudata_bad_modality(scimilarity_model, mdata):
    with pytest.raises(KeyError, match="available"):
        run(mdata, scimilarity_model, method="ixg", mod="rna_missing")


def test_mudata_without_rna_name_needs_mod(scimilarity_model, pbmc_small):
    mudata = pytest.importorskip("mudata")
    other = ad.AnnData(np.ones((pbmc_small.n_obs, 2), dtype=np.float32), obs=pbmc_small.obs[[]])
    data = mudata.MuData({"expression": pbmc_small, "other": other})
    with pytest.raises(ValueError, match=r"pass mod= naming the RNA modality \(one of \['expression', 'other'\]\)"):
        run(data, scimilarity_model, method="ixg")
    single = mudata.MuData({"expression": pbmc_small.copy()})
    run(single, scimilarity_model, method="ixg")  # a single modality is taken as the RNA one
    assert "attr_scimilarity_ixg" in single.mod["expression"].layers


def test_mudata_bad_counts_leave_it_unchanged(scimilarity_model, mdata, snapshot, assert_unchanged):
    mdata.mod["gex"].X.data[0] = -1.0
    before, before_mu = snapshot(mdata.mod["gex"]), set(mdata.mod)
    with pytest.raises(ValueError, match="negative values"):
        run(mdata, scimilarity_model, method="ixg", mod="gex", as_modality=True)
    assert_unchanged(mdata.mod["gex"], before)
    assert set(mdata.mod) == before_mu
    assert "sigscan" not in mdata.uns


def test_as_modality_needs_mudata(scimilarity_model, pbmc_small, snapshot, assert_unchanged):
    before = snapshot(pbmc_small)
    with pytest.raises(ValueError, match="MuData"):
        run(pbmc_small, scimilarity_model, method="ixg", as_modality=True)
    assert_unchanged(pbmc_small, before)


# --- streaming and on-disk output -------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["csr", "csc", "dense"])
def test_backed_h5ad_equals_in_memory(scimilarity_model, pbmc_small, tmp_path, storage):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ig", n_steps=5, batch_size=10)
    path = tmp_path / "counts.h5ad"
    if storage != "csr":
        pbmc_small.X = pbmc_small.X.toarray() if storage == "dense" else sparse.csc_matrix(pbmc_small.X)
    pbmc_small.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    run(backed, scimilarity_model, method="ig", n_steps=5, batch_size=10)
    layer = backed.layers["attr_scimilarity_ig"]
    np.testing.assert_array_equal(layer.toarray(), expected.layers["attr_scimilarity_ig"].toarray())
    backed.file.close()


def test_zarr_out_equals_in_memory(scimilarity_model, pbmc_small, tmp_path):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ig", n_steps=5, batch_size=10)
    out = tmp_path / "attr.zarr"
    run(pbmc_small, scimilarity_model, method="ig", n_steps=5, batch_size=10, out=out)
    stored = ad.read_zarr(out)
    assert stored.shape == pbmc_small.shape
    assert list(stored.obs_names) == list(pbmc_small.obs_names)
    assert list(stored.var_names) == list(pbmc_small.var_names)
    np.testing.assert_array_equal(stored.X.toarray(), expected.layers["attr_scimilarity_ig"].toarray())
    np.testing.assert_array_equal(
        stored.var["attr_scimilarity_ig_in_model"], expected.var["attr_scimilarity_ig_in_model"]
    )
    assert stored.uns["sigscan"]["attributions"]["attr_scimilarity_ig"]["method"] == "ig"
    # the in-memory object also got the layer
    np.testing.assert_array_equal(
        pbmc_small.layers["attr_scimilarity_ig"].toarray(), expected.layers["attr_scimilarity_ig"].toarray()
    )


def test_backed_input_with_zarr_out(scimilarity_model, pbmc_small, tmp_path):
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg", batch_size=16)
    path = tmp_path / "counts.h5ad"
    pbmc_small.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    run(backed, scimilarity_model, method="ixg", batch_size=16, out=tmp_path / "attr.zarr")
    backed.file.close()
    stored = ad.read_zarr(tmp_path / "attr.zarr")
    np.testing.assert_array_equal(stored.X.toarray(), expected.layers["attr_scimilarity_ixg"].toarray())


def test_lazy_zarr_input_equals_in_memory(scimilarity_model, pbmc_small, tmp_path):
    """A zarr store opened lazily (dask-backed X) streams like backed h5ad and is validated per batch."""
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg", batch_size=16)
    pbmc_small.write_zarr(tmp_path / "counts.zarr")
    lazy = ad.experimental.read_lazy(tmp_path / "counts.zarr")
    run(lazy, scimilarity_model, method="ixg", batch_size=16)
    np.testing.assert_array_equal(
        np.asarray(lazy.layers["attr_scimilarity_ixg"].toarray()), expected.layers["attr_scimilarity_ixg"].toarray()
    )
    bad = pbmc_small.copy()
    bad.X.data = np.log1p(bad.X.data)
    bad.write_zarr(tmp_path / "bad.zarr")
    with pytest.raises(ValueError, match=r"rows 0-16 holds non-integer values"):
        run(ad.experimental.read_lazy(tmp_path / "bad.zarr"), scimilarity_model, method="ixg", batch_size=16)


class _Interrupt(RuntimeError):
    pass


_FastPath = _engine.FastPath


def _failing_engine(after: int, calls: list[int]):
    """A FastPath that raises on call number ``after + 1`` (``calls`` records the number of rows of each call)."""

    class Failing(_FastPath):
        def __call__(self, x, **kwargs):
            if len(calls) == after:
                raise _Interrupt("simulated crash")
            calls.append(x.shape[0])
            return super().__call__(x, **kwargs)

    return Failing


def _counting_engine(calls: list[int]):
    class Counting(_FastPath):
        def __call__(self, x, **kwargs):
            calls.append(x.shape[0])
            return super().__call__(x, **kwargs)

    return Counting


def test_interrupted_run_resumes_to_identical_result(scimilarity_model, pbmc_small, tmp_path, monkeypatch):
    settings = {"method": "ig", "n_steps": 5, "batch_size": 10}
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, **settings)
    out = tmp_path / "attr.zarr"

    calls: list[int] = []
    monkeypatch.setattr(_engine, "FastPath", _failing_engine(2, calls))
    interrupted = pbmc_small.copy()
    with pytest.raises(_Interrupt):
        run(interrupted, scimilarity_model, out=out, **settings)
    assert calls == [10, 10]
    assert "attr_scimilarity_ig" not in interrupted.layers

    resumed_calls: list[int] = []
    monkeypatch.setattr(_engine, "FastPath", _counting_engine(resumed_calls))
    resumed = pbmc_small.copy()
    run(resumed, scimilarity_model, out=out, **settings)
    assert resumed_calls == [10, 10, 8]  # only the 28 cells not yet done were computed
    np.testing.assert_array_equal(
        resumed.layers["attr_scimilarity_ig"].toarray(), expected.layers["attr_scimilarity_ig"].toarray()
    )
    np.testing.assert_array_equal(ad.read_zarr(out).X.toarray(), expected.layers["attr_scimilarity_ig"].toarray())

    # a finished store is reused without computing anything
    again_calls: list[int] = []
    monkeypatch.setattr(_engine, "FastPath", _counting_engine(again_calls))
    again = pbmc_small.copy()
    run(again, scimilarity_model, out=out, **settings)
    assert again_calls == []
    np.testing.assert_array_equal(
        again.layers["attr_scimilarity_ig"].toarray(), expected.layers["attr_scimilarity_ig"].toarray()
    )


def test_crash_between_write_and_commit_resumes(scimilarity_model, pbmc_small, tmp_path, monkeypatch):
    """Data appended for a batch whose commit never happened is truncated on resume."""
    settings = {"method": "ixg", "batch_size": 10}
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, **settings)
    out = tmp_path / "attr.zarr"
    commit = _store.AttributionStore._commit
    commits: list[int] = []

    def failing_commit(self):
        commits.append(self.n_obs_done)
        if len(commits) == 4:  # creation, batch 1, batch 2, then batch 3's arrays are written but not committed
            raise _Interrupt("crash before commit")
        commit(self)

    monkeypatch.setattr(_store.AttributionStore, "_commit", failing_commit)
    with pytest.raises(_Interrupt):
        run(pbmc_small.copy(), scimilarity_model, out=out, **settings)
    monkeypatch.setattr(_store.AttributionStore, "_commit", commit)
    resumed = pbmc_small.copy()
    run(resumed, scimilarity_model, out=out, **settings)
    np.testing.assert_array_equal(
        resumed.layers["attr_scimilarity_ixg"].toarray(), expected.layers["attr_scimilarity_ixg"].toarray()
    )
    np.testing.assert_array_equal(ad.read_zarr(out).X.toarray(), expected.layers["attr_scimilarity_ixg"].toarray())


@pytest.mark.parametrize(
    "change", [{"method": "ixg"}, {"n_steps": 6}, {"target_sum": 10.0}, {"head": "prenorm"}, {"subset": True}]
)
def test_resume_with_other_settings_is_refused(scimilarity_model, pbmc_small, tmp_path, monkeypatch, change):
    settings = {"method": "ig", "n_steps": 5, "batch_size": 10}
    out = tmp_path / "attr.zarr"
    monkeypatch.setattr(_engine, "FastPath", _failing_engine(1, []))
    with pytest.raises(_Interrupt):
        run(pbmc_small.copy(), scimilarity_model, out=out, **settings)
    monkeypatch.undo()
    adata = pbmc_small[:20].copy() if change.pop("subset", False) else pbmc_small.copy()
    with pytest.raises(ValueError, match="cannot be resumed"):
        run(adata, scimilarity_model, out=out, **{**settings, **change})
    assert "attr_scimilarity_ig" not in adata.layers


def test_resume_on_other_cells_is_refused(scimilarity_model, pbmc_small, tmp_path, monkeypatch):
    """Same shape and settings, but other cells (here: the same cells in another order) must not be mixed in."""
    out = tmp_path / "attr.zarr"
    monkeypatch.setattr(_engine, "FastPath", _failing_engine(2, []))
    with pytest.raises(_Interrupt):
        run(pbmc_small.copy(), scimilarity_model, method="ixg", batch_size=10, out=out)
    monkeypatch.undo()
    shuffled = pbmc_small[np.random.default_rng(0).permutation(pbmc_small.n_obs)].copy()
    with pytest.raises(ValueError, match="cannot be resumed"):
        run(shuffled, scimilarity_model, method="ixg", batch_size=10, out=out)
    renamed = pbmc_small.copy()
    renamed.var_names = [f"{name}_x" if i % 2 else name for i, name in enumerate(renamed.var_names)]
    with pytest.raises(ValueError, match="cannot be resumed"):
        run(renamed, scimilarity_model, method="ixg", batch_size=10, out=out)


def test_out_refuses_empty_folder(scimilarity_model, pbmc_small, tmp_path):
    out = tmp_path / "attr.zarr"
    out.mkdir()
    with pytest.raises(FileExistsError, match="another out="):
        run(pbmc_small, scimilarity_model, method="ixg", out=out)
    assert "attr_scimilarity_ixg" not in pbmc_small.layers


def test_out_refuses_foreign_store(scimilarity_model, pbmc_small, tmp_path):
    out = tmp_path / "other.zarr"
    pbmc_small.write_zarr(out)
    with pytest.raises(FileExistsError, match="another out="):
        run(pbmc_small, scimilarity_model, method="ixg", out=out)


def test_other_model_weights_refuse_resume(scimilarity_genes, pbmc_small, tmp_path, monkeypatch):
    out = tmp_path / "attr.zarr"
    first = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(16,), latent_dim=4, random_state=1)
    second = ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(16,), latent_dim=4, random_state=2)
    monkeypatch.setattr(_engine, "FastPath", _failing_engine(1, []))
    with pytest.raises(_Interrupt):
        run(pbmc_small.copy(), first, method="ixg", batch_size=10, out=out)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="weights_sha256"):
        run(pbmc_small.copy(), second, method="ixg", batch_size=10, out=out)


# --- bad input: an error that names the fix, and the AnnData untouched ------------------------------------------------


def _negative(adata):
    adata.X.data[5] = -2.0


def _nan(adata):
    adata.X.data[5] = np.nan


def _log_normalised(adata):
    adata.X.data = np.log1p(adata.X.data)


def _ensembl_var_names(adata):
    adata.var_names = adata.var["gene_ids"].astype(str).to_numpy()
    del adata.var["gene_ids"]


def _few_genes(adata):
    adata._inplace_subset_var(np.arange(100))


BAD_DATA = {
    "negative": (_negative, {}, ValueError, r"negative values.*layer="),
    "nan": (_nan, {}, ValueError, r"NaN.*layer="),
    "log_normalised": (_log_normalised, {}, ValueError, r"log-normalised.*raw counts.*layer="),
    "ensembl_vs_symbols": (_ensembl_var_names, {}, ValueError, r"expects gene symbols.*Ensembl IDs.*gene_symbols="),
    "overlap": (_few_genes, {}, ValueError, r"Only \d+ of the 1550 genes.*minimum 500.*min_gene_overlap"),
    "missing_layer": (None, {"layer": "raw_counts"}, KeyError, r"'raw_counts' not found.*available layers"),
    "missing_var_column": (None, {"gene_symbols": "symbol_col"}, ValueError, r"no column 'symbol_col'"),
    "bad_counts_layer": (None, {"layer": "lognorm"}, ValueError, r"adata.layers\['lognorm'\].*log-normalised"),
    "unknown_method": (None, {"method": "shap"}, ValueError, r"Unknown attribution method 'shap'.*ig, dl, ixg"),
    "unknown_head": (None, {"head": "final"}, ValueError, r"Unknown head 'final'.*'prenorm'"),
    "unknown_engine": (None, {"engine": "jit"}, ValueError, r"Unknown engine 'jit'.*'captum'"),
    "unknown_device": (None, {"device": "tpu"}, ValueError, r"Unknown device 'tpu'"),
    "zero_steps": (None, {"method": "ig", "n_steps": 0}, ValueError, r"n_steps must be a positive integer"),
    "negative_steps": (None, {"method": "ig", "n_steps": -3}, ValueError, r"n_steps must be a positive integer"),
    "float_steps": (None, {"method": "ig", "n_steps": 2.5}, ValueError, r"n_steps must be a positive integer"),
    "zero_target_sum": (None, {"target_sum": 0}, ValueError, r"target_sum must be a positive number"),
    "negative_target_sum": (None, {"target_sum": -1.0}, ValueError, r"target_sum must be a positive number"),
    "nan_target_sum": (None, {"target_sum": float("nan")}, ValueError, r"target_sum must be a positive number"),
    "zero_batch_size": (None, {"batch_size": 0}, ValueError, r"batch_size must be positive"),
    "negative_batch_size": (None, {"batch_size": -1}, ValueError, r"batch_size must be positive"),
    "mod_without_mudata": (None, {"mod": "rna"}, ValueError, r"only for MuData"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_input_raises_and_leaves_adata_unchanged(
    case, scimilarity_model, pbmc_small, snapshot, assert_unchanged, tmp_path
):
    corrupt, kwargs, error, message = BAD_DATA[case]
    adata = pbmc_small
    lognorm = adata.X.copy()
    lognorm.data = np.log1p(lognorm.data)
    adata.layers["lognorm"] = lognorm
    if corrupt is not None:
        corrupt(adata)
    before = snapshot(adata)
    kwargs = {"method": "ixg", **kwargs}
    with pytest.raises(error, match=message):
        run(adata, scimilarity_model, **kwargs)
    assert_unchanged(adata, before)
    # the same with an out= store: nothing is written into the AnnData either
    with pytest.raises(error, match=message):
        run(adata, scimilarity_model, out=tmp_path / "attr.zarr", **kwargs)
    assert_unchanged(adata, before)


@pytest.mark.skipif(
    __import__("torch").cuda.is_available() or __import__("torch").backends.mps.is_available(), reason="GPU present"
)
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_unavailable_device(scimilarity_model, pbmc_small, snapshot, assert_unchanged, device):
    before = snapshot(pbmc_small)
    with pytest.raises(ValueError, match=r"not available.*device='auto' or 'cpu'"):
        run(pbmc_small, scimilarity_model, method="ixg", device=device)
    assert_unchanged(pbmc_small, before)


def test_bad_counts_in_a_late_batch_of_backed_input(scimilarity_model, pbmc_small, tmp_path):
    """Backed input is validated per batch; a bad batch stops the run with the rows named."""
    pbmc_small.X.data[-3] = 0.5  # last cell
    path = tmp_path / "counts.h5ad"
    pbmc_small.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match=r"rows 40-48.*raw counts"):
        run(backed, scimilarity_model, method="ixg", batch_size=10)
    assert "attr_scimilarity_ixg" not in backed.layers
    assert "attr_scimilarity_ixg_in_model" not in backed.var
    backed.file.close()


@pytest.mark.parametrize("model", [None, "scimilarity", object()])
def test_non_model_object(model, pbmc_small, snapshot, assert_unchanged):
    before = snapshot(pbmc_small)
    with pytest.raises(TypeError, match=r"ss.models.TorchEncoder"):
        run(pbmc_small, model, method="ixg")
    assert_unchanged(pbmc_small, before)


def test_bare_torch_module_is_refused(pbmc_small):
    import torch

    with pytest.raises(TypeError, match="TorchEncoder"):
        run(pbmc_small, torch.nn.Linear(pbmc_small.n_vars, 4), method="ixg")


def test_copy_true_with_bad_input_leaves_input(scimilarity_model, pbmc_small, snapshot, assert_unchanged):
    pbmc_small.X.data[0] = -1
    before = snapshot(pbmc_small)
    with pytest.raises(ValueError, match="negative"):
        run(pbmc_small, scimilarity_model, method="ixg", copy=True)
    assert_unchanged(pbmc_small, before)


def test_resume_with_other_batch_size_names_the_fix(scimilarity_model, pbmc_small, tmp_path, monkeypatch):
    out = tmp_path / "attr.zarr"
    monkeypatch.setattr(_engine, "FastPath", _failing_engine(1, []))
    with pytest.raises(_Interrupt):
        run(pbmc_small.copy(), scimilarity_model, method="ixg", batch_size=10, out=out)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"Pass batch_size=10 to resume"):
        run(pbmc_small.copy(), scimilarity_model, method="ixg", batch_size=12, out=out)
    resumed = pbmc_small.copy()
    run(resumed, scimilarity_model, method="ixg", batch_size=10, out=out)
    expected = pbmc_small.copy()
    run(expected, scimilarity_model, method="ixg", batch_size=10)
    np.testing.assert_array_equal(
        resumed.layers["attr_scimilarity_ixg"].toarray(), expected.layers["attr_scimilarity_ixg"].toarray()
    )


def test_out_store_carries_obs_var_and_provenance(scimilarity_model, pbmc_small, tmp_path):
    adata = pbmc_small.copy()
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "a", "b"))
    out = tmp_path / "attr.zarr"
    run(adata, scimilarity_model, method="ixg", batch_size=10, out=out)
    stored = ad.read_zarr(out)
    pd.testing.assert_frame_equal(stored.obs, adata.obs, check_index_type=False)
    assert list(stored.var_names) == list(adata.var_names)
    for column in adata.var.columns:  # the input's var columns, plus the in-model flag
        assert column in stored.var
    np.testing.assert_array_equal(
        stored.var["attr_scimilarity_ixg_in_model"], adata.var["attr_scimilarity_ixg_in_model"]
    )
    recorded = stored.uns["sigscan"]["attributions"]["attr_scimilarity_ixg"]
    assert recorded["weights_sha256"] == scimilarity_model.checksum
    assert recorded["method"] == "ixg"
