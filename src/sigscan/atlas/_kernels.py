"""The inner loop of an atlas query: weighted column sums of a CSC slice, accumulated in float64.

Three exact implementations that add the same float64 products ``float64(data[k]) * w_j`` to each row in the same order
(columns in turn, each column's values in stored order), so all give bit-identical sums, in order of preference:

- a C loop compiled once per install with the system's C compiler and loaded with ctypes (:mod:`._compiled`): no
  copies, no GIL, and loaded in about a millisecond, so a fresh process's first query runs as fast as later ones;
- the same loop in numba, over memory maps of the shard files (no copies, no GIL), where no C compiler is available;
- SciPy's compiled CSC matrix-vector product over the selected columns gathered from the same memory maps (values
  converted to float64 as they are copied), with the products formed first by numpy and a vector of ones as the
  right-hand side, so the compiled loop only adds (a fused multiply-add by 1.0 rounds like the plain addition). It
  releases the GIL, so shards are summed in parallel: over 20 shards of 50,000 cells on 2 threads it took 1.7x numba's
  time (33 vs 20 ms), where ``np.add.at`` per column, which holds the GIL between columns, took 114 ms.

Even from numba's on-disk cache, the first call of a numba function in a process costs ~0.4-1 s (numba initialises its
compiler target before it can load cached machine code). So without the C library the first queries of a fresh
process are served by the SciPy path. Once a process has made a second query (a one-shot command line never pays for
numba), loading the numba kernels starts in a background thread (:func:`query_done`, called after the query so the
loading does not compete with it for the GIL); later calls use numba once it is ready.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _compiled

#: stored non-zeros of a query's shards from which the query first waits for the numba kernels (instead of loading
#: them after it): a gene set selects a few % of the stored values, and the SciPy path costs ~2 ns per selected
#: value more than numba, so beyond ~250M selected values (~12G stored, ~15M PBMC-like cells) loading numba (~0.5 s)
#: is cheaper
EARLY_KERNEL_LOADING = 12_000_000_000
_READY = threading.Event()
#: the numba kernel (``_numba_kernels.py``, imported by :func:`_load_numba`: importing numba alone takes ~0.3-0.7 s)
_range_sums_numba: Any = None
_STARTED = threading.Lock()
_started = False


def _load_numba() -> None:
    """Compile (or load from numba's cache) the kernel for the array types queries pass, then flag it ready."""
    global _range_sums_numba
    try:
        from ._numba_kernels import range_sums

        _range_sums_numba = range_sums
        out = np.zeros(1, np.float64)
        weights = np.ones(1, np.float64)
        bounds = (np.zeros(1, np.int64), np.ones(1, np.int64))
        for writeable in (True, False):  # memory-mapped shards are read-only arrays: another numba type
            data, indices = np.zeros(1, np.float32), np.zeros(1, np.int32)
            data.flags.writeable = indices.flags.writeable = writeable
            _range_sums_numba(data, indices, *bounds, weights, out)
    except Exception:  # pragma: no cover - numba unusable here: the SciPy path serves every call
        return
    _READY.set()


def numba_ready(*, start: bool = False) -> bool:
    """Whether the numba kernels are loaded; ``start`` begins loading them in a background thread (once)."""
    global _started
    if not _READY.is_set() and start:
        with _STARTED:
            if not _started:
                _started = True
                threading.Thread(target=_load_numba, name="sigscan-numba-warmup", daemon=True).start()
    return _READY.is_set()


_queries = 0


def query_done() -> None:
    """Count a finished query; from the second one on, load numba in the background (once) unless C serves."""
    global _queries
    _queries += 1
    if _queries >= 2 and _compiled.kernel() is None:
        start_loading()


def prepare(stored_values: int) -> None:
    """Before a query over shards holding ``stored_values`` non-zeros: a large one may wait for numba.

    Only when the C library does not serve (see :data:`EARLY_KERNEL_LOADING`).
    """
    if stored_values >= EARLY_KERNEL_LOADING and _compiled.kernel() is None:
        start_loading(wait=True)


def start_loading(*, wait: bool = False) -> None:
    """Begin loading the numba kernels in a background thread (once per process); ``wait`` until they are loaded."""
    numba_ready(start=True)
    if wait:
        _READY.wait(timeout=30)


def _scipy_sums(
    data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, weights: np.ndarray, n_rows: int
) -> tuple[np.ndarray, int]:
    """The path without numba: the products ``float64(data[k]) * w_j`` by numpy, added per row by SciPy in order.

    Returns the sums and the number of out-of-range row numbers met (those entries are skipped, as by numba).
    """
    from scipy import sparse

    lengths = np.diff(col_ptr)
    products = np.asarray(data, dtype=np.float64)  # no copy when the caller gathered float64 values
    if not (weights == 1).all():
        products = products * np.repeat(weights, lengths)
    n_bad = 0
    if len(indices) and (indices.min() < 0 or indices.max() >= n_rows):
        keep = (indices >= 0) & (indices < n_rows)
        n_bad = int((~keep).sum())
        indices, products = indices[keep], products[keep]
        col_ptr = np.r_[0, np.cumsum(keep)][col_ptr]
    # int32 pointers when they fit, like the row numbers: SciPy would otherwise copy the row numbers to int64
    index_dtype = np.int32 if len(products) < np.iinfo(np.int32).max and n_rows < np.iinfo(np.int32).max else np.int64
    matrix = sparse.csc_array(
        (products, np.asarray(indices, index_dtype), np.asarray(col_ptr, index_dtype)), shape=(n_rows, len(weights))
    )
    return matrix @ np.ones(len(weights)), n_bad


def weighted_column_sums(
    data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, weights: np.ndarray, n_rows: int
) -> np.ndarray:
    """``Σ_j w_j · A[:, j]`` for a CSC slice ``(data, indices, col_ptr)`` with ``n_rows`` rows, in float64.

    The same sums as ``csc_matrix(...) @ weights`` (float64 accumulation, as :func:`sigscan.tl.attribution_score`):
    :func:`sum_column_ranges` over the slice's columns. ``indices`` must lie in ``[0, n_rows)`` (checked by the
    caller).
    """
    col_ptr = np.asarray(col_ptr, dtype=np.int64)
    return sum_column_ranges(data, indices, col_ptr[:-1], col_ptr[1:], weights, n_rows)[0]


def sum_column_ranges(
    data: np.ndarray, indices: np.ndarray, starts: np.ndarray, stops: np.ndarray, weights: np.ndarray, n_rows: int
) -> tuple[np.ndarray, int]:
    """Weighted column sums over column ranges ``[starts[j], stops[j])`` of full CSC arrays (e.g. memory maps).

    Returns the float64 sums and the number of out-of-range row numbers met (those entries are skipped).
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    compiled = _compiled.range_sums(data, indices, starts, stops, weights, n_rows)
    if compiled is not None:
        return compiled
    if not numba_ready():
        # the selected runs gathered (data straight to float64: one pass), then summed by SciPy
        pieces = list(zip(np.asarray(starts).tolist(), np.asarray(stops).tolist(), strict=True))
        values = np.concatenate([data[a:b] for a, b in pieces] or [data[:0]], dtype=np.float64)
        rows = np.concatenate([indices[a:b] for a, b in pieces] or [indices[:0]])
        col_ptr = np.r_[0, np.cumsum([max(b - a, 0) for a, b in pieces], dtype=np.int64)]
        return _scipy_sums(values, rows, col_ptr, weights, n_rows)
    out = np.zeros(n_rows, dtype=np.float64)
    bad = _range_sums_numba(data, indices, np.asarray(starts, np.int64), np.asarray(stops, np.int64), weights, out)
    return out, int(bad)
