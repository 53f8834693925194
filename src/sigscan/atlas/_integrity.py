"""Damage checks on the columns a query reads, and the leftovers of interrupted writes (orphans).

Read checks (cheap enough for every query; see ``benchmarks/atlas.py --check-cost``):

- every chunk of an array read through zarr exists (zarr would return its ``fill_value``, zeros, for a missing
  chunk); raw chunk files are opened directly, so a missing one fails on open;
- ``X/indptr`` starts at 0, never decreases, and ends at the shard's number of stored values (the length of
  ``X/data`` and the ``nnz`` the manifest recorded at write time): an all-zero ``indptr`` from a lost chunk fails here;
- the values read are finite and within the largest magnitude written (``max_abs``, recorded in the shard's
  attributes at write time). :meth:`Atlas.score` checks this on the per-cell sums (``|Σ wᵢaᵢ| ≤ max_abs · Σ|wᵢ|``
  holds for undamaged data; a NaN, an infinity or a value far beyond ``max_abs`` breaks it), an O(cells) test per shard,
  and only on failure re-reads the columns to name the gene; :meth:`Atlas.matrix` tests every value it returns.
  Damage that keeps values plausible is found by :meth:`Atlas.verify` (checksums).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .._logging import logger
from ._gene_index import GENE_INDEX
from ._lock import LOCK, WRITERS, atlas_lock, dead_writer_files, writer_is_live
from ._manifest import BUILD, GENE_ORDER, MANIFEST, PARTIAL, SHARDS, Manifest, ShardEntry, read_manifest

if TYPE_CHECKING:
    from ._location import Location
    from ._shard import ShardError, ShardReader

#: relative slack of the score bound (float64 sums of float32 values)
_SLACK = 1e-6


# --- values ----------------------------------------------------------------------------------------------------------


def value_bound(data: np.ndarray, name: str, source: str) -> float:
    """The largest ``|value|`` of a new shard (recorded as ``max_abs``); non-finite attributions are refused."""
    if not len(data):
        return 0.0
    bound = float(np.abs(data).max())
    if not np.isfinite(bound):
        n_bad = int((~np.isfinite(data)).sum())
        raise ValueError(
            f"Shard {name!r}: {source} holds {n_bad} non-finite attribution values (NaN or infinite); recompute the "
            "attributions (ss.pp.attributions) before adding them to the atlas."
        )
    return bound


def check_scores(reader: ShardReader, totals: np.ndarray, columns: np.ndarray, weights: np.ndarray) -> None:
    """Raise naming the shard and gene when the per-cell sums show a non-finite or out-of-range value."""
    if not len(totals):
        return
    bound = reader.max_abs
    limit = np.inf if bound is None else bound * float(np.abs(weights).sum()) * (1 + _SLACK) + 1e-30
    high, low = totals.max(), totals.min()
    if high <= limit and low >= -limit:  # false for NaN
        return
    data, indices, col_ptr = reader.read_column_arrays(columns)
    raise _located(reader, data, indices, col_ptr, columns) or reader.error(
        "the sums of the columns read are non-finite or beyond the shard's value range"
    )


def check_slice(
    reader: ShardReader, data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, columns: np.ndarray
) -> None:
    """Raise naming the shard and gene when a value of a column slice is non-finite or out of range."""
    if not len(data):
        return
    bound = np.inf if reader.max_abs is None else reader.max_abs
    if np.abs(data).max() <= bound:  # false for NaN
        return
    raise _located(reader, data, indices, col_ptr, columns) or reader.error("X/data holds non-finite values")


def _located(
    reader: ShardReader, data: np.ndarray, indices: np.ndarray, col_ptr: np.ndarray, columns: np.ndarray
) -> ShardError | None:
    bound = np.inf if reader.max_abs is None else reader.max_abs
    bad = np.flatnonzero(~(np.abs(data) <= bound))
    if not len(bad):
        return None
    k = int(bad[0])
    column = int(columns[np.searchsorted(col_ptr, k, side="right") - 1])
    try:
        gene = str(reader.var_names()[column])
    except Exception:  # var damaged too: name the position
        gene = f"#{column}"
    try:
        cell = f" in cell {str(reader.obs().index[int(indices[k])])!r}"
    except Exception:
        cell = ""
    written = "" if reader.max_abs is None else f" (the largest magnitude written was {reader.max_abs:.4g})"
    return reader.error(
        f"X/data holds {len(bad)} non-finite or out-of-range values in the columns read, e.g. {data[k]!r} for gene "
        f"{gene!r}{cell}{written}"
    )


# --- structure -------------------------------------------------------------------------------------------------------


def missing_chunks(location: Location, relpath: str, array: Any) -> str | None:
    """Problem text when chunks of the 1-D zarr array ``array`` (at ``relpath``) are absent, else ``None``.

    zarr reads an absent chunk as its fill value (zeros), so presence is checked before reading. For zarr v2 arrays
    the chunk files are looked up directly (``<array>/0``, ``<array>/1``, …: a few ``stat`` calls); other layouts are
    listed through zarr.
    """
    if array.metadata.zarr_format == 2 and len(array.shape) == 1:
        total = -(-array.shape[0] // array.chunks[0])
        absent = sum(not location.exists(relpath, str(number)) for number in range(total))
    else:
        try:
            total = array.nchunks
            absent = total - array.nchunks_initialized
        except Exception:  # a store that cannot be listed: presence is checked on read instead
            return None
    if absent:
        return f"{absent} of the {total} chunks of {array.path} are missing"
    return None


def indptr_problem(
    indptr: np.ndarray, n_genes: int, n_values: int, recorded_nnz: int | None, source: str = "X/indptr"
) -> str | None:
    """Problem text when the column pointers are inconsistent (length, start, monotonicity, end), else ``None``.

    ``source`` names where they were read from.
    """
    if len(indptr) != n_genes + 1:
        return f"{source} has {len(indptr)} entries, expected {n_genes + 1}"
    if indptr[0] != 0 or (len(indptr) > 1 and (indptr[1:] < indptr[:-1]).any()):
        return f"{source} does not start at 0 or decreases"
    if indptr[-1] != n_values or (recorded_nnz is not None and indptr[-1] != recorded_nnz):
        expected = n_values if recorded_nnz is None else recorded_nnz
        return f"{source} ends at {int(indptr[-1])} but the shard holds {expected} values"
    return None


def removed_error(location: Location, entry: ShardEntry) -> ShardError | None:
    """The error for a shard another process removed or replaced after this reader's manifest snapshot, else ``None``."""
    from ._shard import ShardError

    try:
        current = read_manifest(location)
    except Exception:
        return None
    if any(e.path == entry.path for e in current.shards):
        return None
    how = "replaced" if entry.name in current.names() else "removed"
    return ShardError(
        f"Shard {entry.name!r} was {how} by another process while reading ({location.join(entry.path)} is gone); "
        f"reopen the atlas (ss.Atlas({location.url!r})) and query again."
    )


