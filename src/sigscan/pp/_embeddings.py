"""``ss.pp.embeddings``: a model's cell embeddings, streamed in batches into ``adata.obsm``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_copy, doc_layer_counts, doc_params
from .._engine import ModelSettings, counts_matrix, embed_batch
from .._logging import timed
from .._stream import iter_row_batches

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel


@doc_params(adata=doc_adata, layer=doc_layer_counts, copy=doc_copy)
def embeddings(
    adata: AnnData,
    model: AttributionModel,
    *,
    layer: str | None = None,
    key_added: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Cell embeddings of a foundation model, the model's own latent representation of each cell.

    The counts go through the same validation, gene alignment and model preparation as
    :func:`sigscan.pp.attributions`; batches stream from the input (in memory, backed h5ad or zarr), so memory is
    bounded by ``batch_size``. L2-normalised encoders (SCimilarity, scGPT) return normalised embeddings.

    Parameters
    ----------
    {adata}
    model
        A model wrapper from :mod:`sigscan.models`.
    {layer}
    key_added
        ``adata.obsm`` key; default ``f"X_{{model.name}}"``.
    batch_size
        Cells per batch (default: the model's own hint, else 1024 on CPU and 8192 on GPU).
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    gene_symbols, gene_ids
        ``adata.var`` columns holding gene symbols / Ensembl IDs, when ``var_names`` are of the other type.
    progress
        Show a progress bar.
    {copy}

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``adata.obsm[key_added]`` (float32, cells ×
    ``model.embedding_dim``) and ``adata.uns["sigscan"]["embeddings"][key_added]`` (model name and weights checksum).

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:50].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> ss.pp.embeddings(adata, model, progress=False)
    >>> adata.obsm["X_scimilarity"].shape
    (50, 8)
    """
    settings = ModelSettings.resolve(
        model,
        adata.var,
        device=device,
        batch_size=batch_size,
        layer=layer,
        gene_symbols=gene_symbols,
        gene_ids=gene_ids,
    )
    counts = counts_matrix(adata, layer)
    if copy:
        adata = adata.copy()
    key_added = key_added or f"X_{model.name}"
    result = np.empty((adata.n_obs, model.embedding_dim), dtype=np.float32)
    with (
        timed(f"computing {model.name} embeddings of {adata.n_obs} cells"),
        settings.inference(),
        tqdm(total=adata.n_obs, disable=not progress, unit="cells", desc="embeddings") as bar,
    ):
        for lo, hi, batch in iter_row_batches(counts, settings.batch_size):
            settings.check_counts(batch, where=f"{settings.where} rows {lo}-{hi}")
            result[lo:hi] = embed_batch(model, settings.model_input(batch), settings.device)
            bar.update(hi - lo)
    adata.obsm[key_added] = result
    adata.uns.setdefault("sigscan", {}).setdefault("embeddings", {})[key_added] = {
        "model": model.name,
        "model_class": type(model).__name__,
        "weights_sha256": model.checksum,
        "n_genes_overlap": settings.alignment.n_overlap,
        "layer": layer if layer is not None else "X",
        **model.provenance(),
    }
    return adata if copy else None
