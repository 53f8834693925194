"""A process's first query: the SciPy kernel equals numba's bit for bit; obs read from chunk files equal anndata's."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import sparse

import sigscan as ss
from sigscan.atlas import _kernels
from sigscan.atlas._numba_kernels import range_sums
from sigscan.atlas._obs import NAMES_PATH, names_dtype, read_obs


@pytest.mark.parametrize("unit_weights", [False, True])
def test_scipy_kernel_equals_numba_bit_for_bit(monkeypatch, unit_weights):
    rng = np.random.default_rng(0)
    matrix = sparse.random(500, 300, density=0.1, format="csc", dtype=np.float32, random_state=rng)
    matrix.data *= 1e3  # attributions sum to 1,000 per cell: sums of many magnitudes, where rounding order shows
    data, indices, indptr = matrix.data, matrix.indices.astype(np.int32), matrix.indptr.astype(np.int64)
    columns = np.sort(rng.choice(300, 40, replace=False))
    columns[:2] = [columns[2] - 1, columns[2] - 1] if columns[2] > 0 else columns[:2]  # a repeated column
    weights = np.ones(len(columns)) if unit_weights else rng.uniform(0.5, 2, len(columns))
    starts, stops = indptr[columns], indptr[columns + 1]
    col_ptr = np.r_[0, np.cumsum(stops - starts)]
    gathered = [np.concatenate([a[s:e] for s, e in zip(starts, stops, strict=True)]) for a in (data, indices)]
    by_scipy, bad_scipy = _kernels._scipy_sums(*gathered, col_ptr, weights, 500)
    by_numba = np.zeros(500)
    bad_numba = range_sums(data, indices, starts, stops, weights, by_numba)
    np.testing.assert_array_equal(by_scipy, by_numba)  # same products added in the same order
    assert bad_scipy == bad_numba == 0
    np.testing.assert_allclose(by_scipy, matrix[:, columns] @ weights, rtol=1e-12)
    # out-of-range row numbers are counted and skipped by both
    broken = indices.copy()
    broken[starts[3]] = 10_000
    broken[starts[3] + 1] = -1
    broken_gathered = np.concatenate([broken[s:e] for s, e in zip(starts, stops, strict=True)])
    sums, bad = _kernels._scipy_sums(gathered[0], broken_gathered, col_ptr, weights, 500)
    reference = np.zeros(500)
    assert bad == range_sums(data, broken, starts, stops, weights, reference) == 2
    np.testing.assert_array_equal(sums, reference)
    # the public entry points give the same sums on every path (numba, SciPy; the C library is tested on its own)
    _kernels.start_loading(wait=True)
    monkeypatch.setattr(_kernels._compiled, "kernel", lambda: None)
    for ready in (True, False):
        monkeypatch.setattr(_kernels, "numba_ready", lambda start=False, ready=ready: ready)
        by_ranges, bad = _kernels.sum_column_ranges(data, indices, starts, stops, weights, 500)
        np.testing.assert_array_equal(by_ranges, by_numba)
        assert bad == 0
        by_slice = _kernels.weighted_column_sums(*gathered, col_ptr, weights, 500)
        np.testing.assert_array_equal(by_slice, by_numba)


def test_fast_obs_reader_equals_anndata(tmp_path):
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(["B", "T", "B", "NK"] * 25),
            "ordered": pd.Categorical(["lo", "hi"] * 50, categories=["lo", "hi"], ordered=True),
            "n_counts": np.arange(100, dtype=np.float32),
            "flag": np.arange(100) % 3 == 0,
            "name": [f"s{i}" for i in range(100)],
        },
        index=pd.Index([f"cell{i}" for i in range(100)]),
    )
    ad.AnnData(obs=obs).write_zarr(tmp_path / "a.zarr")
    expected = ad.io.read_elem(zarr.open_group(tmp_path / "a.zarr", mode="r")["obs"])
    # same values; the cell names come back as pandas' Arrow-backed strings (the atlas's index dtype)
    pd.testing.assert_frame_equal(read_obs(str(tmp_path / "a.zarr")), expected, check_index_type=False)
    assert read_obs(str(tmp_path / "a.zarr")).index.dtype == names_dtype()
    pd.testing.assert_frame_equal(
        read_obs(str(tmp_path / "a.zarr"), ["flag", "cell_type"]),
        expected[["flag", "cell_type"]],
        check_index_type=False,
    )
    # an encoding it does not decode (nullable integers) falls back to anndata (None)
    obs["nullable"] = pd.array([1, None] * 50, dtype="Int64")
    ad.AnnData(obs=obs).write_zarr(tmp_path / "b.zarr")
    assert read_obs(str(tmp_path / "b.zarr")) is None
    assert read_obs(str(tmp_path / "b.zarr"), ["cell_type"]) is not None


def test_score_reads_only_requested_obs_columns(tmp_path, model, pbmc, gene_set):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    fresh = ss.Atlas(tmp_path / "atlas")
    scores = fresh.score(gene_set, columns=["cell_type"], progress=False)
    assert list(scores.columns) == ["cell_type", "score"]
    assert fresh._reader(fresh.manifest.shard("pbmc"))._obs is None  # the full obs was never read
    full = fresh.score(gene_set, progress=False)
    pd.testing.assert_series_equal(full["score"], scores["score"])
    assert full["cell_type"].astype(str).equals(pbmc.obs["cell_type"].astype(str))
    with pytest.raises(KeyError, match="in no shard"):
        ss.Atlas(tmp_path / "atlas").score(gene_set, columns=["nope"], progress=False)


def _strip_names_copy(shard: str) -> None:
    """Make a shard look like one written before the offsets + bytes copy of the cell names (and the header) existed."""
    import json
    import shutil
    from pathlib import Path

    from sigscan.atlas._header import HEADER
    from sigscan.atlas._obs import NAMES_KEY, NAMES_PATH
    from sigscan.atlas._shard import ATTRS

    shutil.rmtree(Path(shard, HEADER))
    shutil.rmtree(Path(shard, NAMES_PATH))
    attrs_file = Path(shard, "X", ".zattrs")
    attrs = json.loads(attrs_file.read_text())
    del attrs[ATTRS][NAMES_KEY]
    attrs_file.write_text(json.dumps(attrs))


def test_names_copy_and_old_format_shards(tmp_path, pbmc, kang, gene_set, model):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    atlas.add(kang, name="kang")
    new = ss.Atlas(tmp_path / "atlas").score(gene_set, progress=False)
    # the names copy holds the obs names; anndata still reads the shard (it ignores the copy) and agrees
    path = tmp_path / "atlas" / ss.Atlas(tmp_path / "atlas").manifest.shard("pbmc").path
    assert (path / NAMES_PATH / "offsets" / "0").exists()
    stored = ad.read_zarr(path)
    assert stored.obs_names.tolist() == pbmc.obs_names.tolist()
    assert new.index.dtype == names_dtype()
    assert new.index.tolist() == pbmc.obs_names.tolist() + kang.obs_names.tolist()
    expected = pd.concat([pbmc.obs, kang.obs])
    assert new["cell_type"].astype(str).tolist() == expected["cell_type"].astype(str).tolist()
    # a shard written before the copy existed (obs/_index only) reads the same
    for entry in atlas.manifest.shards:
        _strip_names_copy(str(tmp_path / "atlas" / entry.path))
    old_atlas = ss.Atlas(tmp_path / "atlas")
    assert not old_atlas._reader(old_atlas.manifest.shard("pbmc")).has_names_copy
    old = old_atlas.score(gene_set, progress=False)
    pd.testing.assert_frame_equal(old, new)
    pd.testing.assert_frame_equal(old_atlas.obs(), ss.Atlas(tmp_path / "atlas").obs())
    assert old_atlas.verify(progress=False)["ok"].all()


def test_damaged_names_copy_names_the_shard(tmp_path, pbmc, gene_set, model):
    import shutil

    from sigscan.atlas._header import HEADER

    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    folder = tmp_path / "atlas" / atlas.manifest.shard("pbmc").path / NAMES_PATH
    expected = ss.Atlas(tmp_path / "atlas").score(gene_set, progress=False)
    offsets = np.frombuffer((folder / "offsets" / "0").read_bytes(), dtype="<i8").copy()
    offsets[5] = offsets[4] - 1  # decreasing: the buffers cannot be wrapped safely
    (folder / "offsets" / "0").write_bytes(offsets.tobytes())
    # queries read the names from the query header; verify compares all copies
    pd.testing.assert_frame_equal(ss.Atlas(tmp_path / "atlas").score(gene_set, progress=False), expected)
    with pytest.raises(ValueError, match=r"damaged shards \(pbmc\)"):
        ss.Atlas(tmp_path / "atlas").verify(progress=False)
    shutil.rmtree(tmp_path / "atlas" / atlas.manifest.shard("pbmc").path / HEADER)  # as written before headers
    with pytest.raises(ss.atlas.ShardError, match=r"Shard 'pbmc'.*offsets do not start at 0, decrease"):
        ss.Atlas(tmp_path / "atlas").score(gene_set, progress=False)
    # names changed in place (still valid offsets and UTF-8): verify finds them (checksum and obs/_index)
    offsets[5] = offsets[4] + 3  # cells 4 and 5 get other names
    (folder / "offsets" / "0").write_bytes(offsets.tobytes())
    with pytest.raises(ValueError, match=r"damaged shards \(pbmc\)"):
        ss.Atlas(tmp_path / "atlas").verify(progress=False)


def test_atlas_command_imports_neither_torch_nor_scanpy(tmp_path, pbmc, gene_set, model):
    import subprocess
    import sys

    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    out = tmp_path / "scores.csv"
    code = (
        "import sys; from sigscan.cli import main; "
        f"assert main(['atlas', 'score', {str(tmp_path / 'atlas')!r}, '--genes', {','.join(gene_set)!r}, "
        f"'--out', {str(out)!r}]) == 0; "
        "print(sorted(m for m in ('torch', 'scanpy', 'anndata', 'dask', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    scores = pd.read_csv(out, index_col=0)
    assert scores.index.tolist() == pbmc.obs_names.tolist()
