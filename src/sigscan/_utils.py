"""Small helpers shared across modules (no scientific logic lives here)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse


def cache_dir() -> Path:
    """Folder of sigscan's cache: trained demo models, the compiled atlas kernel (``$SIGSCAN_CACHE`` or XDG's)."""
    root = os.environ.get("SIGSCAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sigscan"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_arrays(arrays: list[np.ndarray]) -> str:
    """Checksum of a list of arrays (dtype, shape and bytes), used for model and shard provenance."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.reshape(-1).view(np.uint8))  # the bytes in place: no copy of the weights
    return digest.hexdigest()


def sha256_strings(values: list[str]) -> str:
    """Checksum of an ordered list of strings (gene orders)."""
    # one update of the joined bytes: the same digest as one update per string and separator, several times faster
    return hashlib.sha256("".join(f"{value}\0" for value in values).encode()).hexdigest()


def as_csr_float32(matrix: Any) -> sparse.csr_matrix:
    """Return a CSR float32 copy-free view where possible (dense input is sparsified)."""
    if sparse.issparse(matrix):
        matrix = matrix.tocsr()
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        return matrix
    return sparse.csr_matrix(np.asarray(matrix, dtype=np.float32))


def row_factors(matrix: sparse.csr_matrix, target_sum: float) -> np.ndarray:
    """Per-row factors (float64) that scale each row of a non-negative matrix to sum to ``target_sum``.

    All-zero rows get factor 0 (they stay zero). The one place where "scale each cell to a total" is decided.
    """
    row_sums = np.asarray(matrix.sum(axis=1, dtype=np.float64)).ravel()
    return np.divide(target_sum, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0)


def scale_rows(matrix: sparse.csr_matrix, target_sum: float) -> sparse.csr_matrix:
    """Scale each row of a non-negative CSR matrix to sum to ``target_sum`` in place; all-zero rows stay zero."""
    factors = row_factors(matrix, target_sum)
    matrix.data *= np.repeat(factors, np.diff(matrix.indptr)).astype(matrix.data.dtype)
    return matrix


def anndata_nbytes(adata: Any) -> int:
    """Rough size of an AnnData (or MuData) written uncompressed (matrices, ``obs``, ``var``), for free-space checks."""

    def size(matrix: Any) -> int:
        if matrix is None:
            return 0
        if sparse.issparse(matrix):
            return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)
        return int(getattr(matrix, "nbytes", 0))

    if getattr(adata, "mod", None) is not None:  # MuData: its modalities plus the joint obs/var
        total = sum(anndata_nbytes(modality) for modality in adata.mod.values())
        return total + int(adata.obs.memory_usage(deep=True).sum() + adata.var.memory_usage(deep=True).sum())
    total = size(getattr(adata, "X", None)) + sum(size(m) for m in adata.layers.values())
    total += sum(size(m) for m in adata.obsm.values()) + sum(size(m) for m in adata.varm.values())
    total += int(adata.obs.memory_usage(deep=True).sum() + adata.var.memory_usage(deep=True).sum())
    return total


