"""TileDB-SOMA input (CELLxGENE Census): a query's cells and genes, its counts read block by block via ``axis_query``.

A :class:`SomaRows` is what :func:`sigscan.pp.attributions` and :meth:`sigscan.Atlas.build` stream from: it knows
the query's ``obs``/``var`` joinids (resolved once) and reads the counts of rows ``[lo, hi)`` as a CSR matrix,
never the whole ``X``. It is picklable (it holds the URI, not an open handle), so a Dask worker can read its own
blocks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

#: var columns holding gene identifiers, in preference order for ``var_names`` (Census: Ensembl IDs in feature_id)
_VAR_ID_COLUMNS = ("feature_id", "var_id", "gene_ids", "feature_name")
#: obs columns holding cell names (``tiledbsoma.io.from_anndata`` writes ``obs_id``)
_OBS_ID_COLUMNS = ("obs_id", "cell_id", "barcode")


def _tiledbsoma() -> Any:
    try:
        import tiledbsoma
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "Reading TileDB-SOMA experiments needs tiledbsoma: pip install 'sigscan[soma]' "
            "(and 'sigscan[census]' for the hosted CELLxGENE Census)."
        ) from error
    return tiledbsoma


def is_soma(data: Any) -> bool:
    """Whether ``data`` is a SOMA experiment: an open ``tiledbsoma.Experiment``, a :class:`SomaRows`, or its URI."""
    if isinstance(data, SomaRows):
        return True
    if type(data).__module__.startswith(("tiledbsoma", "somacore")) and hasattr(data, "ms"):
        return True
    if isinstance(data, str | os.PathLike):
        text = str(data)
        if text.startswith("tiledb://"):
            return True
        if "://" in text:  # s3://… (Census) and other object stores: ask tiledbsoma when it is installed
            try:
                import tiledbsoma

                return bool(tiledbsoma.Experiment.exists(text))
            except Exception:
                return False
        if "://" not in text and os.path.isdir(text):
            return os.path.exists(os.path.join(text, "__tiledb_group.tdb")) or os.path.isdir(
                os.path.join(text, "__group")
            )
    return False


def _uri(data: Any) -> str:
    return str(data.uri) if hasattr(data, "uri") else str(data)


@dataclass
class SomaRows:
    """The rows of a SOMA experiment query, read block by block.

    Parameters
    ----------
    uri
        The experiment.
    measurement, X_name
        Measurement and X layer holding raw counts (Census: ``"RNA"``, ``"raw"``).
    obs_value_filter, var_value_filter
        SOMA value filters (``"is_primary_data == True and cell_type == 'classical monocyte'"``).
    """

    uri: str
    measurement: str = "RNA"
    X_name: str = "raw"
    obs_value_filter: str | None = None
    var_value_filter: str | None = None
    obs_joinids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    var_joinids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    @classmethod
    def open(
        cls,
        data: Any,
        *,
        measurement: str = "RNA",
        X_name: str = "raw",
        obs_value_filter: str | None = None,
        var_value_filter: str | None = None,
    ) -> SomaRows:
        """Resolve the query's cells and genes (their joinids) and check the measurement and X layer exist."""
        if isinstance(data, SomaRows):
            return data
        soma = _tiledbsoma()
        uri = _uri(data)
        with soma.Experiment.open(uri) as experiment:
            if measurement not in experiment.ms:
                raise KeyError(
                    f"SOMA experiment {uri} has no measurement {measurement!r}; it has {list(experiment.ms)}."
                )
            layers = list(experiment.ms[measurement].X)
            if X_name not in layers:
                raise KeyError(f"SOMA measurement {measurement!r} of {uri} has no X layer {X_name!r}; it has {layers}.")
            with experiment.axis_query(
                measurement,
                obs_query=soma.AxisQuery(value_filter=obs_value_filter),
                var_query=soma.AxisQuery(value_filter=var_value_filter),
            ) as query:
                obs_ids = query.obs_joinids().to_numpy()
                var_ids = query.var_joinids().to_numpy()
        return cls(
            uri,
            measurement,
            X_name,
            obs_value_filter,
            var_value_filter,
            np.sort(obs_ids).astype(np.int64),
            np.sort(var_ids).astype(np.int64),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Cells × genes of the query."""
        return (len(self.obs_joinids), len(self.var_joinids))

    def var(self) -> pd.DataFrame:
        """The query's genes: all var columns, indexed by the first identifier column present (Census: feature_id)."""
        frame = self._read_frame("var", self.var_joinids, None)
        index = next((c for c in _VAR_ID_COLUMNS if c in frame.columns), None)
        names = frame[index].astype(str) if index else frame.index.astype(str)
        frame.index = pd.Index(np.asarray(names), name=None)
        return frame.drop(columns=[index]) if index in ("var_id",) else frame

    def obs(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The query's cells (only ``columns`` when given), indexed by ``obs_id`` (or the joinid)."""
        wanted = None if columns is None else ["soma_joinid", *_OBS_ID_COLUMNS, *columns]
        frame = self._read_frame("obs", self.obs_joinids, wanted)
        missing = [c for c in columns or [] if c not in frame.columns]
        if missing:
            raise KeyError(f"SOMA obs of {self.uri} has no columns {missing}; available: {list(frame.columns)}.")
        index = next((c for c in _OBS_ID_COLUMNS if c in frame.columns), None)
        names = frame[index].astype(str) if index else frame.index.astype(str)
        frame.index = pd.Index(np.asarray(names), name=None)
        if columns is not None:
            frame = frame[list(columns)]
        elif index:
            frame = frame.drop(columns=[index])
        return frame

    def _read_frame(self, axis: str, joinids: np.ndarray, columns: list[str] | None) -> pd.DataFrame:
        soma = _tiledbsoma()
        with soma.Experiment.open(self.uri) as experiment:
            frame_array = experiment.obs if axis == "obs" else experiment.ms[self.measurement].var
            if columns is not None:
                names = set(frame_array.schema.names)
                columns = [c for c in dict.fromkeys(columns) if c in names]
            table = frame_array.read(coords=(joinids,), column_names=columns).concat()
        frame = table.to_pandas()
        frame = frame.set_index("soma_joinid").reindex(joinids)  # joinid order, whatever order the read returned
        frame.index = frame.index.astype(str)
        return frame

    def __getitem__(self, rows: slice) -> sparse.csr_matrix:
        """Counts of rows ``[start, stop)`` (CSR float32, the query's gene columns), read through ``axis_query``."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("SOMA rows are read as contiguous slices [start:stop].")
        soma = _tiledbsoma()
        obs_ids = self.obs_joinids[rows]
        n_rows, n_genes = len(obs_ids), len(self.var_joinids)
        if n_rows == 0:
            return sparse.csr_matrix((0, n_genes), dtype=np.float32)
        with (
            soma.Experiment.open(self.uri) as experiment,
            experiment.axis_query(
                self.measurement,
                obs_query=soma.AxisQuery(coords=(obs_ids,)),
                var_query=soma.AxisQuery(coords=(self.var_joinids,)),
            ) as query,
        ):
            table = query.X(self.X_name).tables().concat()
        row = np.searchsorted(obs_ids, table["soma_dim_0"].to_numpy())
        col = np.searchsorted(self.var_joinids, table["soma_dim_1"].to_numpy())
        values = table["soma_data"].to_numpy().astype(np.float32, copy=False)
        matrix = sparse.coo_matrix((values, (row, col)), shape=(n_rows, n_genes)).tocsr()
        matrix.sum_duplicates()
        return matrix
