import json
import os
import threading
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan.atlas import ShardError

LAYER = "attr_scimilarity_ixg"


def _expected(adata, genes, **kwargs):
    adata = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.tl.attribution_score(adata, genes, layer=LAYER, **kwargs)
    return adata.obs["attribution_score"].to_numpy()


@pytest.fixture
def atlas(tmp_path, model, pbmc, kang):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc[:150], name="pbmc_a")
    atlas.add(pbmc[150:], name="pbmc_b")
    atlas.add(kang, name="kang")
    return atlas


def test_manifest_and_shard_layout(atlas, model, pbmc):
    manifest = json.loads(
        (atlas.location.root + "/atlas.json").encode() and open(atlas.location.join("atlas.json")).read()
    )
    assert manifest["format_version"] == 1
    assert manifest["model"] == model.name and manifest["method"] == "ixg"
    assert manifest["gene_order_sha256"] == ss._utils.sha256_strings(list(model.gene_order))
    assert [s["name"] for s in manifest["shards"]] == ["pbmc_a", "pbmc_b", "kang"]
    assert [s["n_cells"] for s in manifest["shards"]] == [150, 90, 200]
    assert manifest["shards"][0]["nnz"] == pbmc[:150].layers[LAYER].nnz
    # a shard is a plain AnnData zarr: X in CSC over the model's genes
    shard = ad.read_zarr(atlas.location.join(manifest["shards"][0]["path"]))
    assert sparse.issparse(shard.X) and shard.X.format == "csc" and shard.X.dtype == np.float32
    assert shard.var_names.tolist() == list(model.gene_order)
    assert (shard.X != pbmc[:150].layers[LAYER]).nnz == 0
    assert shard.obs["cell_type"].tolist() == pbmc.obs["cell_type"][:150].tolist()
    # uncompressed data/indices (byte-range readable)
    zarray = json.load(open(os.path.join(atlas.location.join(manifest["shards"][0]["path"]), "X", "data", ".zarray")))
    assert zarray["compressor"] is None and zarray["zarr_format"] == 2


@pytest.mark.parametrize(("agg", "weighted"), [("mean", False), ("sum", False), ("mean", True)])
def test_score_equals_attribution_score(atlas, pbmc, kang, gene_set, agg, weighted):
    weights = np.linspace(0.5, 2.0, len(gene_set)) if weighted else None
    scores = atlas.score(gene_set, agg=agg, weights=weights)
    expected = np.concatenate(
        [_expected(pbmc, gene_set, agg=agg, weights=weights), _expected(kang, gene_set, agg=agg, weights=weights)]
    )
    assert scores.index.tolist() == pbmc.obs_names.tolist() + kang.obs_names.tolist()
    assert scores["score"].dtype == np.float32
    np.testing.assert_allclose(scores["score"].to_numpy(), expected, rtol=1e-6, atol=1e-7)
    assert (scores["score"] > 0).mean() > 0.5  # a real signal, not zeros


def test_score_drops_absent_genes_with_warning_and_reorders(atlas, pbmc, kang, gene_set):
    shuffled = [*gene_set[::-1], "NOT_A_GENE"]
    with pytest.warns(UserWarning, match="NOT_A_GENE"):
        scores = atlas.score(shuffled, columns=[])
    assert list(scores.columns) == ["score"]
    np.testing.assert_allclose(scores["score"].to_numpy()[:240], _expected(pbmc, gene_set), rtol=1e-6)
    # a gene only pbmc has: kang cells get zero attribution there (the gene is outside its data)
    only_pbmc = pbmc.var_names.difference(kang.var_names)
    dense = only_pbmc[np.argmax(np.asarray((pbmc[:, only_pbmc].layers[LAYER] > 0).sum(0)).ravel())]
    one = atlas.score([dense])
    assert (one["score"].to_numpy()[240:] == 0).all() and (one["score"].to_numpy()[:240] > 0).any()


def test_matrix(atlas, pbmc, kang, gene_set):
    matrix = atlas.matrix(gene_set)
    assert matrix.shape == (440, len(gene_set)) and matrix.format == "csr"
    expected = sparse.vstack([pbmc[:, gene_set].layers[LAYER], kang[:, gene_set].layers[LAYER]])
    assert abs(matrix - expected).max() == 0
    sub = atlas.matrix(gene_set[:3], shards=["kang"], obs_filter="condition == 'stim'")
    stim = kang[kang.obs["condition"] == "stim"]
    assert abs(sub - stim[:, gene_set[:3]].layers[LAYER]).max() == 0


