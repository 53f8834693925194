"""I/O failures on the command line (issue 9): one line naming the path and the cause, exit 1, nothing left behind.

A full disk and a read-only target are real filesystems (a tiny tmpfs, mounted read-only for the second); where this
machine cannot mount one (no privileges), those tests are skipped with the reason, and the same paths are covered by
making the lowest-level write raise ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

import sigscan as ss
from sigscan.cli import main


@pytest.fixture
def toy_h5ad(tmp_path):
    adata = ss.datasets.toy(n_cells=150, n_genes=80)
    programs = adata.uns.pop("programs")
    path = tmp_path / "toy.h5ad"
    adata.write_h5ad(path)
    return path, programs["group0"][:5]


def _mount(target, options: str):
    target.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'mount failed'})")


def _cli(*args):
    """Run the CLI in a subprocess: a crash inside HDF5 on a full disk would kill pytest itself."""
    code = "import sys; from sigscan.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=False)


@pytest.fixture
def small_mount(tmp_path):
    mounted = []

    def make(options: str):
        target = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
        _mount(target, options)
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.parametrize("suffix", [".h5ad", ".csv"])
def test_full_disk_one_line_and_no_file(toy_h5ad, small_mount, suffix):
    path, genes = toy_h5ad
    full = small_mount("size=64k")
    with open(full / "filler", "wb", buffering=0) as filler:  # fill the disk to the last block
        try:
            while True:
                filler.write(b"\0" * 512)
        except OSError:
            pass
    out = full / f"scores{suffix}"
    result = _cli("score", path, "--genes", ",".join(genes), "--method", "mean", "--out", out)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(out) in lines[0] and "No space left on device" in lines[0]
    assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no truncated result, no temporary


def test_read_only_target_one_line(toy_h5ad, small_mount):
    path, genes = toy_h5ad
    read_only = small_mount("size=1m,ro")
    out = read_only / "scores.csv"
    result = _cli("score", path, "--genes", ",".join(genes), "--method", "mean", "--out", out)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "Read-only file system" in lines[0], result.stderr


def test_enospc_at_the_lowest_level_keeps_the_old_result(toy_h5ad, monkeypatch, capsys):
    """Without a mount: the write itself fails half-way; the previous result stays, no temporary is left."""
    path, genes = toy_h5ad
    out = path.parent / "scores.csv"
    out.write_text("previous result\n")
    real_write = os.write

    def full_disk(fd, data):  # pandas writes through Python's file objects → os-level write
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def to_csv(self, target, *args, **kwargs):
        with open(target, "w") as handle:
            handle.write("half a ")
            handle.flush()
            monkeypatch.setattr(os, "write", full_disk)
            try:
                os.write(handle.fileno(), b"table")
            finally:
                monkeypatch.setattr(os, "write", real_write)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    assert main(["score", str(path), "--genes", ",".join(genes), "--method", "mean", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {out}: No space left on device" in err[0]
    assert out.read_text() == "previous result\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["scores.csv", "toy.h5ad"]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_input_one_line_traceback_with_v(toy_h5ad, damage):
    path, genes = toy_h5ad
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not an HDF5 file" * 64)
    result = _cli("score", path, "--genes", ",".join(genes), "--method", "mean")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot read {path}" in lines[0] and "truncated, corrupt" in lines[0], result.stderr
    verbose = _cli("-v", "score", path, "--genes", ",".join(genes), "--method", "mean")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_missing_output_folder(toy_h5ad, capsys):
    path, genes = toy_h5ad
    out = path.parent / "no" / "such" / "scores.csv"
    assert main(["score", str(path), "--genes", ",".join(genes), "--method", "mean", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"cannot write {out}: the folder" in err and "does not exist" in err


def test_corrupt_checkpoint_names_the_file(tmp_path, capsys):
    adata = ss.datasets.pbmc3k()[:20].copy()
    model = ss.models.SCimilarity.random(adata.var_names[:300], hidden_dim=(8,), latent_dim=4)
    folder = tmp_path / "model"
    model.save(folder)
    checkpoint = folder / "encoder.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(OSError, match=f"cannot read {checkpoint}: the checkpoint is truncated"):
        ss.models.SCimilarity(folder)
    adata.write_h5ad(tmp_path / "in.h5ad")
    argv = ["attributions", str(tmp_path / "in.h5ad"), "--model", f"scimilarity:{folder}", "--out"]
    assert main([*argv, str(tmp_path / "out.h5ad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(checkpoint) in err[0]
    assert not (tmp_path / "out.h5ad").exists()


def _big_toy():
    """About 5 MB uncompressed: more than the small tmpfs below holds."""
    import anndata as ad
    import numpy as np
    from scipy import sparse

    return ad.AnnData(sparse.random(3000, 2000, density=0.1, format="csr", random_state=0, dtype=np.float32))


def test_disk_filling_during_the_h5ad_write(small_mount, monkeypatch):
    """The free-space check passes, then the disk fills while HDF5 writes (e.g. another process writing): HDF5 can
    crash the process there (a segfault, reproduced here about one run in two), so it writes in a child process.
    Every time: the one-line ENOSPC error, nothing at the final path, no temporary left."""
    from sigscan import _utils

    full = small_mount("size=1m")
    monkeypatch.setattr(_utils, "anndata_nbytes", lambda data: 0)  # the check passes: the disk fills afterwards
    adata = _big_toy()
    for attempt in range(3):
        out = full / f"result{attempt}.h5ad"
        with pytest.raises(OSError, match=f"^cannot write {out}: No space left on device$"):
            _utils.write_anndata(adata, out)
        assert list(full.iterdir()) == []


def test_enospc_inside_the_h5ad_writer_keeps_the_old_result(tmp_path, monkeypatch):
    """Without a mount: the writer raises OSError(ENOSPC) half-way; the previous file stays, no temporary is left."""
    import anndata as ad

    from sigscan import _utils

    out = tmp_path / "result.h5ad"
    out.write_bytes(b"previous result")

    def half_then_full(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x89HDF\r\n\x1a\n half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ad.AnnData, "write", half_then_full)
    with pytest.raises(OSError, match=f"^cannot write {out}: No space left on device$") as info:
        _utils.write_anndata(_big_toy(), out)
    assert info.value.errno == errno.ENOSPC
    assert out.read_bytes() == b"previous result" and sorted(p.name for p in tmp_path.iterdir()) == ["result.h5ad"]


@pytest.mark.parametrize("failure", ["crash", "ValueError"])
def test_writer_crash_or_error_in_the_child(tmp_path, monkeypatch, failure):
    """A crash of the writer (not a full disk) is a one-line OSError; a Python error keeps its type and message."""
    import signal

    import anndata as ad

    from sigscan import _utils

    out = tmp_path / "result.h5ad"

    def fail(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half")
        if failure == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        raise ValueError("cannot store uns['x']: a lambda")

    monkeypatch.setattr(ad.AnnData, "write", fail)
    expected = (OSError, r"the writer crashed \(SIGSEGV\)") if failure == "crash" else (ValueError, "a lambda")
    with pytest.raises(expected[0], match=expected[1]):
        _utils.write_anndata(_big_toy(), out)
    assert list(tmp_path.iterdir()) == []


def test_h5ad_written_in_the_child_reads_back(tmp_path):
    import anndata as ad
    import numpy as np

    from sigscan import _utils

    adata = ss.datasets.toy(n_cells=30, n_genes=80)
    adata.obs["label"] = [f"c{i % 3}" for i in range(30)]  # strings: made categorical, as write_h5ad does
    _utils.write_anndata(adata, tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    assert back.obs["label"].dtype == "category" and adata.obs["label"].dtype == "category"
    np.testing.assert_array_equal(back.X.toarray() if hasattr(back.X, "toarray") else back.X, adata.X.toarray())
