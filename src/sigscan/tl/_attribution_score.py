"""``ss.tl.attribution_score``: a gene set's mean (or sum) attribution per cell."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import sparse

from .._attribution_layer import attribution_layer
from .._docs import doc_adata, doc_copy, doc_gene_set, doc_params
from .._gene_sets import match_weighted_genes

if TYPE_CHECKING:
    from anndata import AnnData


def gene_set_mean(
    matrix: sparse.spmatrix | np.ndarray,
    columns: np.ndarray,
    *,
    agg: Literal["mean", "sum"] = "mean",
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Per-row mean/sum (optionally weighted, ``Σ wᵢaᵢ / Σ wᵢ``) over ``columns`` of ``matrix``; zeros count."""
    if agg not in ("mean", "sum"):
        raise ValueError(f"Unknown agg {agg!r}; use 'mean' or 'sum'.")
    w = np.ones(len(columns)) if weights is None else np.asarray(weights, dtype=np.float64)
    sub = matrix[:, columns]
    totals = np.asarray(sub @ w).ravel() if sparse.issparse(sub) else np.asarray(sub, dtype=np.float64) @ w
    return totals / w.sum() if agg == "mean" else totals


@doc_params(adata=doc_adata, genes=doc_gene_set, copy=doc_copy)
def attribution_score(
    adata: AnnData,
    genes: Sequence[str] | str | os.PathLike,
    *,
    layer: str | None = None,
    agg: Literal["mean", "sum"] = "mean",
    weights: Sequence[float] | None = None,
    key_added: str = "attribution_score",
    copy: bool = False,
) -> AnnData | None:
    """Score a gene set by its mean attribution per cell (SIGnature).

    Parameters
    ----------
    {adata}
    {genes}
    layer
        The attribution layer; ``None`` uses the single attribution layer present (error if several).
    agg
        ``"mean"`` (zeros count) or ``"sum"``.
    weights
        Per-gene weights, aligned with ``genes``: the score is ``Σ wᵢaᵢ / Σ wᵢ`` (or ``Σ wᵢaᵢ`` for ``"sum"``).
    key_added
        ``obs`` column for the score.
    {copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes ``adata.obs[key_added]``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:40].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(16,), latent_dim=4)
    >>> ss.pp.attributions(adata, model, method="ixg", progress=False)
    >>> ss.tl.attribution_score(adata, ["LYZ", "CD14", "S100A8"])
    >>> adata.obs["attribution_score"].ge(0).all()
    np.True_
    """
    adata = adata.copy() if copy else adata
    key = attribution_layer(adata, layer)
    columns, w = match_weighted_genes(genes, adata.var_names, weights)
    in_model = adata.var.get(f"{key}_in_model")
    if in_model is not None:
        outside = columns[~in_model.to_numpy(dtype=bool)[columns]]
        if outside.size:
            warnings.warn(
                f"{outside.size} of {columns.size} genes of the set are in the data but not in the model's gene space "
                f"(e.g. {adata.var_names[outside[0]]!r}): their attribution is 0 in every cell, which lowers the "
                f"mean. Drop them from the set to score only what the model saw (adata.var[{key + '_in_model'!r}]).",
                UserWarning,
                stacklevel=2,
            )
    adata.obs[key_added] = gene_set_mean(adata.layers[key], columns, agg=agg, weights=w).astype(np.float32)
    return adata if copy else None
