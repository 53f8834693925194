"""Import a reference SIGnature TileDB attribution array into an :class:`~sigscan.Atlas`.

Facts about the reference layout (sc-signature 1.0.0, ``SIGnature.create_tiledb``): a sparse TileDB array with two
``uint32`` dimensions, ``x`` = cell (domain ``0 … n_cells - 1``) and ``y`` = gene (position in the model's gene
order), one ``float32`` attribute ``vals``, col-major cell and tile order. Cell metadata is kept separately by the
user, in the array's row order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from .._logging import timed

if TYPE_CHECKING:
    from ._atlas import Atlas


def from_signature_tiledb(
    uri: str,
    gene_order: Sequence[str],
    obs: pd.DataFrame,
    *,
    path: str | os.PathLike,
    name: str = "signature",
    cells_per_shard: int = 100_000,
    method: str | None = None,
    attr_name: str = "vals",
    x_name: str = "x",
    y_name: str = "y",
    progress: bool = False,
) -> Atlas:
    """Implementation of :meth:`sigscan.Atlas.from_signature_tiledb` (tiledb is imported only here)."""
    try:
        import tiledb
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("Importing a TileDB array needs tiledb: pip install 'sigscan[tiledb]'.") from error
    from ._atlas import Atlas

    gene_order = [str(g) for g in gene_order]
    if cells_per_shard < 1:
        raise ValueError(f"cells_per_shard must be positive, not {cells_per_shard}.")
    with tiledb.open(str(uri), "r") as array:
        schema = array.schema
        if not schema.sparse:
            raise ValueError(f"{uri} is a dense TileDB array; a SIGnature attribution array is sparse.")
        dims = [schema.domain.dim(i).name for i in range(schema.domain.ndim)]
        if dims != [x_name, y_name] or not schema.has_attr(attr_name):
            raise ValueError(
                f"{uri} has dimensions {dims} and attributes {[schema.attr(i).name for i in range(schema.nattr)]}; "
                f"expected dimensions [{x_name!r}, {y_name!r}] and attribute {attr_name!r} (pass x_name=, y_name=, "
                "attr_name= for other names)."
            )
        n_genes_array = int(schema.domain.dim(1).domain[1]) + 1
        if n_genes_array != len(gene_order):
            raise ValueError(
                f"{uri} has {n_genes_array} genes (y domain) but gene_order has {len(gene_order)}; pass the gene "
                "order of the model that made the array."
            )
        n_cells = len(obs)
        domain_cells = int(schema.domain.dim(0).domain[1]) + 1
        if n_cells > domain_cells:
            raise ValueError(f"obs has {n_cells} rows but {uri} holds at most {domain_cells} cells.")
        atlas = Atlas.create(path, gene_order=gene_order)
        starts = range(0, n_cells, cells_per_shard)
        with timed(f"importing {n_cells} cells from {uri}"):
            for number, lo in enumerate(tqdm(starts, disable=not progress, desc="importing", unit="shard")):
                hi = min(n_cells, lo + cells_per_shard)
                result = array.multi_index[lo : hi - 1, :]  # tiledb slices are inclusive
                rows = np.asarray(result[x_name], dtype=np.int64) - lo
                cols = np.asarray(result[y_name], dtype=np.int64)
                vals = np.asarray(result[attr_name], dtype=np.float32)
                matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(hi - lo, len(gene_order)))
                shard_name = name if len(starts) == 1 else f"{name}-{number}"
                provenance = {"method": method, "source": f"SIGnature TileDB {uri}"} if method else {}
                atlas.add_matrix(matrix, obs.iloc[lo:hi], name=shard_name, provenance=provenance)
    return atlas
