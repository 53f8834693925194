"""Concurrent writers, readers racing a remove, leftovers of killed writers, and damage detected by queries."""

import json
import multiprocessing
import os
import traceback

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan.atlas import ShardError

GENES = [f"gene{i}" for i in range(40)]
SET = ["gene3", "gene7", "gene11", "gene20"]
#: adds per writer process in the concurrency test
N_ADDS = 8


def _data(seed: int, n_cells: int = 30) -> ad.AnnData:
    """A small attribution matrix over GENES (every gene of SET carries values)."""
    rng = np.random.default_rng(seed)
    matrix = sparse.random(n_cells, len(GENES), density=0.4, random_state=rng, dtype=np.float32, format="csr")
    matrix.data = (matrix.data - 0.5) * 4
    adata = ad.AnnData(
        obs=pd.DataFrame(
            {"group": [f"g{i % 3}" for i in range(n_cells)]}, index=[f"s{seed}-c{i}" for i in range(n_cells)]
        ),
        var=pd.DataFrame(index=GENES),
    )
    adata.layers["attributions"] = matrix
    return adata


def _expected(adata: ad.AnnData, genes: list[str]) -> np.ndarray:
    columns = [GENES.index(g) for g in genes]
    return np.asarray(adata.layers["attributions"][:, columns].mean(axis=1)).ravel()


@pytest.fixture
def small(tmp_path):
    atlas = ss.Atlas.create(tmp_path / "atlas", gene_order=GENES)
    for seed, name in enumerate(["a", "b", "c"]):
        atlas.add(_data(seed), name=name, layer="attributions")
    return atlas


# --- concurrency -------------------------------------------------------------------------------------------------


def _writer(path: str, worker: int, log: str, start) -> None:
    """Child process: many adds and removes, each outcome logged."""
    atlas = ss.Atlas(path)
    outcomes = []
    ops = [("add", f"w{worker}-{i}", 100 * worker + i) for i in range(N_ADDS)]
    ops.insert(2, ("add", "shared", 1000 + worker))  # every worker adds another dataset under one name
    ops.insert(4, ("remove", f"w{worker}-0", None))
    ops.insert(6, ("remove", f"w{worker}-missing", None))  # fails
    ops.append(("remove", f"w{worker}-3", None))
    start.wait()
    for op, name, seed in ops:
        try:
            if op == "add":
                atlas.add(_data(seed, n_cells=10 + seed % 7), name=name, layer="attributions")
                checksum = atlas.manifest.shard(name).checksum
            else:
                atlas.remove(name)
                checksum = None
            outcomes.append({"op": op, "name": name, "ok": True, "checksum": checksum})
        except Exception as error:
            outcomes.append({"op": op, "name": name, "ok": False, "error": "".join(traceback.format_exception(error))})
    with open(log, "w") as handle:
        json.dump(outcomes, handle)


def test_a_new_writer_is_never_seen_as_dead(tmp_path, monkeypatch):
    # another process sweeping while a writer registers (between creating and locking its liveness file) must not
    # take it for a dead writer's file: it would delete it, and later sweep the writer's shard folder as an orphan
    import fcntl

    from sigscan.atlas import _lock

    atlas = ss.Atlas.create(tmp_path / "atlas", gene_order=GENES)
    flock, seen = fcntl.flock, []

    def sweep_then_lock(fd, operation):
        context = multiprocessing.get_context("fork")
        child = context.Process(target=_lock.dead_writer_files, args=(atlas.location,))
        child.start()
        child.join(timeout=60)
        seen.append(sorted(os.listdir(atlas.location.join(_lock.WRITERS))))
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", sweep_then_lock)
    with _lock.Writer(atlas.location) as writer:
        monkeypatch.setattr(fcntl, "flock", flock)
        assert seen and all(names for names in seen)  # the file survived the sweep
        assert _lock.writer_is_live(atlas.location, writer.token)
        child = multiprocessing.get_context("fork").Process(target=_assert_live, args=(atlas.location, writer.token))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0  # another process sees the writer as live
    assert not os.listdir(atlas.location.join(_lock.WRITERS))


