"""A shard's query header: what a query reads besides the selected columns, in one file.

A gene-set query needs, per shard, ``X``'s attributes (shape, gene order hash, value bound), the column pointers
``X/indptr``, the cell names and the obs columns. In the AnnData layout these are ~20 small files per shard (each
opened, read and JSON-decoded, with blosc-decoded obs chunks): in a fresh process that was most of a first query's
time, and threads reading them contend for the GIL with the threads summing columns. So the writer also stores them as
one packed file (:mod:`._packed`), the single uncompressed chunk of a zarr v2 ``uint8`` array ``obs/_sigscan_query``
(a valid zarr node, which anndata ignores as it ignores ``obs/_sigscan_names``), and :class:`QueryHeader` reads it
with one open and one memory map.

It sits in ``obs`` because rewriting a shard's obs with anndata replaces that whole group: an edited obs takes the
header with it, and queries read the AnnData files again. The layout of ``X/data`` and ``X/indices`` is not copied:
their ``.zarray`` files are still read (two small reads), so a shard whose columns another tool re-encoded is read
through zarr as before.

Obs columns are stored as categorical codes (categoricals with string categories; the categories in the description)
or as arrays (numeric and boolean columns). Other columns are listed in ``column_order`` only and read from the
AnnData store. The AnnData copies stay the reference: queries check the header's arrays as they check ``X/indptr`` and
the names copy (bounds, monotonicity, code ranges), and :meth:`Atlas.verify <sigscan.Atlas.verify>` compares the
header with them in full. Shards written before the header existed are read from the AnnData files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._location import Location
from ._packed import Packed, PackedError, pack

#: the header's zarr array, relative to the shard root; its one chunk (``<HEADER>/0``) is the header file
HEADER = "obs/_sigscan_query"
_MAGIC = b"SIGSCANQ"
_VERSION = 1

#: raised for a header that exists but cannot be used (the reader turns it into a ShardError naming the shard)
HeaderError = PackedError


def encode_header(x_attrs: dict[str, Any], arrays: dict[str, np.ndarray], obs: pd.DataFrame) -> np.ndarray:
    """The header file: ``X``'s attributes, ``arrays`` (``indptr``, ``names/offsets``, ``names/bytes``) and ``obs``."""
    columns: dict[str, dict[str, Any]] = {}
    arrays = dict(arrays)
    for name in obs.columns:
        values = obs[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            if values.cat.categories.inferred_type != "string":
                continue  # read from the AnnData store
            arrays[f"obs/{name}"] = values.cat.codes.to_numpy()
            categories = values.cat.categories.tolist()
            columns[str(name)] = {"kind": "categorical", "categories": categories, "ordered": values.cat.ordered}
        elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            arrays[f"obs/{name}"] = values.to_numpy()
            columns[str(name)] = {"kind": "array"}
    obs_meta = {"column_order": [str(c) for c in obs.columns], "index_name": obs.index.name, "columns": columns}
    return pack(_MAGIC, {"version": _VERSION, "x": x_attrs, "obs": obs_meta}, arrays)


class QueryHeader:
    """A shard's query header (use :meth:`read`).

    Attributes ``x`` (``X``'s attributes), ``column_order`` and ``index_name``; arrays through :meth:`array` and
    obs columns through :meth:`column`.
    """

    def __init__(self, packed: Packed):
        if packed.meta.get("version") != _VERSION:
            raise HeaderError(f"{packed.where}: version {packed.meta.get('version')}; this sigscan reads {_VERSION}")
        self._packed = packed
        self.x: dict[str, Any] = packed.meta["x"]
        self.column_order: list[str] = packed.meta["obs"]["column_order"]
        self.index_name: str | None = packed.meta["obs"]["index_name"]
        self._columns: dict[str, dict[str, Any]] = packed.meta["obs"]["columns"]

    @classmethod
    def read(cls, location: Location, relpath: str) -> QueryHeader | None:
        """The header of the shard at ``relpath``; ``None`` when it has none (written before headers existed)."""
        packed = Packed.read(location, _MAGIC, "sigscan query header", relpath, HEADER, "0")
        return None if packed is None else cls(packed)

    def array(self, key: str) -> np.ndarray:
        """A stored array (``indptr``, ``names/offsets``, ``names/bytes``, ``obs/<column>``)."""
        return self._packed.array(key)

    def has_column(self, name: str) -> bool:
        """Whether obs column ``name`` is stored in the header."""
        return name in self._columns

    def column(self, name: str) -> pd.Categorical | np.ndarray:
        """Obs column ``name`` (categorical codes are checked against the number of categories)."""
        spec, values = self._columns[name], self.array(f"obs/{name}")
        if spec["kind"] == "array":
            return values
        dtype = pd.CategoricalDtype(spec["categories"], ordered=spec["ordered"])
        if len(values) and (values.min() < -1 or values.max() >= len(dtype.categories)):
            raise HeaderError(
                f"{self._packed.where}: codes of obs column {name!r} outside its {len(dtype.categories)} categories"
            )
        try:
            return pd.Categorical.from_codes(values, dtype=dtype, validate=False)
        except TypeError:  # pragma: no cover - pandas < 2.1 has no validate=
            return pd.Categorical.from_codes(values, dtype=dtype)
