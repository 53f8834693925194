"""The atlas query kernel compiled once with the system's C compiler and loaded with ctypes: no JIT in the query.

numba needs ~0.45 s to load even from its on-disk cache (it initialises its compiler before it can run cached machine
code), more than a whole first query up to millions of cells. This module holds the same loop as the numba kernel
(:mod:`._numba_kernels`) in C, compiled with ``cc -O2 -ffp-contract=off`` (no fused multiply-add: each product is
rounded, then added, as numba does, so both give bit-identical sums) into the sigscan cache folder, once per install
(the file name holds a hash of the source and the compiler's version). A process loads it with ``ctypes`` in about a
millisecond, and ``ctypes`` calls release the GIL, so shards are summed in parallel.

The compilation runs in the background the first time a query finds no library (a process waits for it at exit, a
fraction of a second); without a C compiler, or if building or loading fails (remembered by a marker file, so later
processes do not try again), nothing changes: numba and SciPy serve as before.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

_SOURCE = r"""
#include <stdint.h>

/* out[indices[k]] += (double)data[k] * weights[j] for k in [starts[j], stops[j]), columns j in turn;
   rows outside [0, n_rows) are counted, not added. */
int64_t range_sums(const float *data, const int32_t *indices, const int64_t *starts, const int64_t *stops,
                   const double *weights, int64_t n_cols, double *out, int64_t n_rows) {
    int64_t bad = 0;
    for (int64_t j = 0; j < n_cols; j++) {
        const double w = weights[j];
        for (int64_t k = starts[j]; k < stops[j]; k++) {
            const int32_t row = indices[k];
            if (row < 0 || row >= n_rows) {
                bad++;
                continue;
            }
            out[row] += (double)data[k] * w;
        }
    }
    return bad;
}
"""
_FLAGS = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]

_lock = threading.Lock()
_function: Any = None
_tried = False
_compiling: threading.Thread | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def _library_path(compiler: str) -> Path:
    """The library's file; its name hashes the source, the flags and the compiler.

    The compiler is identified by its path, size and time (starting it to ask its version would cost every process
    milliseconds).
    """
    from .._utils import cache_dir

    binary = Path(compiler).resolve()
    stat = binary.stat()
    key = "\0".join([_SOURCE, *_FLAGS, str(binary), str(stat.st_size), str(stat.st_mtime_ns)])
    return cache_dir() / f"atlas-kernel-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _unusable(library: Path) -> Path:
    """Marker left when ``library`` cannot be built or loaded here (later processes do not try again)."""
    return library.with_name(f"{library.name}.unusable")


def _compile(compiler: str, target: Path) -> None:
    """Build the library at ``target`` (written aside and renamed: concurrent builds and readers are safe)."""
    folder = target.parent
    source = folder / f"{target.stem}.{os.getpid()}.c"
    partial = folder / f"{target.name}.{os.getpid()}.tmp"
    try:
        source.write_text(_SOURCE)
        subprocess.run(
            [compiler, *_FLAGS, "-o", str(partial), str(source)], capture_output=True, timeout=60, check=True
        )
        _load(partial)  # a library this system cannot load (e.g. a cache folder mounted noexec) is not kept
        os.replace(partial, target)
    except (OSError, subprocess.SubprocessError):  # the other kernels serve; remembered for later processes
        with contextlib.suppress(OSError):
            _unusable(target).touch()
    finally:
        for leftover in (source, partial):
            leftover.unlink(missing_ok=True)


def _load(path: Path) -> Any:
    library = ctypes.CDLL(str(path))  # CDLL: calls release the GIL
    function = library.range_sums
    pointer = ctypes.c_void_p
    function.argtypes = [pointer, pointer, pointer, pointer, pointer, ctypes.c_int64, pointer, ctypes.c_int64]
    function.restype = ctypes.c_int64
    return function


def kernel() -> Any:
    """The compiled ``range_sums`` function, or ``None`` (not built yet: the build is started in the background)."""
    global _function, _tried, _compiling
    if _function is not None or _tried:
        return _function
    with _lock:
        if _function is not None or _tried:
            return _function
        _tried = True
        if os.environ.get("SIGSCAN_NO_COMPILE"):
            return None
        compiler = _compiler()
        if compiler is None:
            return None
        try:
            path = _library_path(compiler)
            if _unusable(path).exists():
                return None
            if path.exists():
                try:
                    _function = _load(path)
                    return _function
                except OSError:  # unreadable (damaged: a build writes aside and renames): build it again
                    path.unlink(missing_ok=True)
        except OSError:
            return None
        _compiling = threading.Thread(target=_compile, args=(compiler, path), name="sigscan-compile", daemon=True)
        _compiling.start()
        atexit.register(_compiling.join, 60)  # a one-shot process still leaves the library for the next ones
        return None


def range_sums(
    data: np.ndarray, indices: np.ndarray, starts: np.ndarray, stops: np.ndarray, weights: np.ndarray, n_rows: int
) -> tuple[np.ndarray, int] | None:
    """The compiled kernel's sums and out-of-range count; ``None`` when it is not available for these arrays."""
    function = kernel()
    if function is None or data.dtype != np.float32 or indices.dtype != np.int32:
        return None
    data, indices = np.ascontiguousarray(data), np.ascontiguousarray(indices)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    stops = np.ascontiguousarray(stops, dtype=np.int64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    out = np.zeros(n_rows, dtype=np.float64)
    if len(starts) and ((starts < 0) | (stops > len(data)) | (stops > len(indices))).any():
        raise IndexError("column ranges outside the arrays")
    bad = function(
        data.ctypes.data, indices.ctypes.data, starts.ctypes.data, stops.ctypes.data, weights.ctypes.data,
        len(weights), out.ctypes.data, n_rows,
    )  # fmt: skip
    return out, int(bad)
