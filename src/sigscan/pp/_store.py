"""Where attributions go, batch by batch: an in-memory layer or a resumable zarr store, behind one interface.

Both outputs have ``n_done`` (rows already finished: where the run starts), ``append(batch)`` and
``finish(obs, var, uns)`` (the whole matrix, or ``None`` when it stays on disk); :func:`open_output` picks one.

The zarr store is an AnnData zarr store whose ``X`` is the attribution CSR. Each finished batch appends to ``X/data``, ``X/indices`` and ``X/indptr``; the commit point is the
``sigscan_progress`` attribute written last. An interrupted run re-opens the store, truncates anything written
after the last commit and continues from there. ``anndata.read_zarr(out)`` reads a finished store.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import zarr
from scipy import sparse

_CHUNK = 1 << 20
_PROGRESS = "sigscan_progress"


class AttributionStore:
    """Append-only CSR writer with resume.

    Parameters
    ----------
    path
        Zarr store (folder or URL).
    shape
        Final shape (cells × genes).
    fingerprint
        What must match for a resume (model checksum, method, settings, input shape): a mismatch is an error.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], fingerprint: dict[str, Any]):
        self.path = str(path)
        self.shape = shape
        self.fingerprint = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fingerprint.items()}
        exists = os.path.exists(self.path) if "://" not in self.path else False
        if exists:
            foreign = FileExistsError(
                f"{self.path} exists but is not a sigscan attribution store; choose another out= path."
            )
            try:
                self.root = zarr.open_group(self.path, mode="r+")
            # an empty folder, a file, a zarr array (zarr's errors are ValueErrors)
            except (ValueError, OSError) as error:
                raise foreign from error
            progress = dict(self.root.attrs.get(_PROGRESS, {}))
            if not progress:
                raise foreign
            stored = progress["fingerprint"]
            if stored != self.fingerprint and {k for k in self.fingerprint if stored.get(k) != self.fingerprint[k]} == {
                "batch_size"
            }:
                raise ValueError(
                    f"{self.path} holds a run with batch_size={stored['batch_size']}, not "
                    f"{self.fingerprint['batch_size']}; it cannot be resumed with another batch size (batches are "
                    f"computed as blocks). Pass batch_size={stored['batch_size']} to resume, or use another out= path."
                )
            if progress["fingerprint"] != self.fingerprint:
                diff = {
                    k: (progress["fingerprint"].get(k), v)
                    for k, v in self.fingerprint.items()
                    if progress["fingerprint"].get(k) != v
                }
                raise ValueError(
                    f"{self.path} holds a run with other settings ({diff}: stored vs requested); it cannot be "
                    "resumed. Use another out= path or delete the store."
                )
            self._truncate(progress["n_obs_done"], progress["nnz_done"])
            self.n_obs_done, self.nnz_done = progress["n_obs_done"], progress["nnz_done"]
            self.complete = bool(progress.get("complete", False))
        else:
            self.root = zarr.open_group(self.path, mode="w", zarr_format=2)
            self.root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
            x = self.root.create_group("X")
            x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": list(shape)})
            x.create_array("data", shape=(0,), dtype="float32", chunks=(_CHUNK,))
            x.create_array("indices", shape=(0,), dtype="int32", chunks=(_CHUNK,))
            indptr = x.create_array("indptr", shape=(1,), dtype="int64", chunks=(_CHUNK,))
            indptr[:] = 0
            self.n_obs_done, self.nnz_done, self.complete = 0, 0, False
            self._commit()

    def _truncate(self, n_obs: int, nnz: int) -> None:
        x = self.root["X"]
        x["data"].resize((nnz,))
        x["indices"].resize((nnz,))
        x["indptr"].resize((n_obs + 1,))

    def _commit(self) -> None:
        self.root.attrs[_PROGRESS] = {
            "fingerprint": self.fingerprint,
            "n_obs_done": self.n_obs_done,
            "nnz_done": self.nnz_done,
            "complete": self.complete,
        }

    def append(self, batch: sparse.csr_matrix) -> None:
        """Append finished rows; they are durable once this returns."""
        x = self.root["X"]
        if batch.nnz:
            x["data"].append(batch.data.astype(np.float32, copy=False))
            x["indices"].append(batch.indices.astype(np.int32, copy=False))
        x["indptr"].append(batch.indptr[1:].astype(np.int64) + self.nnz_done)
        self.n_obs_done += batch.shape[0]
        self.nnz_done += batch.nnz
        self._commit()

    def finalize(self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict[str, Any]) -> None:
        """Write obs/var/uns so the store is a complete AnnData, and mark it complete."""
        from anndata.io import write_elem

        if self.n_obs_done != self.shape[0]:
            raise RuntimeError(f"store has {self.n_obs_done} of {self.shape[0]} rows; cannot finalize")
        write_elem(self.root, "obs", obs)
        write_elem(self.root, "var", var)
        write_elem(self.root, "uns", uns)
        self.complete = True
        self._commit()

    @property
    def n_done(self) -> int:
        """Rows already finished (a resumed run starts here)."""
        return self.n_obs_done

    def finish(
        self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict[str, Any], *, load: bool = True
    ) -> sparse.csr_matrix | None:
        """Finalise the store (unless a previous run did) and return the matrix (``None`` unless ``load``)."""
        if not self.complete:
            self.finalize(obs, var, uns)
        return self.read() if load else None

    def read(self) -> sparse.csr_matrix:
        """The whole attribution matrix (CSR float32)."""
        x = self.root["X"]
        return sparse.csr_matrix((x["data"][:], x["indices"][:], x["indptr"][:]), shape=self.shape)


class LayerOutput:
    """In-memory output: the finished batches, stacked into one CSR float32 matrix at the end."""

    n_done = 0

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.blocks: list[sparse.csr_matrix] = []

    def append(self, batch: sparse.csr_matrix) -> None:
        """Keep a finished batch."""
        self.blocks.append(batch)

    def finish(
        self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict[str, Any], *, load: bool = True
    ) -> sparse.csr_matrix:
        """The whole matrix (``obs``, ``var``, ``uns`` are the caller's to write)."""
        if not self.blocks:
            return sparse.csr_matrix(self.shape, dtype=np.float32)
        return sparse.vstack(self.blocks, format="csr", dtype=np.float32)


def open_output(
    out: str | os.PathLike | None, shape: tuple[int, int], fingerprint: dict[str, Any]
) -> LayerOutput | AttributionStore:
    """The output of a run: in memory when ``out`` is ``None``, else the (new or resumed) zarr store at ``out``."""
    return LayerOutput(shape) if out is None else AttributionStore(out, shape, fingerprint)