def _assert_live(location, token: str) -> None:
    from sigscan.atlas import _lock

    _lock._live_tokens.clear()  # the parent's own record does not count in another process
    assert _lock.writer_is_live(location, token)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "atlas")
    ss.Atlas.create(path, gene_order=GENES)
    context = multiprocessing.get_context("fork")  # children share the imported modules: starts in milliseconds
    n_workers = 4
    logs = [str(tmp_path / f"log{w}.json") for w in range(n_workers)]
    start = context.Barrier(n_workers)
    processes = [context.Process(target=_writer, args=(path, w, logs[w], start)) for w in range(n_workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    outcomes = [o for log in logs for o in json.load(open(log))]

    unexpected = [o for o in outcomes if not o["ok"] and "missing" not in o["name"] and o["name"] != "shared"]
    assert not unexpected, unexpected[0]["error"]
    shared = [o for o in outcomes if o["name"] == "shared"]
    winners = [o for o in shared if o["ok"]]
    assert len(winners) == 1  # the others were refused, as the name already held other data
    assert all("already has a shard 'shared'" in o["error"] for o in shared if not o["ok"])
    assert all(not o["ok"] and "KeyError" in o["error"] for o in outcomes if "missing" in o["name"])

    atlas = ss.Atlas(path)
    added = {o["name"] for o in outcomes if o["op"] == "add" and o["ok"]}
    removed = {o["name"] for o in outcomes if o["op"] == "remove" and o["ok"]}
    assert set(atlas.shard_names) == added - removed  # every successful call is in the manifest, no failed one is
    assert len(atlas.shard_names) == n_workers * (N_ADDS - 2) + 1
    assert atlas.manifest.shard("shared").checksum == winners[0]["checksum"]
    for o in outcomes:
        if o["op"] == "add" and o["ok"] and o["name"] in atlas.shard_names:
            assert atlas.manifest.shard(o["name"]).checksum == o["checksum"]
    shard_folders = sorted(os.listdir(atlas.location.join("shards")))
    assert shard_folders == sorted(os.path.basename(e.path) for e in atlas.manifest.shards)
    assert not os.listdir(atlas.location.join(".writers"))
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]
    report = atlas.verify(progress=False)
    assert report["ok"].all() and len(report) == len(atlas.shard_names)
    # the data is the data each worker wrote
    seed = 100 * 2 + 5
    scores = atlas.score(SET, shards=["w2-5"], progress=False)
    np.testing.assert_allclose(scores["score"], _expected(_data(seed, 10 + seed % 7), SET), rtol=1e-6, atol=1e-7)


def test_reader_racing_remove_is_told_to_reopen(small):
    reader = ss.Atlas(small.location.root)  # manifest snapshot: a, b, c
    ss.Atlas(small.location.root).remove("b")
    with pytest.raises(ShardError, match=r"Shard 'b' was removed by another process while reading.*reopen the atlas"):
        reader.score(SET, progress=False)
    with pytest.raises(ShardError, match=r"Shard 'b' was removed.*reopen"):
        reader.matrix(SET)
    # a replaced shard is reported as replaced; a reopened atlas reads the new state
    reader = ss.Atlas(small.location.root)
    ss.Atlas(small.location.root).add(_data(9), name="c", layer="attributions", overwrite=True)
    with pytest.raises(ShardError, match=r"Shard 'c' was replaced by another process while reading"):
        reader.score(SET, progress=False)
    scores = ss.Atlas(small.location.root).score(SET, progress=False)
    np.testing.assert_allclose(
        scores["score"], np.r_[_expected(_data(0), SET), _expected(_data(9), SET)], rtol=1e-6, atol=1e-7
    )
    # a shard that is still in the manifest but missing is damage, not a race
    import shutil

    shutil.rmtree(small.location.join(small.refresh().manifest.shard("a").path))
    with pytest.raises(ShardError, match=r"Shard 'a' is missing.*atlas.remove\('a'\)"):
        ss.Atlas(small.location.root).score(SET, progress=False)


def test_readers_racing_removes_see_a_snapshot_or_the_reopen_error(small):
    import threading

    for seed in range(3, 9):
        small.add(_data(seed, n_cells=5), name=f"extra{seed}", layer="attributions")
    errors, sizes, started, done = [], [], threading.Event(), threading.Event()

    def read():
        while True:
            reader = ss.Atlas(small.location.root)  # one manifest snapshot per query
            started.set()
            try:
                sizes.append((len(reader.score(SET, progress=False)), reader.n_cells))
            except ShardError as error:
                errors.append(str(error))
            if done.is_set():
                break

    thread = threading.Thread(target=read)
    thread.start()
    started.wait()
    for seed in range(3, 9):
        small.remove(f"extra{seed}")
    done.set()
    thread.join()
    assert all("by another process while reading" in e and "reopen the atlas" in e for e in errors), errors[:3]
    assert all(got == expected for got, expected in sizes)  # a query answers for its snapshot, whole
    assert len(ss.Atlas(small.location.root).score(SET, progress=False)) == 90


def test_verify_reads_a_read_only_atlas(small, monkeypatch):
    import errno

    from sigscan.atlas import _lock

    def read_only_open(path, flags, *args):
        if str(path).endswith(".lock") and flags & (os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return os.open(path, flags, *args)

    monkeypatch.setattr(_lock.os, "open", read_only_open)
    assert small.verify(progress=False)["ok"].all()
    with pytest.raises(OSError, match="Read-only"):
        small.verify(repair=True, progress=False)


def test_failed_add_leaves_nothing_and_orphans_are_repaired(small, monkeypatch):
    from sigscan.atlas import _atlas

    before = sorted(os.listdir(small.location.join("shards")))

    def failing_write(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atlas, "write_shard", failing_write)
    with pytest.raises(OSError, match="No space left"):
        small.add(_data(5), name="d", layer="attributions")
    monkeypatch.undo()
    assert sorted(os.listdir(small.location.join("shards"))) == before
    assert small.refresh().shard_names == ["a", "b", "c"]
    assert not os.listdir(small.location.join(".writers"))

    # leftovers of a killed writer: a partial folder, a renamed but uncommitted folder, a temporary manifest
    shards = small.location.join("shards")
    os.makedirs(os.path.join(shards, "d.999999-0123456789ab.zarr.partial", "X"))
    open(os.path.join(shards, "d.999999-0123456789ab.zarr.partial", "X", "0"), "wb").write(bytes(1000))
    os.makedirs(os.path.join(shards, "e.999998-0123456789ab.zarr"))
    open(small.location.join("atlas.json.999999-0123456789ab.tmp"), "w").write("{ half")
    with pytest.raises(ValueError, match=r"3 leftovers of interrupted writes.*verify\(repair=True\)"):
        small.verify(progress=False)
    # a running writer's folder is not an orphan
    from sigscan.atlas._lock import Writer

    with Writer(small.location) as writer:
        running = os.path.join(shards, f"f.{writer.token}.zarr.partial")
        os.makedirs(running)
        report = small.verify(repair=True, progress=False)
        assert os.path.isdir(running)
        os.rmdir(running)
    orphans = report[report.index.str.contains("999")]
    assert len(orphans) == 3 and orphans["ok"].all() and orphans["problem"].str.endswith("deleted").all()
    assert "0.0 MB" in orphans.loc["shards/d.999999-0123456789ab.zarr.partial", "problem"]
    assert sorted(os.listdir(shards)) == before
    assert small.verify(progress=False).index.tolist() == ["a", "b", "c"]


def test_failed_create_leaves_nothing(tmp_path, monkeypatch):
    from sigscan.atlas import _atlas

    def failing(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(_atlas, "write_manifest", failing)
    with pytest.raises(OSError, match="Read-only"):
        ss.Atlas.create(tmp_path / "atlas", gene_order=GENES)
    assert not (tmp_path / "atlas").exists()


def test_add_refuses_non_finite_attributions(small):
    adata = _data(7)
    adata.layers["attributions"].data[3] = np.nan
    with pytest.raises(ValueError, match=r"Shard 'd'.*1 non-finite attribution values.*recompute"):
        small.add(adata, name="d", layer="attributions")
    assert small.refresh().shard_names == ["a", "b", "c"]


# --- damage on read ----------------------------------------------------------------------------------------------


def _chunk(atlas, name: str, key: str) -> str:
    return atlas.location.join(atlas.manifest.shard(name).path, "X", key, "0")


def _header_array_file(atlas, name: str, key: str) -> tuple[str, int, np.dtype, int]:
    """(file, byte offset, dtype, length) of array ``key`` in shard ``name``'s query header."""
    from sigscan.atlas._header import HEADER, QueryHeader

    packed = QueryHeader.read(atlas.location, atlas.manifest.shard(name).path)._packed
    offset, dtype, length = packed._layout[key]
    return (
        atlas.location.join(atlas.manifest.shard(name).path, HEADER, "0"),
        packed._start + offset,
        np.dtype(dtype),
        length,
    )


def _damage_header_array(atlas, name: str, key: str, change) -> None:
    """Apply ``change`` (in place) to array ``key`` of shard ``name``'s query header file."""
    path, offset, dtype, length = _header_array_file(atlas, name, key)
    raw = bytearray(open(path, "rb").read())
    values = np.frombuffer(raw, dtype=dtype, count=length, offset=offset).copy()
    change(values)
    raw[offset : offset + values.nbytes] = values.tobytes()
    open(path, "wb").write(bytes(raw))


def _remove_headers(atlas) -> None:
    """Make the shards look like ones written before the query header existed (read from the AnnData files)."""
    import shutil

    from sigscan.atlas._header import HEADER

    for entry in atlas.manifest.shards:
        shutil.rmtree(atlas.location.join(entry.path, HEADER))


@pytest.mark.parametrize("key", ["indptr", "data", "indices"])
def test_missing_chunk_is_an_error_naming_the_shard(small, key):
    expected = ss.Atlas(small.location.root).score(SET, progress=False)
    os.remove(_chunk(small, "b", key))
    fresh = ss.Atlas(small.location.root)
    if key == "indptr":
        # queries read the query header's copy of the column pointers: right scores; verify names the shard
        pd.testing.assert_frame_equal(fresh.score(SET, progress=False), expected)
        with pytest.raises(ValueError, match=r"damaged shards \(b\)"):
            fresh.verify(progress=False)
        _remove_headers(small)  # without the header (older shards), the query needs X/indptr
        fresh = ss.Atlas(small.location.root)
    with pytest.raises(ShardError, match=rf"Shard 'b'.*(missing or damaged: .*X/{key}|chunks of X/{key} are missing)"):
        fresh.score(SET, progress=False)
    with pytest.raises(ShardError, match=r"Shard 'b'"):
        fresh.matrix(SET)
    assert len(fresh.score(SET, shards=["a", "c"], progress=False)) == 60  # the others still work
    with pytest.raises(ValueError, match=r"damaged shards \(b\)"):
        fresh.verify(progress=False)


def test_missing_chunk_of_a_zarr_encoded_shard_is_not_read_as_zeros(small):
    import zarr

    group = zarr.open_group(small.location.join(small.manifest.shard("b").path), mode="r+")
    for key in ("data", "indices"):  # rewritten by another tool: compressed, many chunks (read through zarr)
        values = group[f"X/{key}"][:]
        del group[f"X/{key}"]
        group["X"].create_array(key, shape=values.shape, dtype=values.dtype, chunks=(50,))[:] = values
    np.testing.assert_allclose(
        ss.Atlas(small.location.root).score(SET, shards=["b"], progress=False)["score"],
        _expected(_data(1), SET),
        rtol=1e-6,
    )
    os.remove(small.location.join(small.manifest.shard("b").path, "X", "data", "1"))
    with pytest.raises(ShardError, match=r"Shard 'b'.*chunks of X/data are missing"):
        ss.Atlas(small.location.root).score(SET, progress=False)


def test_inconsistent_header_indptr_is_an_error(small):
    def decrease(indptr):
        indptr[5], indptr[6] = indptr[6], indptr[5] - 1

    _damage_header_array(small, "c", "indptr", decrease)
    with pytest.raises(ShardError, match=r"Shard 'c'.*the query header's column pointers does not start at 0 or dec"):
        ss.Atlas(small.location.root).score(SET, progress=False)
    with pytest.raises(ValueError, match=r"damaged shards \(c\)"):
        small.verify(progress=False)


def test_damaged_header_is_an_error_naming_the_shard(small):
    path, *_ = _header_array_file(small, "b", "indptr")
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])  # truncated
    with pytest.raises(ShardError, match=r"Shard 'b'.*holds \d+ bytes, its description says \d+"):
        ss.Atlas(small.location.root).score(SET, progress=False)
    open(path, "wb").write(b"garbage" + raw[7:])
    with pytest.raises(ShardError, match=r"Shard 'b'.*is not a sigscan query header"):
        ss.Atlas(small.location.root).score(SET, progress=False)
    open(path, "wb").write(raw)
    _damage_header_array(small, "b", "names/offsets", lambda offsets: offsets.__setitem__(5, offsets[4] - 1))
    with pytest.raises(ShardError, match=r"Shard 'b'.*obs/_sigscan_query names/offsets do not start at 0, decrease"):
        ss.Atlas(small.location.root).score(SET, progress=False)
    open(path, "wb").write(raw)
    _damage_header_array(small, "b", "obs/group", lambda codes: codes.__setitem__(0, 7))  # 3 categories
    with pytest.raises(ShardError, match=r"Shard 'b'.*codes of obs column 'group' outside its 3 categories"):
        ss.Atlas(small.location.root).score(SET, progress=False)


def test_inconsistent_indptr_is_an_error(small):
    _remove_headers(small)  # shards written before the query header: X/indptr is read
    path = _chunk(small, "c", "indptr")
    indptr = np.fromfile(path, dtype="<i8")
    indptr[5], indptr[6] = indptr[6], indptr[5] - 1  # decreasing
    indptr.tofile(path)
    with pytest.raises(ShardError, match=r"Shard 'c'.*X/indptr does not start at 0 or decreases"):
        ss.Atlas(small.location.root).score(SET, progress=False)
    indptr = np.arange(len(GENES) + 1, dtype="<i8")  # monotone but ends short of the values stored
    indptr.tofile(path)
    with pytest.raises(ShardError, match=r"Shard 'c'.*X/indptr ends at 40 but the shard holds \d+ values"):
        ss.Atlas(small.location.root).score(SET, progress=False)


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e30])
def test_damaged_values_are_an_error_naming_shard_and_gene(small, value):
    entry = small.manifest.shard("b")
    indptr = np.fromfile(_chunk(small, "b", "indptr"), dtype="<i8")
    column = GENES.index("gene11")
    position = int(indptr[column]) + 1
    path = _chunk(small, "b", "data")
    data = np.fromfile(path, dtype="<f4")
    expected_other = ss.Atlas(small.location.root).score(["gene3", "gene20"], progress=False)
    data[position] = value
    data.tofile(path)
    fresh = ss.Atlas(small.location.root)
    pattern = rf"Shard 'b'.*non-finite or out-of-range values.*{'nan' if value != value else ''}.*gene 'gene11'"
    with pytest.raises(ShardError, match=pattern):
        fresh.score(SET, progress=False)
    with pytest.raises(ShardError, match=r"Shard 'b'.*gene 'gene11' in cell 's1-c\d+'"):
        fresh.matrix(["gene3", "gene11"])
    with pytest.raises(ShardError, match=r"Shard 'b'.*gene 'gene11'"):
        fresh.score(SET, weights=[1.0, -2.0, 0.5, 1.0], progress=False)
    # columns that are not read are not checked (nor affected)
    pd.testing.assert_frame_equal(fresh.score(["gene3", "gene20"], progress=False), expected_other)
    assert entry.path in fresh.manifest.shard("b").path
    with pytest.raises(ValueError, match=r"damaged shards \(b\).*checksum"):
        fresh.verify(progress=False)


