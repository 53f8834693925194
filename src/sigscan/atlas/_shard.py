"""One atlas shard: an AnnData zarr store whose ``X`` is the attribution matrix in CSC (cells × model genes).

Layout choices, made for column reads (a gene set touches ~100 of ~30,000 columns):

- ``X`` is CSC, so the values of one gene are one contiguous run of ``X/data`` and ``X/indices`` given by
  ``X/indptr``; a gene-set query reads ``indptr`` once (n_genes + 1 integers) and then exactly the selected byte ranges.
- ``X/data`` (float32) and ``X/indices`` (int32) are zarr v2 arrays **without compression**, each in one chunk
  (up to :data:`CHUNK` elements, 2 GiB of float32; a 50,000-cell shard of PBMC-like cells is ~170 MB per array).
  Uncompressed chunks are the raw little-endian bytes, so a reader fetches the bytes of one gene with a single ranged
  read (``os.preadv`` locally, an HTTP range request on object stores) instead of decompressing whole chunks: the
  cost of a query is the bytes of the selected columns, whatever the chunk size. One chunk per array keeps the file
  count at a handful per shard and lets a local query sum the selected columns straight from a memory map of the
  file (no copy; the pages come from the OS page cache). Attribution values are high-entropy floats, so compression
  would buy little space and cost every query a decompression of whole chunks.
- The store is a valid AnnData zarr (``anndata.read_zarr`` reads it); ``obs`` holds cell metadata and ``var`` the
  model's gene order.
- The cell names are also stored as offsets + UTF-8 bytes (``obs/_sigscan_names``, see :mod:`._obs`), which a query
  turns into its result's index without creating a Python string per cell. Shards written before that copy existed
  are read from ``obs/_index``.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._utils import sha256_strings
from ._header import HEADER, HeaderError, QueryHeader, encode_header
from ._location import Location
from ._obs import NAMES_KEY, NAMES_PATH, decode_names, encode_names, names_problem

#: elements per chunk of ``X/data`` and ``X/indices``
CHUNK = 1 << 29
#: attribute of the ``X`` group recording what the shard was written for
ATTRS = "sigscan_atlas"
_CRC_BLOCK = 1 << 24


def shard_checksum(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, obs_names: pd.Index) -> str:
    """Checksum of a shard's CSC arrays and cell names.

    SHA-256 over each array's dtype and shape, the CRC-32 of every 16 MiB block of its bytes, and the cell names.
    CRC-32 runs at several GB/s (SHA-256 over the whole bytes would add ~0.5 s per 50,000 cells to ``add`` and
    ``verify``) and detects any damaged block; the SHA-256 on top makes the value one fixed-size fingerprint.
    """
    digest = hashlib.sha256()
    for array in (data, indices, indptr):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        raw = memoryview(array).cast("B")
        crcs = [zlib.crc32(raw[i : i + _CRC_BLOCK]) for i in range(0, len(raw), _CRC_BLOCK)]
        digest.update(np.asarray(crcs, dtype="<u4").tobytes())
    digest.update(sha256_strings([str(name) for name in obs_names]).encode())
    return digest.hexdigest()


def to_csc(matrix: sparse.csr_matrix, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (columns already in atlas gene positions) → CSC arrays ``(data float32, indices int32, indptr int64)``."""
    csc = sparse.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], n_genes)).tocsc()
    csc.sum_duplicates()
    return (
        np.ascontiguousarray(csc.data, dtype="<f4"),
        np.ascontiguousarray(csc.indices, dtype="<i4"),
        np.ascontiguousarray(csc.indptr, dtype="<i8"),
    )


