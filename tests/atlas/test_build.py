"""Atlas.build: block-wise attributions into shards, identical to pp.attributions + Atlas.add; resume; failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan.atlas import _build

BATCH = 32
SETTINGS = {"method": "ig", "n_steps": 4, "batch_size": BATCH}


@pytest.fixture(scope="module")
def data():
    """Counts of 160 PBMC3k cells and 96 Kang cells (a subset of the model's genes)."""
    pbmc = ss.datasets.pbmc3k()[:160].copy()
    kang = ss.datasets.kang_ifnb()
    kang = kang[np.random.default_rng(0).choice(kang.n_obs, 96, replace=False)].copy()
    return {"pbmc": pbmc, "kang": kang}


@pytest.fixture(scope="module")
def build_model(data):
    return ss.models.SCimilarity.random(data["pbmc"].var_names, hidden_dim=(16,), latent_dim=4, random_state=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, build_model):
    """The single-process atlas: pp.attributions then Atlas.add, per dataset."""
    atlas = ss.Atlas.create(tmp_path_factory.mktemp("ref") / "atlas", model=build_model)
    for name, adata in data.items():
        adata = adata.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ss.pp.attributions(adata, build_model, progress=False, **SETTINGS)
        atlas.add(adata, name=name)
    return atlas


def assert_same_atlas(atlas, reference):
    assert atlas.shard_names == reference.shard_names
    for name in reference.shard_names:
        ours, theirs = atlas._reader(atlas.manifest.shard(name)), reference._reader(reference.manifest.shard(name))
        for a, b in zip(ours.read_all(), theirs.read_all(), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)  # bit-identical, not close
        assert ours.obs().equals(theirs.obs())
        assert atlas.manifest.shard(name).checksum == reference.manifest.shard(name).checksum
    assert not list(_build.blocks_on_disk(atlas.location))


def _count_blocks(monkeypatch):
    computed = []
    original = _build.compute_block

    def counting(block, *args, **kwargs):
        computed.append(block.label)
        return original(block, *args, **kwargs)

    monkeypatch.setattr(_build, "compute_block", counting)
    return computed


def test_build_threads_equals_single_process(tmp_path, data, build_model, reference, monkeypatch):
    data["kang"].write_h5ad(tmp_path / "kang.h5ad")
    computed = _count_blocks(monkeypatch)
    atlas = ss.Atlas.build(
        tmp_path / "atlas",
        {"pbmc": data["pbmc"], "kang": tmp_path / "kang.h5ad"},
        build_model,
        block_size=2 * BATCH,
        progress=False,
        **SETTINGS,
    )
    assert_same_atlas(atlas, reference)
    assert len(computed) == 3 + 2  # ceil(160 / 64) + ceil(96 / 64)
    # building again computes nothing: both shards are there with these settings
    ss.Atlas.build(tmp_path / "atlas", {"pbmc": data["pbmc"]}, build_model, progress=False, **SETTINGS)
    assert len(computed) == 5
    with pytest.raises(ValueError, match="multiple of the attribution batch size"):
        ss.Atlas.build(tmp_path / "other", {"pbmc": data["pbmc"]}, build_model, block_size=50, **SETTINGS)
    assert ss.Atlas(tmp_path / "atlas").score(["LYZ", "CD14"], columns=[], progress=False).shape == (256, 1)


def test_cells_per_shard_splits_a_source(tmp_path, data, build_model, reference):
    atlas = ss.Atlas.build(
        tmp_path / "atlas",
        {"pbmc": data["pbmc"]},
        build_model,
        block_size=2 * BATCH,
        cells_per_shard=4 * BATCH,
        progress=False,
        **SETTINGS,
    )
    assert atlas.shard_names == ["pbmc-00000", "pbmc-00001"]
    assert list(atlas.info()["n_cells"]) == [128, 32]
    genes = ["LYZ", "CD14", "S100A8", "CD3E", "MS4A1"]
    split = atlas.score(genes, progress=False)
    whole = reference.score(genes, shards=["pbmc"], progress=False)
    pd.testing.assert_frame_equal(split, whole)
    with pytest.raises(ValueError, match="multiple of block_size"):
        ss.Atlas.build(tmp_path / "x", {"pbmc": data["pbmc"]}, build_model, cells_per_shard=100, **SETTINGS)


def test_gene_mismatch_is_refused_before_any_work(tmp_path, data, build_model, monkeypatch):
    computed = _count_blocks(monkeypatch)
    foreign = data["kang"].copy()
    foreign.var_names = [f"GENE{i}" for i in range(foreign.n_vars)]
    with pytest.raises(ValueError, match="genes of scimilarity were found"):
        ss.Atlas.build(
            tmp_path / "atlas", {"pbmc": data["pbmc"], "foreign": foreign}, build_model, progress=False, **SETTINGS
        )
    assert computed == []  # the good source listed first was not started either
    assert not list(_build.blocks_on_disk(ss.Atlas(tmp_path / "atlas").location))


def test_failed_block_is_retried_then_reported_by_name(tmp_path, data, build_model, reference, monkeypatch):
    original = _build.Source.read
    failures = {"left": 10}

    def flaky(self, lo, hi):
        if self.name == "kang" and lo == 64 and failures["left"]:
            failures["left"] -= 1
            raise OSError("simulated read error")
        return original(self, lo, hi)

    monkeypatch.setattr(_build.Source, "read", flaky)
    data["kang"].write_h5ad(tmp_path / "kang.h5ad")
    data["pbmc"].write_h5ad(tmp_path / "pbmc.h5ad")
    sources = [tmp_path / "pbmc.h5ad", tmp_path / "kang.h5ad"]
    with pytest.raises(_build.BuildError, match=r"kang\[64:96\]: OSError: simulated read error"):
        ss.Atlas.build(tmp_path / "atlas", sources, build_model, block_size=64, retries=2, progress=False, **SETTINGS)
    assert failures["left"] == 7  # tried 1 + 2 times
    atlas = ss.Atlas(tmp_path / "atlas")
    assert atlas.shard_names == ["pbmc"]  # the source without failures is committed
    assert len(list(_build.blocks_on_disk(atlas.location))) == 1  # kang's finished block is kept
    # one transient failure is absorbed by a retry; the rerun computes only the missing block
    failures["left"] = 1
    computed = _count_blocks(monkeypatch)
    atlas = ss.Atlas.build(tmp_path / "atlas", sources, build_model, block_size=64, progress=False, **SETTINGS)
    assert computed == ["kang[64:96]", "kang[64:96]"]
    assert_same_atlas(atlas, reference)


def test_resume_after_sigkill(tmp_path, data, build_model, reference, monkeypatch):
    build_model.save(tmp_path / "model")
    for name, adata in data.items():
        adata.write_h5ad(tmp_path / f"{name}.h5ad")
    script = textwrap.dedent(
        f"""
        import os, signal, warnings
        warnings.simplefilter("ignore")
        import sigscan as ss
        from sigscan.atlas import _build

        original, done = _build.compute_block, []

        def dying(block, *args, **kwargs):
            if len(done) == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            done.append(original(block, *args, **kwargs))

        _build.compute_block = dying
        ss.Atlas.build({str(tmp_path / "atlas")!r}, [{str(tmp_path / "kang.h5ad")!r}],
                       "scimilarity:{tmp_path / "model"}", method="ig", n_steps=4, batch_size={BATCH},
                       block_size={BATCH}, progress=False)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr
    atlas = ss.Atlas(tmp_path / "atlas")
    assert atlas.shard_names == []
    assert len(list(_build.blocks_on_disk(atlas.location))) == 1
    computed = _count_blocks(monkeypatch)
    atlas = ss.Atlas.build(
        tmp_path / "atlas",
        [tmp_path / "pbmc.h5ad", tmp_path / "kang.h5ad"],
        f"scimilarity:{tmp_path / 'model'}",
        block_size=BATCH,
        progress=False,
        **SETTINGS,
    )
    assert len(computed) == 5 + 3 - 1  # 160 / 32 + 96 / 32 blocks, 1 finished before the kill
    assert "kang[0:32]" not in computed
    assert_same_atlas(atlas, reference)


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_distributed_cluster_equals_threads(tmp_path, data, build_model, reference, processes):
    distributed = pytest.importorskip("distributed")
    data["kang"].write_h5ad(tmp_path / "kang.h5ad")
    build_model.module.train()
    with (
        warnings.catch_warnings(),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        warnings.simplefilter("ignore")
        atlas = ss.Atlas.build(
            tmp_path / "atlas",
            {"pbmc": data["pbmc"], "kang": tmp_path / "kang.h5ad"},
            build_model,
            client=client,
            block_size=2 * BATCH,
            progress=False,
            **SETTINGS,
        )
    assert_same_atlas(atlas, reference)
    assert build_model.module.training  # an in-process cluster used this object: its state is restored
    build_model.module.eval()


def test_soma_input_equals_anndata(tmp_path, data, build_model, reference):
    tiledbsoma_io = pytest.importorskip(
        "tiledbsoma.io", reason="tiledbsoma is not installed (pip install sigscan[soma])"
    )
    for name, adata in data.items():
        tiledbsoma_io.from_anndata(str(tmp_path / name), adata, measurement_name="RNA", X_layer_name="raw")
    # pp.attributions: a SOMA URI gives a new AnnData with the query's cells and the same attributions
    expected = data["kang"].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.pp.attributions(expected, build_model, progress=False, **SETTINGS)
        result = ss.pp.attributions(str(tmp_path / "kang"), build_model, progress=False, **SETTINGS)
    key = "attr_scimilarity_ig"
    assert result.obs_names.equals(expected.obs_names) and result.var_names.equals(expected.var_names)
    assert (result.layers[key] != expected.layers[key]).nnz == 0
    assert result.obs["cell_type"].astype(str).equals(expected.obs["cell_type"].astype(str))
    # a value filter selects cells without reading the rest
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monocytes = ss.pp.attributions(
            str(tmp_path / "kang"), build_model, progress=False, obs_value_filter="cell_type == 'CD14+ Monocytes'"
        )
    assert monocytes.n_obs == int((expected.obs["cell_type"] == "CD14+ Monocytes").sum()) > 0
    # Atlas.build: SOMA sources give the same shards
    atlas = ss.Atlas.build(
        tmp_path / "atlas",
        {name: str(tmp_path / name) for name in data},
        build_model,
        block_size=2 * BATCH,
        progress=False,
        **SETTINGS,
    )
    assert_same_atlas_values(atlas, reference)


def assert_same_atlas_values(atlas, reference):
    """Same attributions and cell names (SOMA obs columns come back with their own dtypes)."""
    for name in reference.shard_names:
        ours, theirs = atlas._reader(atlas.manifest.shard(name)), reference._reader(reference.manifest.shard(name))
        for a, b in zip(ours.read_all(), theirs.read_all(), strict=True):
            np.testing.assert_array_equal(a, b)
        assert ours.obs().index.equals(theirs.obs().index)
        assert atlas.manifest.shard(name).checksum == reference.manifest.shard(name).checksum


def test_cli_build_computes_raw_counts(tmp_path, data, build_model, reference, capsys):
    from sigscan.cli import main

    build_model.save(tmp_path / "model")
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name, adata in data.items():
        adata.write_h5ad(folder / f"{name}.h5ad")
    args = ["atlas", "build", str(tmp_path / "atlas"), str(folder), "--model", f"scimilarity:{tmp_path / 'model'}"]
    args += ["--method", "ig", "--n-steps", "4", "--batch-size", str(BATCH), "--block-size", str(2 * BATCH)]
    assert main(args) == 0
    assert "2 shards, 256 cells" in capsys.readouterr().out
    atlas = ss.Atlas(tmp_path / "atlas")
    assert sorted(atlas.shard_names) == ["kang", "pbmc"]
    for name in atlas.shard_names:
        ours, theirs = atlas._reader(atlas.manifest.shard(name)), reference._reader(reference.manifest.shard(name))
        np.testing.assert_array_equal(ours.read_all()[0], theirs.read_all()[0])
    assert main(["atlas", "build", str(tmp_path / "other"), str(folder / "kang.h5ad")]) != 0
    assert "--model" in capsys.readouterr().err


def test_atlas_build_in_process_leaves_model_state(tmp_path, data, build_model):
    build_model.module.train()
    ss.Atlas.build(tmp_path / "atlas", {"pbmc": data["pbmc"][:40]}, build_model, method="ixg", progress=False)
    assert build_model.module.training
    assert all(p.requires_grad for p in build_model.module.parameters())
    build_model.module.eval()
    assert os.path.exists(tmp_path / "atlas" / "atlas.json")
