import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss

LAYER = "attr_scimilarity_ixg"

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")

# Each stage pauses a real `add` at one point of the write; the test kills the process there with SIGKILL.
_STAGES = {
    # in the middle of writing the shard: obs and var are on disk, X is being written, uns is not
    "writing_shard": """
        import anndata.io
        original = anndata.io.write_elem
        def write_elem(group, key, *args, **kwargs):
            if key == "uns":
                pause()
            return original(group, key, *args, **kwargs)
        anndata.io.write_elem = write_elem
    """,
    # the shard is complete and renamed into place, the manifest is not yet replaced
    "before_manifest": """
        from sigscan.atlas import _location
        original = _location.Location.rename
        def rename(self, source, target):
            original(self, source, target)
            pause()
        _location.Location.rename = rename
    """,
    # atlas.json.tmp is written and flushed, os.replace has not run
    "replacing_manifest": """
        import os
        original = os.replace
        def replace(source, target):
            if str(target).endswith("atlas.json"):
                pause()
            original(source, target)
        os.replace = replace
    """,
}


@pytest.mark.parametrize("stage", list(_STAGES))
def test_killed_add_leaves_previous_atlas(tmp_path, model, pbmc, gene_set, stage):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc[:100], name="old")
    before = atlas.score(gene_set)
    manifest_before = open(atlas.location.join("atlas.json")).read()
    new = tmp_path / "new.h5ad"
    pbmc[100:].write_h5ad(new)
    flag = tmp_path / "paused"
    script = (
        textwrap.dedent(
            f"""
        import time, pathlib
        def pause():
            pathlib.Path({str(flag)!r}).touch()
            time.sleep(120)
        """
        )
        + textwrap.dedent(_STAGES[stage])
        + textwrap.dedent(
            f"""
        import sigscan as ss
        ss.Atlas({str(tmp_path / "atlas")!r}).add({str(new)!r}, name="new")
        """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not flag.exists():
        if process.poll() is not None:
            pytest.fail(f"the writer exited early: {process.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            process.kill()
            pytest.fail("the writer never reached the pause point")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    reopened = ss.Atlas(tmp_path / "atlas")
    assert open(reopened.location.join("atlas.json")).read() == manifest_before
    assert reopened.shard_names == ["old"]
    pd.testing.assert_frame_equal(reopened.score(gene_set), before)
    # the killed writer's leftovers (its shard folder; its temporary manifest) are reported, never silently kept
    folder = r"shards/new\.\d+-[0-9a-f]{12}\.zarr" + (r"\.partial" if stage == "writing_shard" else "")
    n_left = 2 if stage == "replacing_manifest" else 1
    with pytest.raises(
        ValueError, match=rf"{n_left} leftovers of interrupted writes \({folder}.*verify\(repair=True\)"
    ):
        reopened.verify()
    if stage == "before_manifest":  # deleted on request ...
        report = reopened.verify(repair=True)
        assert report["ok"].all() and report["problem"].str.endswith("deleted").sum() == 1
    # ... or by the next write; the interrupted add can simply be run again
    reopened.add(new, name="new")
    assert reopened.shard_names == ["old", "new"]
    assert sorted(os.listdir(reopened.location.join("shards"))) == sorted(
        os.path.basename(e.path) for e in reopened.manifest.shards
    )
    assert not [n for n in os.listdir(reopened.location.root) if n.endswith(".tmp")]
    assert not os.listdir(reopened.location.join(".writers"))  # the dead writer's liveness file too
    report = reopened.verify()
    assert report.index.tolist() == ["old", "new"]


def test_dask_backends_equal_threads(tmp_path, model, pbmc, kang, gene_set):
    distributed = pytest.importorskip("distributed")
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc[:120], name="a")
    atlas.add(pbmc[120:], name="b")
    atlas.add(kang, name="kang")
    weights = np.linspace(1, 3, len(gene_set))
    threads = atlas.score(gene_set, weights=weights, obs_filter="cell_type != 'B cells'")
    single = atlas.score(gene_set, weights=weights, obs_filter="cell_type != 'B cells'", n_jobs=1)
    pd.testing.assert_frame_equal(threads, single)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        delayed = atlas.score(gene_set, weights=weights, obs_filter="cell_type != 'B cells'", backend="dask")
        with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
            on_cluster = atlas.score(gene_set, weights=weights, obs_filter="cell_type != 'B cells'", backend=client)
    pd.testing.assert_frame_equal(delayed, threads)
    pd.testing.assert_frame_equal(on_cluster, threads)
    with pytest.raises(ValueError, match="Unknown backend"):
        atlas.score(gene_set, backend="spark")


def test_hits_workflow_on_atlas_scores(tmp_path, model, kang, gene_set):
    if not hasattr(ss.tl, "hits") or not hasattr(ss.tl, "sample_hits"):
        pytest.skip("ss.tl.hits / ss.tl.sample_hits are not in this branch yet (issue 3); run after merging")
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    for donor in ("101", "107"):
        atlas.add(kang[kang.obs["donor"].astype(str) == donor].copy(), name=f"donor{donor}")
    df = atlas.score(gene_set, columns=["sample", "condition", "cell_type"])
    df["disease"] = df["condition"]
    result = ss.tl.hits(df, "score", percentile=90, groupby="cell_type", key_added="hit")
    table = df if result is None else result
    assert table["hit"].dtype == bool
    # about 10% hits within each cell type
    assert np.allclose(table.groupby("cell_type", observed=True)["hit"].mean(), 0.1, atol=0.06)
    fractions = ss.tl.sample_hits(table, "hit", sample_key="sample", groupby="disease", min_cells=10, min_samples=2)
    assert len(fractions) == 4
    counts = kang.obs["sample"].astype(str).value_counts()
    by_sample = fractions.set_index(fractions["sample"].astype(str))
    assert by_sample["n_cells"].to_dict() == counts.to_dict()
    expected = table.groupby(table["sample"].astype(str))["hit"].mean()
    np.testing.assert_allclose(by_sample["hit_fraction"].sort_index(), expected.sort_index())
    if hasattr(ss.pl, "sample_hits"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ss.pl.sample_hits(fractions)
        plt.close("all")


def test_signature_tiledb_import(tmp_path, model, pbmc, gene_set):
    tiledb = pytest.importorskip("tiledb", reason="the optional tiledb extra is not installed")
    # a TileDB array laid out as the reference SIGnature.create_tiledb writes it
    matrix = sparse.coo_matrix(pbmc.layers[LAYER])
    n_cells, n_genes = matrix.shape
    uri = str(tmp_path / "attributions.tdb")
    schema = tiledb.ArraySchema(
        domain=tiledb.Domain(
            tiledb.Dim(name="x", domain=(0, n_cells - 1), dtype=np.uint32),
            tiledb.Dim(name="y", domain=(0, n_genes - 1), dtype=np.uint32),
        ),
        sparse=True,
        cell_order="col-major",
        tile_order="col-major",
        attrs=[tiledb.Attr(name="vals", dtype=np.float32, filters=tiledb.FilterList([tiledb.GzipFilter()]))],
    )
    tiledb.SparseArray.create(uri, schema)
    with tiledb.open(uri, "w") as array:
        array[matrix.row.astype(np.uint32), matrix.col.astype(np.uint32)] = {"vals": matrix.data}
    atlas = ss.Atlas.from_signature_tiledb(
        uri, list(model.gene_order), pbmc.obs, path=tmp_path / "atlas", cells_per_shard=100, method="ixg"
    )
    assert atlas.shard_names == ["signature-0", "signature-1", "signature-2"]
    assert atlas.n_cells == n_cells and atlas.manifest.method == "ixg"
    scores = atlas.score(gene_set, columns=["cell_type"])
    expected = pbmc.copy()
    ss.tl.attribution_score(expected, gene_set, layer=LAYER)
    np.testing.assert_allclose(scores["score"].to_numpy(), expected.obs["attribution_score"].to_numpy(), rtol=1e-6)
    assert scores.index.tolist() == pbmc.obs_names.tolist()
    assert abs(atlas.matrix(gene_set) - pbmc[:, gene_set].layers[LAYER]).max() == 0
    with pytest.raises(ValueError, match="gene_order has 3"):
        ss.Atlas.from_signature_tiledb(uri, ["A", "B", "C"], pbmc.obs, path=tmp_path / "other")
