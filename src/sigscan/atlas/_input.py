"""What ``Atlas.add`` accepts: an AnnData with an attribution layer, an ``.h5ad`` path, or an attribution zarr store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._attribution_layer import attribution_provenance, find_attribution_layer, recorded_attributions
from .._utils import as_csr_float32


@dataclass
class AttributionInput:
    """Attributions of one dataset, in the data's gene space."""

    matrix: sparse.csr_matrix
    genes: pd.Index
    obs: pd.DataFrame
    #: ``uns["sigscan"]["attributions"][key]`` of the input (empty when unknown)
    provenance: dict[str, Any]
    #: where the attributions came from, for messages
    source: str


def read_input(data: Any, layer: str | None, obs_columns: list[str] | None) -> AttributionInput:
    """Load the attribution matrix (CSR float32), genes, cell metadata and provenance of ``data``."""
    if isinstance(data, str | os.PathLike):
        return _read_path(Path(data), layer, obs_columns)
    if not hasattr(data, "obs") or not hasattr(data, "layers"):
        raise TypeError(
            f"add() takes an AnnData with an attribution layer or the path of an .h5ad / attribution zarr store, "
            f"not {type(data).__name__}."
        )
    recorded = recorded_attributions(data.uns)
    key = find_attribution_layer(recorded, list(data.layers), layer, has_x=data.X is not None)
    matrix = data.X if key is None else data.layers[key]
    return AttributionInput(
        matrix=as_csr_float32(matrix),
        genes=pd.Index(data.var_names.astype(str)),
        obs=_select_obs(data.obs, obs_columns, "adata"),
        provenance=attribution_provenance(recorded, key),
        source="adata" if key is None else f"adata.layers[{key!r}]",
    )


def _read_path(path: Path, layer: str | None, obs_columns: list[str] | None) -> AttributionInput:
    import anndata as ad

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.suffix in (".h5ad", ".h5"):
        import h5py

        handle = h5py.File(path, "r")
    elif path.is_dir():
        import zarr

        handle = zarr.open_group(str(path), mode="r")
    else:
        raise ValueError(f"{path}: expected an .h5ad file or a zarr store (folder).")
    try:
        uns = ad.io.read_elem(handle["uns"]) if "uns" in handle else {}
        recorded = recorded_attributions(uns)
        layers = list(handle["layers"].keys()) if "layers" in handle else []
        key = find_attribution_layer(recorded, layers, layer, has_x="X" in handle, where=str(path))
        matrix = ad.io.read_elem(handle["X"] if key is None else handle["layers"][key])
        var = ad.io.read_elem(handle["var"])
        obs = ad.io.read_elem(handle["obs"])
    finally:
        if hasattr(handle, "close"):
            handle.close()
    return AttributionInput(
        matrix=as_csr_float32(matrix),
        genes=pd.Index(var.index.astype(str)),
        obs=_select_obs(obs, obs_columns, str(path)),
        provenance=attribution_provenance(recorded, key),
        source=f"{path}" + ("" if key is None else f" layer {key!r}"),
    )


def _select_obs(obs: pd.DataFrame, columns: list[str] | None, where: str) -> pd.DataFrame:
    if columns is None:
        return obs
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        raise KeyError(f"{where}: obs columns {missing} not found; available: {list(obs.columns)}.")
    return obs[list(columns)]


def map_to_gene_order(
    matrix: sparse.csr_matrix, genes: pd.Index, gene_order: pd.Index, *, name: str, source: str
) -> sparse.csr_matrix:
    """Re-index the columns of ``matrix`` (the data's genes) to positions in the atlas ``gene_order``.

    Data genes outside the gene order must carry no attribution (``ss.pp.attributions`` leaves them zero); if any
    does, the attributions were made with another model and the shard is refused.
    """
    if genes.has_duplicates:
        dup = genes[genes.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{source}: duplicated gene names {dup}; make them unique (adata.var_names_make_unique()).")
    if genes.equals(gene_order):  # already in the atlas gene order (e.g. data over exactly the model's genes)
        return matrix
    mapping = gene_order.get_indexer(genes).astype(np.int32 if len(gene_order) < 2**31 else np.int64)
    n_overlap = int((mapping >= 0).sum())
    if n_overlap == 0:
        raise ValueError(
            f"Shard {name!r}: none of the {len(genes)} genes of {source} are in the atlas gene order "
            f"(e.g. {', '.join(genes[:3])} vs {', '.join(gene_order[:3])}). Check the identifier type (symbols vs "
            "Ensembl IDs), or use an atlas made for the model that produced these attributions."
        )
    new_columns = mapping[matrix.indices]
    outside = new_columns < 0
    if outside.any():
        bad = outside & (matrix.data != 0)
        if bad.any():
            offending = pd.unique(genes[matrix.indices[bad]])
            raise ValueError(
                f"Shard {name!r}: {len(offending)} genes of {source} carry attributions but are not in the atlas gene "
                f"order (e.g. {', '.join(offending[:5])}): these attributions were made with a model of another gene "
                "order. Put them in an atlas created for that model (ss.Atlas.create(path, model=...))."
            )
        kept = np.r_[0, np.cumsum(~outside)]
        return sparse.csr_matrix(
            (matrix.data[~outside], new_columns[~outside], kept[matrix.indptr]),
            shape=(matrix.shape[0], len(gene_order)),
        )
    return sparse.csr_matrix((matrix.data, new_columns, matrix.indptr), shape=(matrix.shape[0], len(gene_order)))