def test_obs_filter_query_and_callable(atlas, pbmc, kang, gene_set):
    full = atlas.score(gene_set)
    by_query = atlas.score(gene_set, obs_filter="cell_type == 'B cells'", columns=["cell_type"])
    assert set(by_query["cell_type"]) == {"B cells"}
    assert len(by_query) == (pbmc.obs["cell_type"] == "B cells").sum() + (kang.obs["cell_type"] == "B cells").sum()
    np.testing.assert_array_equal(by_query["score"].to_numpy(), full.loc[by_query.index, "score"].to_numpy())
    # a column only kang has: pbmc shards are skipped with a warning
    stim = atlas.score(gene_set, obs_filter="condition == 'stim'")
    assert len(stim) == (kang.obs["condition"] == "stim").sum()
    by_callable = atlas.score(
        gene_set, obs_filter=lambda obs: obs["cell_type"].astype(str).str.startswith("CD4").to_numpy()
    )
    assert by_callable.index.tolist() == full.index[full["cell_type"].astype(str).str.startswith("CD4")].tolist()
    with pytest.raises(ValueError, match="one boolean per cell"):
        atlas.score(gene_set, obs_filter=lambda obs: np.ones(3, dtype=bool))
    assert isinstance(full["cell_type"].dtype, pd.CategoricalDtype)


def test_add_is_idempotent_and_overwrite(atlas, pbmc):
    before = open(atlas.location.join("atlas.json")).read()
    shard_dirs = sorted(os.listdir(atlas.location.join("shards")))
    atlas.add(pbmc[:150], name="pbmc_a")  # same data again: nothing happens
    assert open(atlas.location.join("atlas.json")).read() == before
    assert sorted(os.listdir(atlas.location.join("shards"))) == shard_dirs
    with pytest.raises(ValueError, match="overwrite=True"):
        atlas.add(pbmc[:100], name="pbmc_a")
    atlas.add(pbmc[:100], name="pbmc_a", overwrite=True)
    assert atlas.info().loc["pbmc_a", "n_cells"] == 100
    assert len(os.listdir(atlas.location.join("shards"))) == 3  # the replaced shard's files are gone
    atlas.remove("pbmc_b")
    assert atlas.shard_names == ["kang", "pbmc_a"] or atlas.shard_names == ["pbmc_a", "kang"]
    assert ss.Atlas(atlas.location.root).n_cells == 300
    atlas.verify()


def test_add_from_h5ad_and_attribution_store(tmp_path, model, pbmc, gene_set):
    h5ad = tmp_path / "pbmc.h5ad"
    pbmc[:100].write_h5ad(h5ad)
    counts = ss.datasets.pbmc3k()[100:160].copy()
    store = tmp_path / "attr.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.pp.attributions(counts, model, method="ixg", out=store, progress=False)
    atlas = ss.Atlas.create(tmp_path / "atlas", gene_order=model.gene_order)
    atlas.add(h5ad, name="from_h5ad")
    atlas.add(store, name="from_store")
    assert atlas.manifest.method == "ixg"
    scores = atlas.score(gene_set)
    np.testing.assert_allclose(scores["score"].to_numpy(), _expected(pbmc[:160], gene_set), rtol=1e-6, atol=1e-7)
    assert scores["cell_type"].iloc[:100].tolist() == pbmc.obs["cell_type"].iloc[:100].tolist()


def test_bad_inputs(tmp_path, model, pbmc):
    with pytest.raises(ValueError, match="exactly one"):
        ss.Atlas.create(tmp_path / "x", gene_order=["A"], model=model)
    with pytest.raises(FileNotFoundError, match="not an atlas"):
        ss.Atlas(tmp_path / "missing")
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    with pytest.raises(FileExistsError):
        ss.Atlas.create(tmp_path / "atlas", model=model)
    with pytest.raises(KeyError, match="No attribution layer"):
        atlas.add(ss.datasets.pbmc3k()[:10].copy(), name="raw")
    with pytest.raises(ValueError, match="Invalid shard name"):
        atlas.add(pbmc, name="a/b")
    with pytest.raises(KeyError, match="no shard 'nope'"):
        atlas.remove("nope")
    other_method = pbmc[:20].copy()
    other_method.uns["sigscan"]["attributions"][LAYER] = {**pbmc.uns["sigscan"]["attributions"][LAYER], "method": "ig"}
    atlas.add(pbmc[:20], name="first")
    with pytest.raises(ValueError, match="method 'ig'"):
        atlas.add(other_method, name="second")
    assert atlas.shard_names == ["first"]


