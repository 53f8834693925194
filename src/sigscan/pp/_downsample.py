"""``ss.pp.downsample_counts``: binomial thinning of raw counts (each count kept with probability ``1 − fraction``).

scanpy's :func:`scanpy.pp.downsample_counts` is a different operation: it draws a fixed number of counts per cell
(``counts_per_cell``) or in total (``total_counts``) without replacement, so every thinned cell has exactly the
target total (not a binomial one), cells below the target are left untouched, and each cell's draw is re-seeded with
the same ``random_state``. Thinning by a fraction — what the SIGnature downsampling analysis does — keeps each count
independently, so a cell with ``n`` counts keeps ``Binomial(n, 1 − fraction)`` of them, and each gene's count is
thinned independently of the others. This module does that on the CSR data array, without densifying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._docs import doc_adata, doc_layer_counts, doc_params
from .._engine import counts_matrix
from .._thinning import thin_counts

if TYPE_CHECKING:
    from anndata import AnnData


@doc_params(adata=doc_adata, layer=doc_layer_counts)
def downsample_counts(
    adata: AnnData,
    fraction: float,
    *,
    layer: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Thin raw counts binomially: each count is kept with probability ``1 − fraction``.

    A cell with ``n`` counts keeps ``Binomial(n, 1 − fraction)`` of them; genes are thinned independently. Works on
    the sparse data array (CSR in, CSR out; dense input is returned as CSR) and never changes the input matrix.
    Unlike :func:`scanpy.pp.downsample_counts`, which draws a fixed number of counts per cell, the thinned totals
    vary from cell to cell as in sequencing at lower depth.

    Parameters
    ----------
    {adata}
    fraction
        Share of counts removed, in [0, 1): 0 keeps every count, 0.9 keeps about 10%.
    {layer}
    random_state
        Seed (or :class:`numpy.random.Generator`) of the thinning.
    key_added
        Layer to write the thinned counts to; ``None`` replaces the matrix that was read (``X`` or ``layer``) with
        a new, thinned one.
    copy
        Return a thinned copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the thinned copy when ``copy=True``. The thinning settings are recorded in
    ``uns["sigscan"]["downsample_counts"]``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:100].copy()
    >>> thinned = ss.pp.downsample_counts(adata, 0.5, copy=True)
    >>> bool(thinned.X.sum() < adata.X.sum())
    True
    """
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    matrix = counts_matrix(adata, layer)
    rng = np.random.default_rng(random_state)
    thinned = thin_counts(matrix, fraction, rng, where=where)
    target = adata.copy() if copy else adata
    if key_added is not None:
        target.layers[key_added] = thinned
    elif layer is None:
        target.X = thinned
    else:
        target.layers[layer] = thinned
    target.uns.setdefault("sigscan", {})["downsample_counts"] = {
        "fraction": float(fraction),
        "layer": layer or "X",
        "key_added": key_added or (layer or "X"),
        "random_state": random_state if isinstance(random_state, int) else str(random_state),
    }
    return target if copy else None
