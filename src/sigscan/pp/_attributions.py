"""``ss.pp.attributions``: per-cell gene attributions of a foundation model, as a sparse AnnData layer."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_copy, doc_layer_counts, doc_params
from .._engine import AttributionSettings, counts_matrix
from .._logging import logger, timed
from .._soma import SomaRows, is_soma
from .._stream import iter_row_batches
from ._store import open_output

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from ..models import AttributionModel

Head = Literal["auto", "prenorm", "reference"]
Engine = Literal["auto", "fast", "captum"]


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
    precision: Literal["float32", "bf16"] | None = None,
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
    out: str | os.PathLike | None = None,
    mod: str | None = None,
    as_modality: bool = False,
    progress: bool = True,
    copy: bool = False,
    measurement: str = "RNA",
    X_name: str = "raw",
    obs_value_filter: str | None = None,
    var_value_filter: str | None = None,
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
        Cells per batch (default: 256 for IG on CPU, 1024 for DL/IxG; on CUDA as many as fit in half the free
        device memory, 256–32,768; unless the model asks for fewer, as transformers do). Memory is bounded by it.
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
    precision
        ``"bf16"`` autocasts the network's dense layers to bfloat16 (for GPUs; the fast path's sparse first layer
        and gene map stay float32); ``None`` (default) uses the model's own precision (``precision=`` of
        :class:`~sigscan.models.ScGPT` and :class:`~sigscan.models.ScFoundation`), else ``"float32"``. Recorded in
        the provenance. Measured on 200 PBMC3k cells, IG of the SCimilarity architecture (28,231 genes,
        1,024–1,024–128): bf16 differs from float32 by at most 0.27 on the 1000-scaled values, per-cell Pearson
        ≥ 0.9997 (``benchmarks/gpu.py``).
    gene_symbols, gene_ids
        ``adata.var`` columns holding gene symbols / Ensembl IDs, when ``var_names`` are of the other type.
    out
        Zarr store to write results to incrementally; an interrupted run with the same settings (``batch_size``
        included) resumes from the last finished batch. ``anndata.read_zarr(out)`` reads the finished attributions
        with the input's ``obs`` and ``var`` and the provenance in ``uns``, so ``ss.Atlas.add(out)`` keeps the cell
        metadata. For backed ``adata`` the layer is then not loaded into memory.
    mod
        For MuData: the RNA modality.
    as_modality
        For MuData: write a new modality ``attr:<model>`` in the model's gene space instead of a layer.
    progress
        Show a progress bar.
    {copy}
    measurement, X_name, obs_value_filter, var_value_filter
        For a TileDB-SOMA experiment (its URI or an open ``tiledbsoma.Experiment``, e.g. from CELLxGENE Census)
        instead of an AnnData: the measurement and X layer holding raw counts, and SOMA value filters selecting cells
        (``"is_primary_data == True and cell_type == 'classical monocyte'"``) and genes. The counts are streamed in
        batches through ``axis_query``, never loaded whole. Needs ``pip install 'sigscan[soma]'``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``; for SOMA input a new AnnData with the query's ``obs``, ``var``
    and the attribution layer. Writes

    - ``adata.layers[key_added]``: CSR float32 attributions, same shape as ``adata`` (genes outside the model are 0);
    - ``adata.var[f"{{key_added}}_in_model"]``: whether each gene is in the model;
    - ``adata.uns["sigscan"]["attributions"][key_added]``: provenance (model, weights checksum, method, …).

    Notes
    -----
    On the CPU the run uses as many threads as the process may really use (its CPU affinity, capped by a container's
    CPU quota) in numba, torch and BLAS, and restores their previous settings afterwards; set ``NUMBA_NUM_THREADS``
    or ``OMP_NUM_THREADS`` to choose another number. Results do not depend on the number of threads beyond float
    rounding. Unless ``OMP_WAIT_POLICY`` is set, sigscan (its ``models``, ``pp`` or ``tl`` used before ``import torch``)
    lets torch's and numba's OpenMP threads sleep rather than spin between parallel regions, which keeps a busy machine
    responsive.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:50].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> ss.pp.attributions(adata, model, method="ixg", progress=False)
    >>> float(adata.layers["attr_scimilarity_ixg"][0].sum())
    1000.0
    """
    soma = None
    if is_soma(adata):
        soma = SomaRows.open(
            adata,
            measurement=measurement,
            X_name=X_name,
            obs_value_filter=obs_value_filter,
            var_value_filter=var_value_filter,
        )
        if layer is not None:
            raise ValueError("layer= does not apply to SOMA input; X_name= names the SOMA X layer with raw counts.")
        adata = _soma_anndata(soma)
    container, adata = _resolve_modality(adata, mod, copy)
    settings = AttributionSettings.resolve(
        model,
        adata.var,
        method=method,
        n_steps=n_steps,
        head=head,
        engine=engine,
        device=device,
        batch_size=batch_size,
        target_sum=target_sum,
        layer=layer,
        gene_symbols=gene_symbols,
        gene_ids=gene_ids,
        precision=precision,
    )
    key_added = key_added or settings.key
    _check_key_added(adata, key_added, settings.provenance())
    counts = soma if soma is not None else counts_matrix(adata, layer)
    # backed files, lazy (dask) matrices and SOMA queries are validated batch by batch, never loaded whole
    in_memory = soma is None and not getattr(adata, "isbacked", False) and not hasattr(counts, "compute")
    if in_memory:
        settings.check_counts(counts)
    provenance = settings.provenance()
    n_columns = model.n_genes if as_modality else adata.n_vars
    shape = (adata.n_obs, n_columns)
    space = "model" if as_modality else "data"
    # hashing every cell name is only needed to resume a store
    fingerprint = (
        {} if out is None else settings.fingerprint(adata.obs_names, adata.var_names, space=space, n_columns=n_columns)
    )
    output = open_output(out, shape, fingerprint)

    with (
        timed(
            f"computing {method} attributions of {adata.n_obs} cells with {model.name} ({settings.engine_name} path)"
        ),
        settings.engine() as compute,
        tqdm(  # closed on errors too, so an error message starts on its own line
            total=adata.n_obs,
            initial=output.n_done,
            disable=not progress,
            unit="cells",
            desc=f"attributions ({method})",
        ) as bar,
    ):
        n_empty = 0

        def model_inputs():
            for lo, hi, batch in iter_row_batches(counts, settings.batch_size, start=output.n_done):
                if not in_memory:
                    settings.check_counts(batch, where=f"{settings.where} rows {lo}-{hi}")
                yield lo, hi, settings.model_input(batch)

        for lo, hi, attr in settings.attribute_batches(compute, model_inputs()):
            n_empty += int(np.count_nonzero(np.diff(attr.indptr) == 0))
            output.append(attr.sorted_indices() if as_modality else settings.alignment.to_data(attr))
            bar.update(hi - lo)

    if n_empty:
        warnings.warn(
            f"{n_empty} cells of {settings.where} have no counts in the model's genes: their attributions are all 0 "
            "(their rows sum to 0, not target_sum). Filter them first, e.g. sc.pp.filter_cells(adata, min_counts=1).",
            UserWarning,
            stacklevel=2,
        )
    in_model = settings.alignment.in_model
    var = _model_var(model) if as_modality else adata.var.copy()
    if not as_modality:
        var[f"{key_added}_in_model"] = in_model
    load = in_memory or (soma is not None and out is None)
    matrix = output.finish(adata.obs, var, {"sigscan": {"attributions": {key_added: provenance}}}, load=load)
    if matrix is None:
        logger.warning("attributions written to %s (read them with anndata.read_zarr); the layer is not loaded", out)
    _write_results(container, adata, model, matrix, key_added, in_model, provenance, as_modality)
    return container if copy or soma is not None else None


def _soma_anndata(soma: SomaRows) -> AnnData:
    """The AnnData a SOMA query's attributions are written into: the query's obs and var, no X."""
    import anndata as ad

    return ad.AnnData(obs=soma.obs(), var=soma.var())


def _check_key_added(adata: AnnData, key_added: str, provenance: dict[str, Any]) -> None:
    """Warn when ``key_added`` already holds attributions of another model (they are about to be replaced)."""
    previous = adata.uns.get("sigscan", {}).get("attributions", {}).get(key_added)
    if not previous:
        return
    fields = ("model", "weights_sha256", "method")
    changed = [f for f in fields if f in previous and f in provenance and previous[f] != provenance[f]]
    if changed:
        warnings.warn(
            f"key_added={key_added!r} already holds attributions of another run ("
            + ", ".join(f"{f} {str(previous[f])[:12]!r} → {str(provenance[f])[:12]!r}" for f in changed)
            + "); they are replaced. Pass another key_added= to keep both.",
            UserWarning,
            stacklevel=3,
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