def test_other_gene_order_is_refused(tmp_path, model, pbmc, kang):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc[:50], name="pbmc")
    # attributions of a model with another gene order (the Kang genes only)
    other = ss.models.SCimilarity.random(kang.var_names, hidden_dim=(16,), latent_dim=4)
    data = kang[:30].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.pp.attributions(data, other, method="ixg", progress=False)
    with pytest.raises(ValueError, match=r"Shard 'kang_other'.*1267 genes.*create a separate atlas"):
        atlas.add(data, name="kang_other")
    # without provenance: genes outside the atlas gene order that carry attributions
    renamed = pbmc[:20].copy()
    renamed.var_names = [f"X_{g}" if i % 2 else g for i, g in enumerate(renamed.var_names)]
    del renamed.uns["sigscan"]
    with pytest.raises(ValueError, match=r"Shard 'renamed'.*not in the atlas gene order"):
        atlas.add(renamed, name="renamed")
    # a shard written for another gene order, copied into this atlas, is refused by name
    foreign = ss.Atlas.create(tmp_path / "foreign", gene_order=list(kang.var_names))
    unlabelled = kang[:30].copy()
    del unlabelled.uns["sigscan"]
    foreign.add(unlabelled, name="kang")
    entry = foreign.manifest.shards[0]
    os.rename(foreign.location.join(entry.path), atlas.location.join(entry.path))
    manifest = json.loads(open(atlas.location.join("atlas.json")).read())
    manifest["shards"].append({**json.loads(foreign.manifest.to_json())["shards"][0]})
    open(atlas.location.join("atlas.json"), "w").write(json.dumps(manifest))
    atlas.refresh()
    with pytest.raises(ShardError, match=r"Shard 'kang'.*another gene order.*atlas.remove\('kang'\)"):
        atlas.score(["LYZ"])
    with pytest.raises(ValueError, match="kang"):
        atlas.verify()


def test_missing_and_corrupt_shards(atlas, gene_set):
    entry = atlas.manifest.shard("pbmc_b")
    shard = atlas.location.join(entry.path)
    atlas.verify()
    # flip bytes of the data chunk: only verify() can see it, and it names the shard
    chunk = os.path.join(shard, "X", "data", "0")
    raw = bytearray(open(chunk, "rb").read())
    raw[4:8] = np.float32(123.0).tobytes()
    open(chunk, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match=r"pbmc_b.*checksum"):
        ss.Atlas(atlas.location.root).verify()
    # a missing chunk file: scoring names the shard
    os.remove(os.path.join(shard, "X", "indices", "0"))
    with pytest.raises(ShardError, match=r"Shard 'pbmc_b'.*missing or damaged"):
        ss.Atlas(atlas.location.root).score(gene_set)
    # a missing shard folder
    import shutil

    shutil.rmtree(shard)
    fresh = ss.Atlas(atlas.location.root)
    with pytest.raises(ShardError, match=r"Shard 'pbmc_b' is missing"):
        fresh.score(gene_set)
    assert len(fresh.score(gene_set, shards=["pbmc_a", "kang"])) == 350  # the others still work
    fresh.remove("pbmc_b")
    fresh.verify()


def test_damaged_manifest_and_leftover_tmp(atlas):
    open(atlas.location.join("atlas.json.tmp"), "w").write("{ half written")
    assert ss.Atlas(atlas.location.root).n_cells == 440  # a leftover .tmp is ignored
    open(atlas.location.join("atlas.json"), "w").write("{ half written")
    with pytest.raises(ValueError, match="not valid JSON"):
        ss.Atlas(atlas.location.root)


def test_concurrent_readers_see_old_or_new_manifest(tmp_path, model, pbmc):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    seen, errors, done = set(), [], threading.Event()

    def read():
        while not done.is_set():
            try:
                reader = ss.Atlas(tmp_path / "atlas")
                seen.add(tuple(reader.shard_names))
                for entry in reader.manifest.shards:
                    assert os.path.exists(reader.location.join(entry.path, "X", "indptr", ".zarray"))
            except Exception as error:  # pragma: no cover - the failure being tested for
                errors.append(error)

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(6):
        atlas.add(pbmc[i * 20 : (i + 1) * 20], name=f"s{i}")
    done.set()
    thread.join()
    assert not errors
    assert seen <= {tuple(f"s{j}" for j in range(i)) for i in range(7)}
    assert len(seen) >= 2


def test_memory_url(model, pbmc, gene_set):
    url = f"memory://sigscan-test-{os.getpid()}/atlas"
    atlas = ss.Atlas.create(url, model=model)
    atlas.add(pbmc[:60], name="a")
    atlas.add(pbmc[60:100], name="b")
    scores = ss.Atlas(url).score(gene_set)
    np.testing.assert_allclose(scores["score"].to_numpy(), _expected(pbmc[:100], gene_set), rtol=1e-6, atol=1e-7)
    ss.Atlas(url).verify()


def test_compressed_shard_is_read_through_zarr(atlas, pbmc, kang, gene_set):
    # a shard whose X/data and X/indices another tool rewrote with compression: columns are decoded through zarr
    import zarr

    before = atlas.score(gene_set)
    group = zarr.open_group(atlas.location.join(atlas.manifest.shard("kang").path), mode="r+")
    for key in ("data", "indices"):
        values = group[f"X/{key}"][:]
        del group[f"X/{key}"]
        group["X"].create_array(key, shape=values.shape, dtype=values.dtype, chunks=(1000,))[:] = values
    assert json.load(open(atlas.location.join(atlas.manifest.shard("kang").path, "X", "data", ".zarray")))["compressor"]
    pd.testing.assert_frame_equal(ss.Atlas(atlas.location.root).score(gene_set), before)
    ss.Atlas(atlas.location.root).verify()
