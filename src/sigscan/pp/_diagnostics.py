"""Diagnostics of attributions: Integrated Gradients completeness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._engine import AttributionSettings, counts_matrix, summation_head_values
from .._stream import iter_row_batches

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel


def completeness(
    adata: AnnData,
    model: AttributionModel,
    *,
    layer: str | None = None,
    n_steps: int = 50,
    head: str = "auto",
    engine: str = "auto",
    batch_size: int | None = None,
    device: str = "auto",
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
) -> pd.DataFrame:
    """Integrated-Gradients completeness per cell: ``Σ_j attr_j`` versus ``s(x) − s(0)`` before abs and scaling.

    Parameters
    ----------
    adata
        Annotated data matrix with raw counts.
    model
        A model wrapper from :mod:`sigscan.models`.
    layer, n_steps, head, engine, batch_size, device, gene_symbols, gene_ids
        As in :func:`sigscan.pp.attributions`.

    Returns
    -------
    DataFrame indexed by cell with ``attribution_sum``, ``delta`` (``s(x) − s(0)``) and ``relative_error``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:20].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(16,), latent_dim=4)
    >>> table = ss.pp.completeness(adata, model)
    >>> sorted(table.columns)
    ['attribution_sum', 'delta', 'relative_error']
    """
    settings = AttributionSettings.resolve(
        model,
        adata.var,
        method="ig",
        n_steps=n_steps,
        head=head,
        engine=engine,
        device=device,
        batch_size=batch_size,
        layer=layer,
        gene_symbols=gene_symbols,
        gene_ids=gene_ids,
    )
    sums, deltas = [], []
    with settings.engine() as compute:
        for _, _, batch in iter_row_batches(counts_matrix(adata, layer), settings.batch_size):
            x = settings.model_input(batch)
            attr = compute(x, method="ig", n_steps=settings.n_steps)
            sums.append(np.asarray(attr.sum(axis=1, dtype=np.float64)).ravel())
            s, s0 = summation_head_values(model, x, normalize=settings.normalize, device=settings.device)
            deltas.append(s.astype(np.float64) - s0)
    total, delta = np.concatenate(sums), np.concatenate(deltas)
    relative = np.abs(total - delta) / np.maximum(np.abs(delta), 1e-12)
    return pd.DataFrame(
        {"attribution_sum": total, "delta": delta, "relative_error": relative}, index=adata.obs_names.copy()
    )