# --- orphans ---------------------------------------------------------------------------------------------------------


def _token(folder: str) -> str:
    """Writer token of a shard folder ``<name>.<token>.zarr[.partial]``."""
    return folder.removesuffix(PARTIAL).removesuffix(".zarr").rsplit(".", 1)[-1]


def find_orphans(location: Location, manifest: Manifest) -> list[str]:
    """Leftovers of writers that are gone: unreferenced shard folders and temporary manifest files (relative paths).

    Call under :func:`~._lock.atlas_lock` with the manifest read under it: a folder of a running writer is never an
    orphan (its liveness lock is held until it has committed or cleaned up).
    """
    referenced = {entry.path for entry in manifest.shards}
    orphans = [
        f"{SHARDS}/{folder}"
        for folder in location.listdir(SHARDS)
        if f"{SHARDS}/{folder}" not in referenced and not writer_is_live(location, _token(folder))
    ]
    orphans += [
        name
        for name in location.listdir()
        if name.endswith(".tmp") and name.startswith((f"{MANIFEST}.", f"{GENE_ORDER}.", f"{GENE_INDEX}."))
    ]
    dead_writer_files(location)  # zero-byte liveness files of killed writers
    return orphans


def size_of(location: Location, relpath: str) -> int:
    """Bytes under ``relpath`` (a file or folder)."""
    if location.is_local:
        path = location.join(relpath)
        if os.path.isfile(path):
            return os.path.getsize(path)
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return int(location.fs.du(location._fs_path(relpath)))


def remove_path(location: Location, relpath: str) -> None:
    """Delete a file or folder under the atlas root (missing is fine)."""
    path = location.join(relpath)
    if location.is_local and os.path.isfile(path):
        os.remove(path)
    else:
        location.remove_tree(relpath)


def sweep_orphans(location: Location, manifest: Manifest) -> None:
    """Delete dead writers' leftovers (local atlases; call under the atlas lock, as part of a write)."""
    if not location.is_local:
        return  # other processes' writers cannot be seen on object stores: only verify(repair=True) deletes there
    for relpath in find_orphans(location, manifest):
        logger.info("removing %s, left by an interrupted write", location.join(relpath))
        remove_path(location, relpath)


def discard_if_empty(location: Location, fresh_folder: bool) -> bool:
    """Delete an atlas that holds no shard and no running write (after a failed build); returns whether it did."""
    with atlas_lock(location):
        try:
            if read_manifest(location).shards:
                return False
        except FileNotFoundError:
            pass
        if any(writer_is_live(location, _token(folder)) for folder in location.listdir(SHARDS)):
            return False
        if location.exists(BUILD) and location.listdir(BUILD):
            return False  # finished blocks of a build: a rerun resumes from them
        if fresh_folder:
            location.remove_tree()
        else:
            for relpath in (MANIFEST, GENE_ORDER, GENE_INDEX, SHARDS, WRITERS, LOCK):
                remove_path(location, relpath)
    return True
