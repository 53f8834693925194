"""Fast reads of a shard's ``obs``: cell names from offsets + bytes, columns decoded directly, only those asked for.

Cell names. Decoding a million names into Python strings costs ~0.15-0.2 s (vlen-utf8 or any other encoding: the cost is
creating the string objects), more than a warm query over those cells. So shards also store their cell names the way
Arrow does, as ``obs/_sigscan_names/offsets`` (int64, one more than cells) and ``obs/_sigscan_names/bytes`` (the
UTF-8 bytes, concatenated), two uncompressed zarr v2 arrays next to AnnData's own ``obs/_index`` (which stays; AnnData
reads only the columns listed in ``column-order``, so the shard is still a valid AnnData store). A reader wraps the two buffers in a pyarrow string array without copying or creating a
single Python string; query results are indexed by pandas' Arrow-backed string dtype (:data:`NAMES_DTYPE`, pandas 3's
default ``str``). Shards written before this layout are read from ``obs/_index``.

``anndata.io.read_elem`` goes through zarr's asynchronous machinery, which costs ~10-30 ms per array before any bytes
are decoded: reading the obs of a 50,000-cell shard (an index and a few categoricals, ~10 arrays) took 0.2-0.4 s on a
loaded 2-core machine, most of a fresh process's first query. The encodings a shard's obs uses (``dataframe``,
``array``, ``string-array``, ``categorical``) are read here from their chunk files; anything else returns ``None``
and the caller falls back to anndata.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numcodecs  # imported with the atlas, not in its first query (~40 ms)
import numpy as np
import pandas as pd
import pyarrow as pa

#: attribute (in the shard's ``X`` sigscan attributes) naming the folder of the offsets + bytes copy of the cell names
NAMES_KEY = "obs_names"
#: that folder, relative to the shard root
NAMES_PATH = "obs/_sigscan_names"


def names_dtype() -> Any:
    """The dtype of cell names: pandas' Arrow-backed strings with NaN as missing value (pandas 3's ``str``)."""
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    except TypeError:  # pragma: no cover - pandas < 2.3
        return pd.StringDtype("pyarrow")


def encode_names(names: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Cell names as ``(offsets int64, bytes uint8)``: name ``i`` is ``bytes[offsets[i]:offsets[i + 1]]`` in UTF-8."""
    encoded = [str(name).encode("utf-8") for name in names]
    offsets = np.zeros(len(encoded) + 1, dtype="<i8")
    if encoded:
        np.cumsum([len(item) for item in encoded], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8)


def names_problem(offsets: np.ndarray, n_bytes: int, n_cells: int, source: str = NAMES_PATH) -> str | None:
    """Problem text when the offsets (read from ``source``) do not describe ``n_cells`` names in ``n_bytes`` bytes."""
    if len(offsets) != n_cells + 1:
        return f"{source}/offsets has {len(offsets)} entries, expected {n_cells + 1}"
    if offsets[0] != 0 or (n_cells and (offsets[1:] < offsets[:-1]).any()) or offsets[-1] > n_bytes:
        return f"{source}/offsets do not start at 0, decrease, or point past the {n_bytes} name bytes"
    return None


def decode_names(offsets: np.ndarray, data: bytes | np.ndarray, *, full_check: bool = False) -> pd.Index:
    """The cell names as a pandas Index of :func:`names_dtype` (no Python string is created with pyarrow).

    ``offsets`` must have passed :func:`names_problem` (they are what makes the buffers safe to wrap). ``full_check``
    also checks that the bytes are UTF-8 (a pass over all of them; :meth:`Atlas.verify` does it, queries do not: bytes
    damaged in place are found by ``verify``'s checksum, like damaged values).
    """
    n = len(offsets) - 1
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(np.ascontiguousarray(offsets, "<i8")), pa.py_buffer(data))
    array.validate(full=full_check)  # buffer sizes; with full_check also UTF-8 (pyarrow.ArrowInvalid is a ValueError)
    return pd.Index(names_dtype().construct_array_type()(array), copy=False, name=None)


def as_names_index(index: pd.Index) -> pd.Index:
    """``index`` (cell names) as :func:`names_dtype`."""
    dtype = names_dtype()
    if index.dtype == dtype:
        return index
    return pd.Index(index.astype(str), dtype=dtype, name=None)


