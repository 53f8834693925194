"""``ss.pp.attributions``: per-cell gene attributions of a foundation model, as a sparse AnnData layer."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_copy, doc_layer_counts, doc_params
from .._logging import logger, timed
from .._stream import iter_row_batches
from .._utils import scale_rows, sha256_strings
from .._validation import check_counts
from ..models._base import AttributionModel, resolve_device
from ._engine import METHODS, FastPath, attribute_captum, inference_mode
from ._store import AttributionStore

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

Head = Literal["auto", "prenorm", "reference"]
Engine = Literal["auto", "fast", "captum"]


def _version() -> str:
    from .. import __version__

    return __version__


def resolve_head(model: AttributionModel, method: str, head: str) -> str:
    """``"auto"``: the pre-normalisation head for point-gradient methods on L2-normalised encoders (SPEC 1.1)."""
    if head not in ("auto", "prenorm", "reference"):
        raise ValueError(f"Unknown head {head!r}; use 'auto', 'prenorm' or 'reference'.")
    if head == "auto":
        return "prenorm" if model.l2_normalized and method in ("dl", "ixg") else "reference"
    return head


def _check_arguments(model: Any, method: str, n_steps: int, target_sum: float, engine: str) -> None:
    if not isinstance(model, AttributionModel):
        raise TypeError(
            f"model must be a sigscan model wrapper (ss.models.SCimilarity, SCVI, ScGPT or TorchEncoder), "
            f"not {type(model).__name__}. Wrap a torch module with ss.models.TorchEncoder(module, gene_order)."
        )
    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}; use one of {', '.join(METHODS)}.")
    if method == "ig" and (not isinstance(n_steps, int | np.integer) or n_steps < 1):
        raise ValueError(f"n_steps must be a positive integer, not {n_steps!r}.")
    if not np.isfinite(target_sum) or target_sum <= 0:
        raise ValueError(f"target_sum must be a positive number, not {target_sum!r}.")
    if engine not in ("auto", "fast", "captum"):
        raise ValueError(f"Unknown engine {engine!r}; use 'auto', 'fast' or 'captum'.")
    model.check_method(method)


def _default_batch_size(model: AttributionModel, device: torch.device, method: str) -> int:
    hint = model.default_batch_size(device, method)
    if hint is not None:
        return hint
    if device.type == "cpu":
        return 256 if method == "ig" else 1024
    return 8192


@doc_params(adata=doc_adata, layer=doc_layer_counts, copy=doc_copy)
def attributions(
    adata: AnnData | MuData,
    model: AttributionModel,
    *,
    method: Literal["ig", "dl", "ixg"] = "ig",
    layer: str | None = None,
    key_added: str | None = None,
    n_steps: int = 50,
    batch_size: int | None = None,
    head: Head = "auto",
    target_sum: float = 1000,
    device: str = "auto",
    engine: Engine = "auto",
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
    out: str | os.PathLike | None = None,
    mod: str | None = None,
    as_modality: bool = False,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | MuData | None:
    """Gene attributions of a foundation model for every cell (SIGnature).

    For each cell the summation head ``s(x') = Σ_k |f_k(x') · f_k(x)|`` of the model's embedding ``f`` is explained
    with Integrated Gradients, DeepLIFT or gradient × input against a zero baseline; attributions are made absolute
    and scaled to ``target_sum`` per cell. A gene with zero input gets exactly zero attribution, so the layer has the
    sparsity of the counts.

    Parameters
    ----------
    {adata}
    model
        A model wrapper from :mod:`sigscan.models`.
    method
        ``"ig"`` (Integrated Gradients, Gauss–Legendre), ``"dl"`` (DeepLIFT, rescale rule) or ``"ixg"``
        (gradient × input).
    {layer}
    key_added
        Layer name; default ``f"attr_{{model.name}}_{{method}}"``.
    n_steps
        Integration steps for IG.
    batch_size
        Cells per batch (default: 256 for IG on CPU, 1024 for DL/IxG, 8192 on GPU, unless the model asks for
        fewer, as transformers do). Memory is bounded by it.
    head
        ``"reference"`` explains the model's final embedding; ``"prenorm"`` the embedding before L2 normalisation.
        ``"auto"`` picks ``"prenorm"`` for DL/IxG on L2-normalised encoders (whose gradient at the cell vanishes)
        and ``"reference"`` otherwise.
    target_sum
        Each cell's absolute attributions sum to this.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    engine
        ``"fast"`` is the exact first-layer path (SPEC 1.3), ``"captum"`` the reference path on the dense input;
        ``"auto"`` uses the fast path whenever the model allows it.
    gene_symbols, gene_ids
        ``adata.var`` columns holding gene symbols / Ensembl IDs, when ``var_names`` are of the other type.
    out
        Zarr store to write results to incrementally; an interrupted run with the same settings resumes from the
        last finished batch. ``anndata.read_zarr(out)`` reads the finished attributions. For backed ``adata`` the
        layer is then not loaded into memory.
    mod
        For MuData: the RNA modality.
    as_modality
        For MuData: write a new modality ``attr:<model>`` in the model's gene space instead of a layer.
    progress
        Show a progress bar.
    {copy}

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes

    - ``adata.layers[key_added]``: CSR float32 attributions, same shape as ``adata`` (genes outside the model are 0);
    - ``adata.var[f"{{key_added}}_in_model"]``: whether each gene is in the model;
    - ``adata.uns["sigscan"]["attributions"][key_added]``: provenance (model, weights checksum, method, …).

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:50].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> ss.pp.attributions(adata, model, method="ixg", progress=False)
    >>> float(adata.layers["attr_scimilarity_ixg"][0].sum())
    1000.0
    """
    _check_arguments(model, method, n_steps, target_sum, engine)
    container, adata = _resolve_modality(adata, mod, copy)
    head = resolve_head(model, method, head)
    normalize = head == "reference" and model.l2_normalized
    key_added = key_added or f"attr_{model.name}_{method}"
    counts = _counts(adata, layer)
    alignment = model.align(adata.var, gene_symbols=gene_symbols, gene_ids=gene_ids)
    torch_device = resolve_device(device)
    batch_size = batch_size if batch_size is not None else _default_batch_size(model, torch_device, method)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}.")
    use_fast = engine != "captum" and model.first_linear() is not None
    if engine == "fast" and not use_fast:
        raise ValueError(f"{model.name}: the fast path needs a Linear first layer; use engine='captum' or 'auto'.")
    # backed files and lazy (dask) matrices are validated batch by batch, never loaded whole
    in_memory = not getattr(adata, "isbacked", False) and not hasattr(counts, "compute")
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    if in_memory:
        check_counts(counts, where=where, require_integers=model.requires_counts)

    provenance = {
        "model": model.name,
        "model_class": type(model).__name__,
        "weights_sha256": model.checksum,
        "n_genes_model": model.n_genes,
        "n_genes_overlap": alignment.n_overlap,
        "gene_identifiers": alignment.source,
        "method": method,
        "n_steps": int(n_steps) if method == "ig" else 0,
        "head": head,
        "target_sum": float(target_sum),
        "engine": "fast" if use_fast else "captum",
        "layer": layer if layer is not None else "X",
        "sigscan_version": _version(),
        **model.provenance(),
    }
    n_cells = adata.n_obs
    space = "model" if as_modality else "data"
    n_columns = model.n_genes if as_modality else adata.n_vars
    store = None
    if out is not None:
        fingerprint = {
            **provenance,
            "shape": [n_cells, n_columns],
            "space": space,
            # the same shape is not the same data: never resume onto other (or reordered) cells or genes
            "obs_names_sha256": sha256_strings(list(adata.obs_names.astype(str))),
            "var_names_sha256": sha256_strings(list(adata.var_names.astype(str))),
        }
        fingerprint.pop("sigscan_version")
        store = AttributionStore(out, (n_cells, n_columns), fingerprint)

    blocks: list[sparse.csr_matrix] = []
    start = store.n_obs_done if store is not None else 0
    with (
        timed(f"computing {method} attributions of {n_cells} cells with {model.name} ({provenance['engine']} path)"),
        inference_mode(model.module, torch_device),
    ):
        compute = (
            FastPath(model, normalize=normalize, device=torch_device)
            if use_fast
            else _CaptumPath(model, normalize=normalize, device=torch_device)
        )
        with tqdm(
            total=n_cells, initial=start, disable=not progress, unit="cells", desc=f"attributions ({method})"
        ) as bar:  # closed on errors too, so an error message starts on its own line
            for lo, hi, batch in iter_row_batches(counts, batch_size, start=start):
                if not in_memory:
                    check_counts(batch, where=f"{where} rows {lo}-{hi}", require_integers=model.requires_counts)
                x = model.preprocess(alignment.to_model(batch))
                attr = compute(x, method=method, n_steps=n_steps)
                np.abs(attr.data, out=attr.data)
                attr.eliminate_zeros()
                scale_rows(attr, target_sum)
                if as_modality:
                    attr.sort_indices()
                result = attr if as_modality else alignment.to_data(attr)
                if store is not None:
                    store.append(result)
                else:
                    blocks.append(result)
                bar.update(hi - lo)

    in_model = alignment.in_model
    if store is not None:
        if not store.complete:
            var = _model_var(model) if as_modality else pd.DataFrame(index=adata.var_names.astype(str))
            if not as_modality:
                var[f"{key_added}_in_model"] = in_model
            store.finalize(
                pd.DataFrame(index=adata.obs_names.astype(str)),
                var,
                {"sigscan": {"attributions": {key_added: provenance}}},
            )
        matrix = store.read() if in_memory else None
        if matrix is None:
            logger.warning(
                "attributions written to %s (read them with anndata.read_zarr); the layer is not loaded", out
            )
    else:
        matrix = (
            sparse.vstack(blocks, format="csr", dtype=np.float32)
            if blocks
            else sparse.csr_matrix((n_cells, n_columns), dtype=np.float32)
        )

    _write_results(container, adata, model, matrix, key_added, in_model, provenance, as_modality)
    return container if copy else None


class _CaptumPath:
    def __init__(self, model: AttributionModel, *, normalize: bool, device: torch.device):
        self.model, self.normalize, self.device = model, normalize, device

    def __call__(self, x: sparse.csr_matrix, *, method: str, n_steps: int) -> sparse.csr_matrix:
        return attribute_captum(
            self.model, x, method=method, n_steps=n_steps, normalize=self.normalize, device=self.device
        )


def _resolve_modality(data: Any, mod: str | None, copy: bool) -> tuple[Any, AnnData]:
    """Return (object to write into / return, the AnnData holding the counts)."""
    container = data.copy() if copy else data
    if hasattr(container, "mod"):  # MuData
        if mod is None:
            candidates = [name for name in ("rna", "RNA", "gex", "GEX") if name in container.mod]
            if len(container.mod) == 1:
                candidates = list(container.mod)
            if not candidates:
                raise ValueError(f"MuData input: pass mod= naming the RNA modality (one of {list(container.mod)}).")
            mod = candidates[0]
        if mod not in container.mod:
            raise KeyError(f"MuData has no modality {mod!r}; available: {list(container.mod)}.")
        return container, container.mod[mod]
    if mod is not None:
        raise ValueError("mod= is only for MuData input.")
    return container, container


def _counts(adata: AnnData, layer: str | None) -> Any:
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the layer with raw counts.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}. Use layer=None for X.")
    return adata.layers[layer]


def _model_var(model: AttributionModel) -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index(model.gene_order.astype(str), name="gene"))


def _write_results(
    container: Any,
    adata: AnnData,
    model: AttributionModel,
    matrix: sparse.csr_matrix | None,
    key_added: str,
    in_model: np.ndarray,
    provenance: dict[str, Any],
    as_modality: bool,
) -> None:
    if as_modality:
        if not hasattr(container, "mod"):
            raise ValueError("as_modality=True needs MuData input.")
        import anndata as ad

        modality = ad.AnnData(X=matrix, obs=pd.DataFrame(index=adata.obs_names), var=_model_var(model))
        modality.uns["sigscan"] = {"attributions": {key_added: provenance}}
        container.mod[f"attr:{model.name}"] = modality
        _update_mudata(container)
    else:
        if matrix is not None:
            adata.layers[key_added] = matrix
        adata.var[f"{key_added}_in_model"] = in_model
    target = container if hasattr(container, "mod") else adata
    target.uns.setdefault("sigscan", {}).setdefault("attributions", {})[key_added] = provenance


def _update_mudata(container: MuData) -> None:
    """``container.update()`` without mudata's legacy column pulling.

    The legacy update cannot add a modality whose var names overlap another modality's (the attribution modality
    shares the RNA genes) when there are two or more modalities.
    """
    import mudata

    try:
        options = mudata.set_options(pull_on_update=False)
    except ValueError:  # mudata without that option: only the legacy update exists
        options = contextlib.nullcontext()
    with options:
        container.update()