def compact_obs(obs: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``obs`` with string columns of repeated values stored as categoricals (smaller, faster to read)."""
    obs = obs.copy()
    obs.index = obs.index.astype(str)
    for column in obs.columns:
        values = obs[column]
        if values.dtype == object and values.map(type).eq(str).all() and values.nunique() <= max(1, len(values) // 2):
            obs[column] = values.astype("category")
    return obs


def write_shard(
    location: Location,
    relpath: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    obs: pd.DataFrame,
    gene_order: pd.Index,
    attrs: dict[str, Any],
    uns: dict[str, Any],
) -> str:
    """Write a shard (AnnData zarr v2) at ``relpath`` under ``location``; returns its :func:`shard_checksum`.

    The bulk bytes (``X/data``, ``X/indices``) are written by a background thread while this thread writes the
    metadata and computes the checksum (file writes, CRC-32 and SHA-256 release the GIL).
    """
    import anndata as ad
    import zarr

    data, indices, indptr = arrays
    group = zarr.open_group(location.join(relpath), mode="w", zarr_format=2, storage_options=_options(location))
    chunk_writes = []

    def add_arrays(folder: Any, where: str, named: tuple[tuple[str, np.ndarray], ...]) -> None:
        for name, array in named:
            n_chunks = max(1, math.ceil(len(array) / CHUNK))
            chunk = max(1, math.ceil(len(array) / n_chunks))  # equal chunks: the padding of the last one is tiny
            folder.create_array(name, shape=array.shape, dtype=array.dtype, chunks=(chunk,), compressors=None)
            # uncompressed zarr v2 chunks are the raw little-endian bytes, padded to the full chunk: write them
            # directly (zarr's own write path costs ~10x more for large arrays)
            for number, lo in enumerate(range(0, len(array), chunk)):
                part = array[lo : lo + chunk]
                padding = bytes((chunk - len(part)) * array.itemsize)
                chunk_writes.append((f"{relpath}/{where}/{name}/{number}", [memoryview(part).cast("B"), padding]))

    x = group.create_group("X")
    add_arrays(x, "X", (("data", data), ("indices", indices), ("indptr", indptr)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.map(lambda item: location.write_file(*item), chunk_writes)
        skeleton = ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(gene_order.astype(str), name=None)), uns=uns)
        for key in ("obs", "var", "uns"):
            ad.io.write_elem(group, key, getattr(skeleton, key))
        # after obs (writing obs replaces its group); anndata reads only obs's listed columns, so it ignores these
        offsets, name_bytes = encode_names(obs.index)
        names = group.require_group(NAMES_PATH)
        names.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        n_writes = len(chunk_writes)
        add_arrays(names, NAMES_PATH, (("offsets", offsets), ("bytes", name_bytes)))
        for name_writes in chunk_writes[n_writes:]:
            location.write_file(*name_writes)
        checksum = shard_checksum(data, indices, indptr, obs.index)
        list(pending)  # re-raises a failed write
    x_attrs = {
        "encoding-type": "csc_matrix",
        "encoding-version": "0.1.0",
        "shape": [len(obs), len(gene_order)],
        ATTRS: {**attrs, "checksum": checksum, NAMES_KEY: NAMES_PATH},
    }
    x.attrs.update(x_attrs)
    header = encode_header(x_attrs, {"indptr": indptr, "names/offsets": offsets, "names/bytes": name_bytes}, obs)
    n_writes, (folder, name) = len(chunk_writes), HEADER.rsplit("/", 1)
    add_arrays(group[folder], folder, ((name, header),))
    for header_writes in chunk_writes[n_writes:]:
        location.write_file(*header_writes)
    group.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    return checksum


def _options(location: Location) -> dict[str, Any] | None:
    return None if location.is_local else (location.storage_options or None)


def _map_file(path: str, dtype: np.dtype, length: int) -> np.ndarray:
    """Read-only memory map of the first ``length`` elements of a file, advised for random access.

    ``MADV_RANDOM`` stops the kernel from reading ahead (and mapping) megabytes around every page a query touches:
    a gene set touches small runs scattered over the file.
    """
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), length * dtype.itemsize, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype, count=length)


class ShardError(ValueError):
    """A shard is missing, damaged or does not belong to the atlas.

    Examples
    --------
    >>> from sigscan.atlas import ShardError
    >>> issubclass(ShardError, ValueError)
    True
    """


class ShardReader:
    """Reads gene columns and cell metadata of one shard.

    Parameters
    ----------
    location
        The atlas folder.
    name, relpath
        The shard's name (for messages) and its folder relative to the atlas root.
    gene_order_sha256
        Hash of the atlas gene order; a shard written for another gene order is refused.
    """

    def __init__(self, location: Location, name: str, relpath: str, gene_order_sha256: str, n_genes: int):
        self.location, self.name, self.relpath = location, name, relpath
        self.where = location.join(relpath)
        self._group: Any = None
        #: the query header (see :mod:`._header`); ``None`` for shards written before it existed
        self.header: QueryHeader | None = None
        try:
            self.header = QueryHeader.read(location, relpath)  # one file instead of ~20 (X attrs, indptr, obs, ...)
            x_attrs = self.header.x if self.header is not None else self._zarr_v2_attrs("X")
            if x_attrs is None:  # not a zarr v2 store: let zarr open it
                x_attrs = dict(self.group["X"].attrs)
            self.shape = tuple(int(v) for v in x_attrs["shape"])
            encoding = x_attrs.get("encoding-type")
            attrs = dict(x_attrs.get(ATTRS, {}))
        except ShardError:
            raise
        except Exception as error:
            raise self.error(f"cannot be opened ({type(error).__name__}: {error})") from error
        if encoding != "csc_matrix":
            raise self.error(f"X is {encoding}, not csc_matrix")
        if attrs.get("gene_order_sha256") != gene_order_sha256 or self.shape[1] != n_genes:
            raise ShardError(
                f"Shard {name!r} ({self.where}) was written for another gene order ({self.shape[1]} genes, hash "
                f"{str(attrs.get('gene_order_sha256'))[:12]}…; the atlas has {n_genes} genes, hash "
                f"{gene_order_sha256[:12]}…). Remove it with atlas.remove({name!r}) and add the dataset again, "
                "or put it in an atlas made for its model."
            )
        #: largest |value| written (``None`` for shards written before it was recorded): reads beyond it are damage
        self.max_abs: float | None = attrs.get("max_abs")
        #: non-zeros the manifest recorded (set by the atlas); ``X/indptr`` must end there
        self.expected_nnz: int | None = None
        self._indptr: np.ndarray | None = None
        self._obs: pd.DataFrame | None = None
        self._raw: dict[str, tuple[np.dtype, int] | None] = {}
        self._maps: dict[str, np.ndarray | None] = {}
        #: zarr-decoded arrays whose chunks were all found
        self._complete: set[str] = set()
        #: folder of the offsets + bytes copy of the cell names (``None``: written before it existed)
        self._names_path: str | None = attrs.get(NAMES_KEY)
        self._names: pd.Index | None = None
        self._meta: dict[str, dict[str, Any] | None] = {}

    @property
    def group(self) -> Any:
        """The shard's zarr group (opened on first use)."""
        if self._group is None:
            import zarr

            try:
                self._group = zarr.open_group(self.where, mode="r", storage_options=_options(self.location))
            except Exception as error:
                raise self.error(f"cannot be opened ({type(error).__name__}: {error})") from error
        return self._group

    def _zarr_v2_attrs(self, *parts: str) -> dict[str, Any] | None:
        """The ``.zattrs`` of a zarr v2 node under the shard (``{}`` when it has none), ``None`` for other stores."""
        try:
            return json.loads(self.location.read_bytes(self.relpath, *parts, ".zattrs"))
        except FileNotFoundError:
            if self.location.exists(self.relpath, *parts, ".zgroup"):
                return {}
            if self.location.exists(self.relpath, "zarr.json") or self.location.exists(self.relpath):
                return None
            raise

    def error(self, problem: str) -> ShardError:
        """An error naming this shard and the fix."""
        return ShardError(
            f"Shard {self.name!r} ({self.where}) is missing or damaged: {problem}. Run atlas.verify() to check all "
            f"shards; fix it with atlas.remove({self.name!r}) and add the dataset again."
        )

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return self.shape[0]

    @property
    def indptr(self) -> np.ndarray:
        """CSC column pointers (read once)."""
        if self._indptr is None:
            from ._integrity import indptr_problem, missing_chunks

            source = "X/indptr" if self.header is None else "the query header's column pointers"
            try:
                raw = self.header.array("indptr") if self.header is not None else self._raw_array("indptr")
                if raw is not None:  # uncompressed, one chunk: the file is the array (a missing file fails here)
                    problem, indptr, n_values = None, raw, self._raw_length("data")
                else:
                    array = self.group["X/indptr"]
                    problem = missing_chunks(self.location, f"{self.relpath}/X/indptr", array)
                    indptr = None if problem else np.asarray(array[:], dtype=np.int64)
                    n_values = self.group["X/data"].shape[0]
            except ShardError:
                raise
            except Exception as error:
                raise self.error(f"X/indptr cannot be read ({type(error).__name__}: {error})") from error
            problem = problem or indptr_problem(indptr, self.shape[1], n_values, self.expected_nnz, source)
            if problem:
                raise self.error(problem)
            self._indptr = indptr
        return self._indptr

    def _zarray(self, folder: str, key: str) -> dict[str, Any] | None:
        """The ``.zarray`` metadata of ``<folder>/<key>`` (read once), ``None`` when it has none."""
        cache_key = f"{folder}/{key}"
        if cache_key not in self._meta:
            try:
                self._meta[cache_key] = json.loads(self.location.read_bytes(self.relpath, folder, key, ".zarray"))
            except FileNotFoundError:
                self._meta[cache_key] = None
        return self._meta[cache_key]

    def _raw_length(self, key: str) -> int:
        """Length of ``X/<key>`` from its ``.zarray``."""
        meta = self._zarray("X", key)
        if meta is None:
            raise FileNotFoundError(f"X/{key}/.zarray is missing")
        return int(meta["shape"][0])

    def _raw_array(self, key: str, folder: str = "X") -> np.ndarray | None:
        """A whole uncompressed single-chunk zarr v2 array under ``folder``, read as one file; ``None`` otherwise."""
        meta = self._zarray(folder, key)
        if meta is None:
            return None
        (length,), (chunk,) = meta["shape"], meta["chunks"]
        if meta.get("compressor") is not None or meta.get("filters") or chunk < length or meta.get("order") == "F":
            return None
        dtype = np.dtype(meta["dtype"])
        if not length:
            return np.empty(0, dtype)
        raw = self.location.read_bytes(self.relpath, folder, key, "0")
        if len(raw) < length * dtype.itemsize:
            raise self.error(f"{folder}/{key} holds {len(raw)} bytes, fewer than its {length} elements")
        return np.frombuffer(raw, dtype=dtype, count=length)

    def names(self, *, full_check: bool = False) -> pd.Index:
        """The cell names (read once), as pandas' Arrow-backed string dtype (see :mod:`._obs`).

        ``full_check`` (for :meth:`Atlas.verify`) reads them again and also checks that the bytes are UTF-8.
        """
        if self._names is None or (full_check and self._names_path is not None):
            if self._names_path is None:  # written before the offsets + bytes copy existed
                names = self._index_from_obs()
            else:
                try:
                    source = self._names_path
                    if self.header is not None and not full_check:
                        offsets, data = self.header.array("names/offsets"), self.header.array("names/bytes")
                        source = f"{HEADER} names"
                    else:
                        offsets = self._raw_array("offsets", self._names_path)
                        data = self._raw_array("bytes", self._names_path)
                    if offsets is None or data is None:
                        raise FileNotFoundError(f"{self._names_path} is missing")
                    problem = names_problem(offsets, len(data), self.n_cells, source)
                    if problem:
                        raise self.error(problem)
                    names = decode_names(offsets, data, full_check=full_check)
                except ShardError:
                    raise
                except Exception as error:
                    raise self.error(f"the cell names cannot be read ({type(error).__name__}: {error})") from error
            if len(names) != self.n_cells:
                raise self.error(f"obs has {len(names)} rows but X has {self.n_cells}")
            self._names = names
        return self._names

    def _index_from_obs(self) -> pd.Index:
        """AnnData's ``obs/_index`` as :func:`._obs.names_dtype` (shards without the offsets + bytes copy)."""
        from ._obs import as_names_index, read_index

        try:
            if self.location.is_local:
                try:
                    return read_index(self.where)
                except (KeyError, ValueError, TypeError):
                    pass  # an encoding read_index does not handle: anndata reads it
            return as_names_index(self._read_obs(None).index)
        except ShardError:
            raise
        except Exception as error:
            raise self.error(f"obs cannot be read ({type(error).__name__}: {error})") from error

    def obs(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Cell metadata (read once); with ``columns``, only those columns the shard has (read on their own).

        The index is :meth:`names`.
        """
        header = self.header
        if self._obs is None and header is not None:
            wanted = header.column_order if columns is None else [c for c in columns if c in header.column_order]
            if all(header.has_column(name) for name in wanted):
                try:
                    data = {name: header.column(name) for name in wanted}
                except HeaderError as error:
                    raise self.error(str(error)) from error
                if any(len(values) != self.n_cells for values in data.values()):
                    raise self.error(f"the query header's obs columns do not have {self.n_cells} rows")
                frame = pd.DataFrame(data, index=self.names().rename(header.index_name), copy=False)
                if columns is None:
                    self._obs = frame
                return frame
        if self._obs is None and columns is not None:
            names = self.names()
            if not columns:
                return pd.DataFrame(index=names)
            if self.location.is_local:
                from ._obs import read_obs

                try:
                    partial = read_obs(self.where, list(columns), index=names)
                except Exception as error:
                    raise self.error(f"obs cannot be read ({type(error).__name__}: {error})") from error
                if partial is not None:
                    if len(partial) != self.n_cells:
                        raise self.error(f"obs has {len(partial)} rows but X has {self.n_cells}")
                    return partial
        if self._obs is None:
            obs = self._read_obs(self.names())
            if len(obs) != self.n_cells:
                raise self.error(f"obs has {len(obs)} rows but X has {self.n_cells}")
            self._obs = obs
        return self._obs if columns is None else self._obs[[c for c in columns if c in self._obs.columns]]

    def _read_obs(self, index: pd.Index | None) -> pd.DataFrame:
        """The whole obs, indexed by ``index`` when given (else by its own index, as read)."""
        try:
            if self.location.is_local:  # decoded straight from the chunk files (see _obs.py); None: use anndata
                from ._obs import read_obs

                obs = read_obs(self.where, index=index)
                if obs is not None:
                    return obs
            import anndata as ad

            obs = ad.io.read_elem(self.group["obs"])
            if index is not None:
                if len(obs) != len(index):
                    raise self.error(f"obs has {len(obs)} rows but X has {self.n_cells}")
                obs.index = index.rename(obs.index.name)
            return obs
        except ShardError:
            raise
        except Exception as error:
            raise self.error(f"obs cannot be read ({type(error).__name__}: {error})") from error

    def header_problem(self, indptr: np.ndarray) -> str | None:
        """How the query header differs from the AnnData store (``X/indptr`` as read by the caller), else ``None``.

        For :meth:`Atlas.verify`; queries only check the header's bounds.
        """
        header = self.header
        if header is None:
            return None
        if not np.array_equal(header.array("indptr"), indptr):
            return "the query header's column pointers differ from X/indptr"
        offsets, data = header.array("names/offsets"), header.array("names/bytes")
        problem = names_problem(offsets, len(data), self.n_cells, f"{HEADER} names")
        if problem:
            return problem
        names = decode_names(offsets, data, full_check=True)
        stored = self._read_obs(None)
        if not names.equals(stored.index) or (self.has_names_copy and not names.equals(self.names(full_check=True))):
            return "the query header's cell names differ from obs"
        if header.column_order != [str(c) for c in stored.columns]:
            return "the query header's obs columns differ from obs"
        for name in header.column_order:
            if not header.has_column(name):
                continue
            try:
                mine = pd.Series(header.column(name), index=stored.index)
            except HeaderError as error:
                return str(error)
            if not mine.equals(stored[name]) or mine.dtype != stored[name].dtype:
                return f"the query header's obs column {name!r} differs from obs"
        return None

    @property
    def has_names_copy(self) -> bool:
        """Whether the shard stores its cell names as offsets + bytes besides ``obs/_index``."""
        return self._names_path is not None

    def stored_index(self) -> pd.Index:
        """AnnData's own ``obs/_index`` (for :meth:`Atlas.verify` to compare with :meth:`names`)."""
        return self._index_from_obs()

    def _raw_layout(self, key: str) -> tuple[np.dtype, int] | None:
        """``(dtype, chunk length)`` when ``X/<key>`` is uncompressed zarr v2 (byte ranges readable), else ``None``."""
        if key not in self._raw:
            layout = None
            meta = self._zarray("X", key)
            if meta is not None:
                if (
                    meta.get("compressor") is None
                    and not meta.get("filters")
                    and meta.get("dimension_separator", ".") in (".", "/")
                ):
                    layout = (np.dtype(meta["dtype"]), int(meta["chunks"][0]))
            self._raw[key] = layout
        return self._raw[key]

    def read_ranges(self, key: str, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Elements ``[start, stop)`` of ``X/<key>`` for each range, concatenated."""
        total = int((stops - starts).sum())
        layout = self._raw_layout(key)
        try:
            if layout is None:  # compressed shard written by another tool: let zarr decode whole chunks
                array = self.group[f"X/{key}"]
                if key not in self._complete:
                    from ._integrity import missing_chunks

                    problem = missing_chunks(self.location, f"{self.relpath}/X/{key}", array)
                    if problem:
                        raise self.error(problem)
                    self._complete.add(key)
                parts = [array[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
                return np.concatenate(parts) if parts else np.empty(0, dtype=array.dtype)
            dtype, chunk = layout
            out = np.empty(total, dtype=dtype)
            if total == 0:
                return out
            first, last = starts // chunk, (stops - 1) // chunk
            if not (first == last).all():
                pieces = [
                    (c, max(a, c * chunk), min(b, (c + 1) * chunk))
                    for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
                    for c in range(a // chunk, (b - 1) // chunk + 1)
                ]
                first = np.array([p[0] for p in pieces])
                starts = np.array([p[1] for p in pieces])
                stops = np.array([p[2] for p in pieces])
            itemsize = dtype.itemsize
            buffer = out.view(np.uint8)
            boundaries = np.flatnonzero(np.diff(first)) + 1
            position = 0
            for group in np.split(np.arange(len(first)), boundaries):
                c = int(first[group[0]])
                lo = (starts[group] - c * chunk) * itemsize
                hi = (stops[group] - c * chunk) * itemsize
                size = int((hi - lo).sum())
                self.location.read_ranges(f"{self.relpath}/X/{key}/{c}", lo, hi, buffer[position : position + size])
                position += size
            return out
        except ShardError:
            raise
        except Exception as error:
            raise self.error(f"X/{key} cannot be read ({type(error).__name__}: {error})") from error

    def _memory_map(self, key: str) -> np.ndarray | None:
        """``X/<key>`` as a read-only memory map when the shard is local, uncompressed and in one chunk."""
        if key not in self._maps:
            layout = self._raw_layout(key) if self.location.is_local else None
            array = None
            if layout is not None:
                dtype, chunk = layout
                length = int(self.indptr[-1])
                if chunk >= length:
                    path = self.location.join(self.relpath, "X", key, "0")
                    try:
                        size = os.path.getsize(path) if length else 0
                        if size < length * dtype.itemsize:
                            raise self.error(f"X/{key} holds {size} bytes, fewer than its {length} elements")
                        array = _map_file(path, dtype, length) if length else np.empty(0, dtype)
                    except OSError as error:
                        raise self.error(f"X/{key} cannot be read ({type(error).__name__}: {error})") from error
            self._maps[key] = array
        return self._maps[key]

    def column_sums(self, columns: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``Σ_j weights_j · X[:, columns_j]`` per cell (float64), reading only the selected columns.

        Local single-chunk shards are summed straight from memory maps of ``X/data`` and ``X/indices``; others read
        the columns' byte ranges first.
        """
        from ._kernels import sum_column_ranges, weighted_column_sums

        data, indices = self._memory_map("data"), self._memory_map("indices")
        if data is None or indices is None:
            data, indices, col_ptr = self.read_column_arrays(columns)
            return weighted_column_sums(data, indices, col_ptr, weights, self.n_cells)
        columns = np.asarray(columns, dtype=np.int64)
        totals, bad = sum_column_ranges(
            data, indices, self.indptr[columns], self.indptr[columns + 1], weights, self.n_cells
        )
        if bad:
            raise self.error("X/indices holds row numbers outside the shard")
        return totals

    def read_columns(self, columns: np.ndarray) -> sparse.csc_matrix:
        """The cells × ``len(columns)`` CSC slice (``columns`` are atlas gene positions, any order)."""
        data, indices, col_ptr = self.read_column_arrays(columns)
        return sparse.csc_matrix((data, indices, col_ptr), shape=(self.n_cells, len(columns)))

    def read_column_arrays(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(data, indices, indptr)`` of the CSC slice of ``columns``; row numbers are checked to lie in the shard."""
        columns = np.asarray(columns, dtype=np.int64)
        indptr = self.indptr
        starts, stops = indptr[columns], indptr[columns + 1]
        lengths = stops - starts
        order = np.argsort(starts, kind="stable")
        s, e = starts[order], stops[order]
        keep = e > s
        s, e = s[keep], e[keep]
        if len(s) > 1:  # merge adjacent runs into one read
            breaks = np.flatnonzero(s[1:] != e[:-1]) + 1
            s, e = s[np.r_[0, breaks]], e[np.r_[breaks - 1, len(e) - 1]]
        data = self.read_ranges("data", s, e)
        indices = self.read_ranges("indices", s, e)
        if not (order == np.arange(len(order))).all():  # rearrange into the requested column order
            sorted_ptr = np.r_[0, np.cumsum(lengths[order])]
            position = np.empty(len(columns), dtype=np.int64)
            position[order] = sorted_ptr[:-1]
            take = (
                np.concatenate([np.arange(p, p + n) for p, n in zip(position, lengths, strict=True)])
                if len(columns)
                else np.empty(0, np.int64)
            )
            data, indices = data[take], indices[take]
        col_ptr = np.r_[0, np.cumsum(lengths)]
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_cells):
            raise self.error("X/indices holds row numbers outside the shard")
        return data, indices, col_ptr

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The full CSC arrays (for :meth:`Atlas.verify`)."""
        from ._integrity import missing_chunks

        for key in ("data", "indices", "indptr"):
            try:
                problem = missing_chunks(self.location, f"{self.relpath}/X/{key}", self.group[f"X/{key}"])
            except Exception as error:
                raise self.error(f"X/{key} cannot be read ({type(error).__name__}: {error})") from error
            if problem:
                raise self.error(problem)
        try:
            return (
                np.asarray(self.group["X/data"][:], dtype="<f4"),
                np.asarray(self.group["X/indices"][:], dtype="<i4"),
                np.asarray(self.group["X/indptr"][:], dtype="<i8"),
            )
        except Exception as error:
            raise self.error(f"X cannot be read ({type(error).__name__}: {error})") from error

    def var_names(self) -> pd.Index:
        """The stored gene order."""
        import anndata as ad

        try:
            return pd.Index(ad.io.read_elem(self.group["var"]).index.astype(str))
        except Exception as error:
            raise self.error(f"var cannot be read ({type(error).__name__}: {error})") from error