def _remove_stale_partials(path: Path) -> None:
    """Remove temporaries of ``path`` left by writers that died (e.g. killed, or a crash inside a C library)."""
    for stale in path.parent.glob(f".{path.stem}.*.partial{path.suffix}"):
        pid = stale.name[len(path.stem) + 2 :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        except OSError:
            continue


@contextmanager
def written_aside(path: str | os.PathLike, *, nbytes: int | None = None) -> Iterator[Path]:
    r"""Write a final result aside, then rename it into place: the one way sigscan writes output files.

    Yields a unique temporary path next to ``path`` (same folder, so the rename is atomic; same suffix, so writers
    that infer the format from it still work). When the ``with`` block ends without error the temporary file (or
    folder, e.g. a zarr store) replaces ``path``; on any error it is removed and ``path`` is left as it was, so a full
    disk or a crash never leaves a truncated result under the final name. I/O errors are re-raised as
    :class:`OSError` naming ``path`` and the cause. ``nbytes`` (an estimate of the output's size) is checked against
    the free space first: HDF5 can crash the process on a full disk instead of raising.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
    >>> with written_aside(target) as tmp:
    ...     _ = tmp.write_text("cell,score\\n")
    >>> target.read_text()
    'cell,score\\n'
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir() and not path.suffix == ".zarr":
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    _remove_stale_partials(path)
    if nbytes is not None:
        free = shutil.disk_usage(path.parent).free
        if free < nbytes * 1.05 + 2**20:
            error = OSError(
                f"cannot write {path}: No space left on device (needs about {nbytes / 2**20:,.0f} MB, "
                f"{free / 2**20:,.0f} MB free)"
            )
            error.errno = 28
            raise error
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = path.with_name(f".{path.stem}.{token}.partial{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            return
        if tmp.is_dir() and path.exists():  # folders cannot be replaced in one rename: swap via a second name
            old = path.with_name(f".{path.name}.{token}.old")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(error, OSError) and str(path) not in str(error):
            wrapped = OSError(f"cannot write {path}: {describe_os_error(error)}")
            wrapped.errno = error.errno
            raise wrapped from error
        raise


def write_anndata(data: Any, path: str | os.PathLike) -> None:
    """Write an AnnData (``.h5ad``) or MuData (``.h5mu``) as a final result: the one way sigscan writes HDF5 output.

    :func:`written_aside` (free space checked, temporary renamed into place) with the HDF5 write itself in a child
    process (:func:`in_child`): a disk that fills up during the write (another process writing) can crash HDF5 inside
    h5py, which then ends as the same one-line ``cannot write PATH: No space left on device``, the temporary removed
    and ``path`` left as it was.
    """
    if hasattr(data, "strings_to_categoricals"):
        data.strings_to_categoricals()  # what write_h5ad does to the object, done here so the caller's copy sees it
    with written_aside(path, nbytes=anndata_nbytes(data)) as tmp:
        in_child(lambda: data.write(tmp), folder=Path(path).parent)


def in_child(func: Any, *, folder: str | os.PathLike) -> None:
    """Run ``func()`` in a forked child process and raise its error here; a crash there is an :class:`OSError` here.

    For writers that can crash the process on an I/O error (HDF5 on a full disk). The child's error comes back as
    the same built-in exception type and message; a child killed by a signal, or any failure while ``folder``'s disk
    is full, is ``OSError(ENOSPC)`` when the disk is full, else ``OSError(EIO, "the writer crashed (SIGSEGV)")``.
    What the child prints on stderr is replayed when it succeeds and dropped (logged at DEBUG) when it fails. Where
    ``os.fork`` does not exist (Windows), ``func()`` runs here.
    """
    import builtins
    import errno
    import json
    import signal
    import sys
    import warnings

    if not hasattr(os, "fork"):
        func()
        return
    err_read, err_write = os.pipe()
    out_read, out_write = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process; the child only writes
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running the parent's exit handlers
        code = 0
        try:
            os.close(err_read)
            os.close(out_read)
            os.dup2(err_write, 2)
            import faulthandler

            faulthandler.disable()  # a crash here is reported by the parent, not dumped on the parent's stderr
            func()
        except BaseException as error:
            code = 1
            try:
                report = [type(error).__name__, getattr(error, "errno", None), str(error)[:4000]]
                os.write(out_write, json.dumps(report).encode())
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(err_write)
    os.close(out_write)
    printed, report = _read_fd(err_read), _read_fd(out_read)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        if printed:
            sys.stderr.write(printed.decode(errors="replace"))
        return
    from ._logging import logger

    logger.debug("writer process failed; it printed:\n%s", printed.decode(errors="replace"))
    name, number, message = json.loads(report) if report else (None, None, "")
    full = number == errno.ENOSPC or "No space left on device" in message
    if full or shutil.disk_usage(folder).free < 2**16:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if os.WIFSIGNALED(status):
        raise OSError(errno.EIO, f"the writer crashed ({signal.Signals(os.WTERMSIG(status)).name})")
    kind = getattr(builtins, name or "", None)
    if isinstance(kind, type) and issubclass(kind, OSError) and number is not None:
        raise OSError(number, os.strerror(number))
    if isinstance(kind, type) and issubclass(kind, Exception):
        raise kind(message)
    raise RuntimeError(f"{name}: {message}")


def _read_fd(fd: int) -> bytes:
    chunks = []
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read(2**16):
            chunks.append(chunk)
    return b"".join(chunks)


def describe_os_error(error: OSError) -> str:
    """The cause of an I/O error in words (``No space left on device``), without Python's ``[Errno 28]`` prefix."""
    if error.errno is not None and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