class _Unsupported(Exception):
    """An encoding this reader does not handle (the caller uses anndata)."""


def _json(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        return {}


def _read_array(path: str) -> np.ndarray:
    """A 1-d zarr v2 array (numeric, bool or vlen-utf8 strings), decoded chunk by chunk."""
    meta = _json(os.path.join(path, ".zarray"))
    if meta.get("zarr_format") != 2 or len(meta.get("shape", ())) != 1 or meta.get("order", "C") != "C":
        raise _Unsupported(path)
    (length,), (chunk,) = meta["shape"], meta["chunks"]
    filters = [numcodecs.get_codec(f) for f in meta.get("filters") or []]
    compressor = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    is_text = meta["dtype"] == "|O"
    if is_text and [f.codec_id for f in filters] != ["vlen-utf8"]:
        raise _Unsupported(path)
    dtype = np.dtype(object if is_text else meta["dtype"])
    parts = []
    separator = meta.get("dimension_separator", ".")
    for number in range(max(1, math.ceil(length / chunk)) if length else 0):
        size = min(chunk, length - number * chunk)
        file = os.path.join(path, str(number)) if separator == "." else os.path.join(path, *str(number).split("/"))
        if not os.path.exists(file):
            parts.append(np.full(size, meta.get("fill_value"), dtype=dtype))
            continue
        with open(file, "rb") as handle:
            raw: Any = handle.read()
        if compressor is not None:
            raw = compressor.decode(raw)
        for codec in reversed(filters):
            raw = codec.decode(raw)
        values = np.asarray(raw, dtype=object) if is_text else np.frombuffer(raw, dtype=dtype)
        parts.append(values[:size])
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _read_column(path: str) -> Any:
    attrs = _json(os.path.join(path, ".zattrs"))
    encoding = attrs.get("encoding-type")
    if encoding in ("array", "string-array"):
        return _read_array(path)
    if encoding == "categorical":
        codes = _read_array(os.path.join(path, "codes"))
        categories = _read_array(os.path.join(path, "categories"))
        if len(codes) and (codes.min() < -1 or codes.max() >= len(categories)):
            raise ValueError(f"{path}: codes outside the {len(categories)} categories")
        dtype = pd.CategoricalDtype(categories, ordered=bool(attrs.get("ordered", False)))
        try:
            return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)  # range checked above, in one pass
        except TypeError:  # pragma: no cover - pandas < 2.1 has no validate=
            return pd.Categorical.from_codes(codes, dtype=dtype)
    raise _Unsupported(f"{path}: encoding {encoding!r}")


def read_obs(path: str, columns: list[str] | None = None, index: pd.Index | None = None) -> pd.DataFrame | None:
    """The obs DataFrame (only ``columns`` when given, in that order) of a local AnnData zarr v2 store at ``path``.

    ``index``: the cell names when the caller has them (then ``obs/_index`` is not read). Returns ``None`` when the
    store uses an encoding this reader does not handle; raises :class:`KeyError` for a column that does not exist.
    """
    folder = os.path.join(path, "obs")
    attrs = _json(os.path.join(folder, ".zattrs"))
    if attrs.get("encoding-type") != "dataframe":
        return None
    order = list(attrs.get("column-order", []))
    wanted = order if columns is None else [c for c in columns if c in order]
    try:
        index_key = attrs["_index"]
        if index is None:
            index = read_index(path)
        else:
            index = index.rename(None if index_key == "_index" else index_key)
        data = {name: _read_column(os.path.join(folder, name)) for name in wanted}
    except (_Unsupported, KeyError, ValueError, TypeError):
        return None
    return pd.DataFrame(data, index=index, copy=False)


def read_index(path: str) -> pd.Index:
    """AnnData's own copy of the cell names (``obs/_index``) of a local zarr v2 store, as :func:`names_dtype`.

    Raises :class:`KeyError`, :class:`ValueError` or :class:`TypeError` when it cannot be decoded here.
    """
    folder = os.path.join(path, "obs")
    index_key = _json(os.path.join(folder, ".zattrs"))["_index"]
    try:
        values = _read_array(os.path.join(folder, index_key))
    except _Unsupported as error:
        raise ValueError(str(error)) from error
    return as_names_index(pd.Index(values, dtype=object)).rename(None if index_key == "_index" else index_key)
