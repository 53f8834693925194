"""Fast reads of a local shard's ``obs``: the zarr v2 chunks decoded directly with numcodecs, only the columns asked for.

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

import numpy as np
import pandas as pd


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
    import numcodecs

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
        return pd.Categorical.from_codes(codes, categories=categories, ordered=bool(attrs.get("ordered", False)))
    raise _Unsupported(f"{path}: encoding {encoding!r}")


def read_obs(path: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The obs DataFrame (only ``columns`` when given, in that order) of a local AnnData zarr v2 store at ``path``.

    Returns ``None`` when the store uses an encoding this reader does not handle; raises :class:`KeyError` for a
    column that does not exist.
    """
    folder = os.path.join(path, "obs")
    attrs = _json(os.path.join(folder, ".zattrs"))
    if attrs.get("encoding-type") != "dataframe":
        return None
    order = list(attrs.get("column-order", []))
    wanted = order if columns is None else [c for c in columns if c in order]
    try:
        index_key = attrs["_index"]
        index = pd.Index(
            _read_array(os.path.join(folder, index_key)), name=None if index_key == "_index" else index_key
        )
        data = {name: _read_column(os.path.join(folder, name)) for name in wanted}
    except (_Unsupported, KeyError, ValueError, TypeError):
        return None
    frame = pd.DataFrame(data, index=index, copy=False)
    if index.dtype == object:
        frame.index = index.astype(str) if len(index) and not isinstance(index[0], str) else index
    return frame