def test_undamaged_extremes_pass_the_value_check(tmp_path):
    # the largest written magnitude in every cell of the selected columns (the bound is tight, not exceeded)
    atlas = ss.Atlas.create(tmp_path / "atlas", gene_order=GENES)
    adata = _data(3)
    matrix = adata.layers["attributions"].tolil()
    matrix[:, [GENES.index(g) for g in SET]] = -7.25
    adata.layers["attributions"] = matrix.tocsr().astype(np.float32)
    atlas.add(adata, name="x", layer="attributions")
    scores = atlas.score(SET, agg="sum", weights=[1.0, 1.0, 1.0, 1.0], progress=False)
    np.testing.assert_allclose(scores["score"], -29.0)
    assert atlas.matrix(SET).min() == -7.25


# --- command line ------------------------------------------------------------------------------------------------


def test_cli_failed_build_leaves_no_atlas_and_verify_repairs(tmp_path, capsys):
    from sigscan.cli import main

    genes_file = tmp_path / "genes.txt"
    genes_file.write_text("\n".join(GENES) + "\n")
    good, bad = tmp_path / "good.h5ad", tmp_path / "bad.h5ad"
    _data(1).write_h5ad(good)
    other = _data(2)
    other.var_names = [f"other{i}" for i in range(len(GENES))]  # no gene in the atlas gene order
    other.write_h5ad(bad)
    for target in (tmp_path / "new", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        argv = ["atlas", "build", str(target), str(bad), "--gene-order", str(genes_file), "--layer", "attributions"]
        assert main(argv) == 2
        assert "none of the 40 genes" in capsys.readouterr().err
        assert not target.exists() if target.name == "new" else os.listdir(target) == []
    # shards added before the failure stay (rerunning the build resumes)
    argv = ["atlas", "build", str(tmp_path / "new"), str(good), str(bad), "--gene-order", str(genes_file)]
    assert main([*argv, "--layer", "attributions"]) == 2
    assert ss.Atlas(tmp_path / "new").shard_names == ["good"]

    leftover = tmp_path / "new" / "shards" / "x.4242-0123456789ab.zarr.partial"
    leftover.mkdir()
    capsys.readouterr()
    assert main(["atlas", "verify", str(tmp_path / "new")]) == 1
    assert "1 leftovers of interrupted writes" in capsys.readouterr().err
    assert main(["atlas", "verify", str(tmp_path / "new"), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 leftovers" in out and "all 1 shards verified" in out
    assert not leftover.exists()
