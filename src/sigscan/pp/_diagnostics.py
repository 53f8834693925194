"""Diagnostics of attributions: Integrated Gradients completeness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._stream import iter_row_batches
from ..models._base import AttributionModel, resolve_device
from ._attributions import _CaptumPath, _counts, _default_batch_size, resolve_head
from ._engine import FastPath, inference_mode, summation_head_values

if TYPE_CHECKING:
    from anndata import AnnData


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
    """
    head = resolve_head(model, "ig", head)
    normalize = head == "reference" and model.l2_normalized
    alignment = model.align(adata.var, gene_symbols=gene_symbols, gene_ids=gene_ids)
    torch_device = resolve_device(device)
    batch_size = batch_size or _default_batch_size(model, torch_device, "ig")
    sums, deltas = [], []
    with inference_mode(model.module, torch_device):
        use_fast = engine != "captum" and model.first_linear() is not None
        compute = (FastPath if use_fast else _CaptumPath)(model, normalize=normalize, device=torch_device)
        for _, _, batch in iter_row_batches(_counts(adata, layer), batch_size):
            x = model.preprocess(alignment.to_model(batch))
            attr = compute(x, method="ig", n_steps=n_steps)
            sums.append(np.asarray(attr.sum(axis=1, dtype=np.float64)).ravel())
            s, s0 = summation_head_values(model, x, normalize=normalize, device=torch_device)
            deltas.append(s.astype(np.float64) - s0)
    total, delta = np.concatenate(sums), np.concatenate(deltas)
    relative = np.abs(total - delta) / np.maximum(np.abs(delta), 1e-12)
    return pd.DataFrame(
        {"attribution_sum": total, "delta": delta, "relative_error": relative}, index=adata.obs_names.copy()
    )
