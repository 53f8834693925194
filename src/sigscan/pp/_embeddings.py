"""``ss.pp.embeddings``: a model's cell embeddings, streamed in batches into ``adata.obsm``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import sparse
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_copy, doc_layer_counts, doc_params
from .._logging import timed
from .._stream import iter_row_batches
from .._validation import check_counts
from ..models._base import AttributionModel, FirstLinear, resolve_device
from ._attributions import _counts
from ._engine import _csr_tensor, inference_mode

if TYPE_CHECKING:
    from anndata import AnnData


def _default_batch_size(model: AttributionModel, device: torch.device) -> int:
    hint = model.default_batch_size(device, "embed")
    return hint if hint is not None else (1024 if device.type == "cpu" else 8192)


def embed_batch(model: AttributionModel, x: sparse.csr_matrix, device: torch.device) -> np.ndarray:
    """Embeddings (float32, cells × ``embedding_dim``) of one batch of model input ``x`` (CSR, cells × model genes).

    Encoders whose first operation is a Linear layer take the sparse product ``x Wᵀ`` (cost ∝ non-zeros) and run
    only the rest of the network; others get the model's own (dense per batch) input.
    """
    with torch.no_grad():
        split = model.first_linear()
        if split is not None:
            out = _first_linear_embedding(split, x, device)
            if model.l2_normalized:
                out = torch.nn.functional.normalize(out, p=2, dim=1)
        else:
            prepared = model.attribution_inputs(x, device)
            out = model.forward_inputs(prepared.inputs, *prepared.extra, normalize=True)
    return out.detach().to("cpu", torch.float32).numpy()


def _first_linear_embedding(split: FirstLinear, x: sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    weight_t = split.weight.detach().T
    if x.nnz:
        u = torch.sparse.mm(_csr_tensor(x, device), weight_t.contiguous())
    else:
        u = torch.zeros(x.shape[0], weight_t.shape[1], device=device, dtype=weight_t.dtype)
    return split.rest(u if split.bias is None else u + split.bias)


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
    if not isinstance(model, AttributionModel):
        raise TypeError(
            f"model must be a sigscan model wrapper from ss.models, not {type(model).__name__}. "
            "Wrap a torch module with ss.models.TorchEncoder(module, gene_order)."
        )
    if copy:
        adata = adata.copy()
    key_added = key_added or f"X_{model.name}"
    counts = _counts(adata, layer)
    alignment = model.align(adata.var, gene_symbols=gene_symbols, gene_ids=gene_ids)
    torch_device = resolve_device(device)
    batch_size = batch_size if batch_size is not None else _default_batch_size(model, torch_device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}.")
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    result = np.empty((adata.n_obs, model.embedding_dim), dtype=np.float32)
    with (
        timed(f"computing {model.name} embeddings of {adata.n_obs} cells"),
        inference_mode(model.module, torch_device),
        tqdm(total=adata.n_obs, disable=not progress, unit="cells", desc="embeddings") as bar,
    ):
        for lo, hi, batch in iter_row_batches(counts, batch_size):
            check_counts(batch, where=f"{where} rows {lo}-{hi}", require_integers=model.requires_counts)
            result[lo:hi] = embed_batch(model, model.preprocess(alignment.to_model(batch)), torch_device)
            bar.update(hi - lo)
    adata.obsm[key_added] = result
    adata.uns.setdefault("sigscan", {}).setdefault("embeddings", {})[key_added] = {
        "model": model.name,
        "model_class": type(model).__name__,
        "weights_sha256": model.checksum,
        "n_genes_overlap": alignment.n_overlap,
        "layer": layer if layer is not None else "X",
        **model.provenance(),
    }
    return adata if copy else None
