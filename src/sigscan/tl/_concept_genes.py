"""``ss.tl.concept_genes``: the genes that drive each concept, by counterfactual knock-outs or Integrated Gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import nn
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_layer_counts, doc_params
from .._engine import (
    ModelSettings,
    SummationHead,
    counts_matrix,
    embed_batch,
    hidden_gradient,
    quiet_captum,
    transposed_weight,
)
from .._engine._torch_kernels import attribution_values, device_batch, first_layer
from .._logging import timed
from .._utils import as_csr_float32
from ._concepts import ConceptModel, TopKSAE

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel

METHODS = ("counterfactual", "ig")
#: knock-out (or IG path) rows per pass through the network
_MAX_ROWS = 4096


class _ConceptReadout(nn.Module):
    """Embedding → every concept's pre-top-k activation (embedding standardised by the dictionary's scale)."""

    def __init__(self, sae: TopKSAE, scale: float, normalize: bool):
        super().__init__()
        self.sae, self.scale, self.normalize = sae, scale, normalize

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, p=2, dim=1)
        return self.sae.pre_activations(embedding / self.scale)


class _Explainer:
    """Per-cell gene scores of the selected concepts for one model and dictionary (fast or general path)."""

    def __init__(self, model: AttributionModel, readout: _ConceptReadout, device: torch.device, *, fast: bool):
        self.model, self.readout, self.device = model, readout, device
        self.split = model.first_linear() if fast else None
        if self.split is not None:
            self.weight_t = transposed_weight(self.split.weight).to(device)

    # --- the first-layer decomposition ----------------------------------------------------------------------------

    def _first_layer(self, x: sparse.csr_matrix) -> torch.Tensor:
        """``u = x Wᵀ`` without bias (cost ∝ non-zeros)."""
        return first_layer(device_batch(x, self.device), self.weight_t)

    def _from_first_layer(self, u: torch.Tensor) -> torch.Tensor:
        """Pre-top-k activations (all concepts) from first-layer outputs ``u`` (no bias)."""
        split = self.split
        assert split is not None
        return self.readout(split.rest(u if split.bias is None else u + split.bias))

    def activations(self, x: sparse.csr_matrix) -> np.ndarray:
        """Pre-top-k activations (cells × concepts) of model input ``x``."""
        with torch.no_grad():
            if self.split is not None:
                return self._from_first_layer(self._first_layer(x)).cpu().numpy()
            embedding = torch.from_numpy(embed_batch(self.model, x, self.device)).to(self.device)
            return self.readout.sae.pre_activations(embedding / self.readout.scale).cpu().numpy()

    # --- counterfactual knock-outs ----------------------------------------------------------------------------------

    def knockouts(self, x: sparse.csr_matrix, concepts: np.ndarray) -> np.ndarray:
        """``Δ[e, c] = a_c(x_i) − a_c(x_i with gene j set to 0)`` for every stored entry ``e = (i, j)`` of ``x``.

        Returns a (``x.nnz`` × ``len(concepts)``) float32 array in the order of ``x.data``.
        """
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        out = np.empty((x.nnz, len(concepts)), dtype=np.float32)
        if self.split is not None:
            split = self.split
            with torch.no_grad():
                u = self._first_layer(x)
                if split.bias is not None:
                    u += split.bias  # the pre-activations; a knock-out changes them by a rank-one term
                base = self.readout(split.rest(u))[:, concepts].cpu().numpy()
                for lo in range(0, x.nnz, _MAX_ROWS):
                    hi = min(x.nnz, lo + _MAX_ROWS)
                    genes = torch.from_numpy(x.indices[lo:hi].astype(np.int64)).to(self.device)
                    values = torch.from_numpy(x.data[lo:hi]).to(self.device)
                    # knocking gene j out of cell i: pre-activations u_i + b − x_ij W_{:,j}
                    knocked = u.index_select(0, torch.from_numpy(rows[lo:hi]).to(self.device))
                    knocked.addcmul_(values[:, None], self.weight_t.index_select(0, genes), value=-1.0)
                    out[lo:hi] = self.readout(split.rest(knocked))[:, concepts].cpu().numpy()
        else:
            base = self.activations(x)[:, concepts]
            for lo, hi, batch in _knocked_out_batches(x):
                out[lo:hi] = self.activations(batch)[:, concepts]
        return base[rows] - out

    # --- Integrated Gradients -----------------------------------------------------------------------------------------

    def integrated_gradients(self, x: sparse.csr_matrix, concept: np.ndarray, n_steps: int) -> np.ndarray:
        """IG of concept ``concept[i]``'s pre-top-k activation for row ``i`` of ``x``, at its stored entries."""
        n_concepts = self.readout.sae.W_enc.shape[0]
        selector = torch.zeros(x.shape[0], n_concepts, device=self.device)
        selector[torch.arange(x.shape[0]), torch.from_numpy(concept).to(self.device)] = 1.0
        if self.split is not None:
            head = SummationHead(nn.ModuleList([self.split.rest, self.readout]), self._from_first_layer)
            batch = device_batch(x, self.device)
            u = first_layer(batch, self.weight_t)
            with torch.enable_grad():
                hidden = hidden_gradient(head, u, selector, "ig", n_steps).detach()
            values = attribution_values(batch, hidden, self.weight_t).cpu().numpy()  # in sorted CSR order
            if batch.x is x:
                return values
            rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
            stored = np.empty_like(values)
            stored[np.lexsort((x.indices, rows))] = values
            return stored
        return self._integrated_gradients_captum(x, selector, n_steps)

    def _integrated_gradients_captum(self, x: sparse.csr_matrix, selector: torch.Tensor, n_steps: int) -> np.ndarray:
        from captum.attr import IntegratedGradients

        model = self.model
        prepared = model.attribution_inputs(x, self.device)

        def forward(inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
            # the readout normalises like ss.pp.embeddings does for L2-normalised encoders
            return self.readout(model.forward_inputs(inputs, *extra, normalize=False))

        head = SummationHead(nn.ModuleList([model.module, self.readout]), forward)
        with torch.enable_grad(), quiet_captum():
            attr = IntegratedGradients(head, multiply_by_inputs=True).attribute(
                prepared.inputs,
                baselines=torch.zeros_like(prepared.inputs),
                additional_forward_args=(selector, *prepared.extra),
                n_steps=n_steps,
                method="gausslegendre",
                internal_batch_size=prepared.internal_batch_size,
            )
        return prepared.to_genes(attr).data.astype(np.float64)


def _knocked_out_batches(x: sparse.csr_matrix, max_entries: int = 2_000_000):
    """Knocked-out copies of the cells of ``x``, in batches (the general path for encoders without a linear first layer).

    Yields ``(lo, hi, batch)``: row ``e - lo`` of ``batch`` is the cell of stored entry ``e`` of ``x`` with that one
    gene removed, for ``lo <= e < hi``.
    """
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    lo = 0
    while lo < x.nnz:
        hi, total = lo, 0
        while hi < x.nnz and (hi == lo or total + x.indptr[rows[hi] + 1] - x.indptr[rows[hi]] <= max_entries):
            total += x.indptr[rows[hi] + 1] - x.indptr[rows[hi]]
            hi += 1
        indices, data, indptr = [], [], [0]
        for e in range(lo, hi):
            start, stop = x.indptr[rows[e]], x.indptr[rows[e] + 1]
            keep = np.arange(start, stop) != e
            indices.append(x.indices[start:stop][keep])
            data.append(x.data[start:stop][keep])
            indptr.append(indptr[-1] + int(keep.sum()))
        yield (
            lo,
            hi,
            sparse.csr_matrix(
                (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(hi - lo, x.shape[1])
            ),
        )
        lo = hi


def _check_model_matches(adata: AnnData, model: AttributionModel, sae: ConceptModel, key: str) -> None:
    if model.embedding_dim != sae.d_input:
        raise ValueError(
            f"{model.name} embeddings have {model.embedding_dim} dimensions but the concepts in "
            f"uns['sigscan'][{key!r}] were trained on {sae.d_input}-dimensional {sae.use_rep!r}; pass the model whose "
            "embeddings they were trained on."
        )
    provenance = adata.uns.get("sigscan", {}).get("embeddings", {}).get(sae.use_rep, {})
    checksum = provenance.get("weights_sha256") if isinstance(provenance, dict) else None
    if checksum is not None and checksum != model.checksum:
        raise ValueError(
            f"The concepts in uns['sigscan'][{key!r}] were trained on {sae.use_rep!r}, computed by a model with other "
            f"weights than {model.name} (checksums differ); pass that model, or recompute the embeddings and concepts "
            "with this one."
        )


def _select_cells(codes: sparse.csr_matrix, concepts: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The union of each concept's ``n_cells`` most active cells, and a (union × concepts) membership mask."""
    by_concept = codes.tocsc()
    chosen = []
    for c in concepts:
        start, stop = by_concept.indptr[c], by_concept.indptr[c + 1]
        cells, values = by_concept.indices[start:stop], by_concept.data[start:stop]
        active = values > 0
        cells, values = cells[active], values[active]
        order = np.lexsort((cells, -values))[:n_cells]  # most active first, ties by cell order
        chosen.append(np.sort(cells[order]))
    union = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    mask = np.zeros((len(union), len(concepts)), dtype=bool)
    for position, cells in enumerate(chosen):
        mask[np.searchsorted(union, cells), position] = True
    return union, mask


def _tidy(scores: np.ndarray, fraction: np.ndarray, genes: pd.Index, concepts: np.ndarray, n_top: int) -> pd.DataFrame:
    frames = []
    for position, c in enumerate(concepts):
        column = scores[:, position]
        order = np.lexsort((np.arange(len(column)), -column))
        order = order[column[order] > 0][:n_top]
        frames.append(
            pd.DataFrame(
                {
                    "concept": np.full(len(order), int(c), dtype=np.int64),
                    "gene": genes[order].astype(str),
                    "score": column[order].astype(np.float32),
                    "frac_cells": fraction[order, position].astype(np.float32),
                    "rank": np.arange(1, len(order) + 1, dtype=np.int64),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["concept", "gene", "score", "frac_cells", "rank"])
    return pd.concat(frames, ignore_index=True)


def _resolve_concepts(concepts: Any, n_concepts: int) -> np.ndarray:
    if concepts is None:
        return np.arange(n_concepts)
    chosen = np.atleast_1d(np.asarray(concepts))
    if chosen.dtype.kind not in "iu" or chosen.size == 0:
        raise TypeError("concepts must be a concept index or a list of concept indices (integers).")
    bad = chosen[(chosen < 0) | (chosen >= n_concepts)]
    if bad.size:
        raise ValueError(f"Concept indices {bad.tolist()} are out of range; the dictionary has {n_concepts} concepts.")
    return np.unique(chosen)


@doc_params(adata=doc_adata, layer=doc_layer_counts)
def concept_genes(
    adata: AnnData,
    model: AttributionModel,
    *,
    key: str = "concepts",
    concepts: int | list[int] | None = None,
    method: Literal["counterfactual", "ig"] = "counterfactual",
    n_cells: int = 100,
    n_top: int = 50,
    n_steps: int = 50,
    layer: str | None = None,
    device: str = "auto",
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
    progress: bool = True,
) -> None:
    """Which genes drive each concept of :func:`sigscan.tl.concepts`.

    For each concept ``c``, the ``n_cells`` cells where it is most active are explained and the per-cell gene
    scores averaged over them (a cell where a gene is not expressed contributes 0):

    - ``"counterfactual"``: ``Δ_j = a_c(x) − a_c(x with gene j set to 0)``, the drop of the concept's pre-top-k
      activation ``a_c`` when one expressed gene of the model input is knocked out (other genes keep their values).
      For encoders whose first operation is a Linear layer ``W``, the knock-out changes the first layer's output by
      the rank-one term ``x_j W_{:,j}``, so every knock-out of a cell is one row of one batched pass through the rest
      of the network: the cost is (expressed genes of the selected cells) × (FLOPs after the first layer), instead of
      a full forward pass over all model genes per knock-out. Other encoders take the general path, one forward pass
      per knock-out in batches. All selected concepts are read off the same passes.
    - ``"ig"``: Integrated Gradients of ``a_c`` against a zero input, with the exact first-layer fast path of
      :func:`sigscan.pp.attributions` (``n_steps`` Gauss–Legendre steps; captum for other encoders). The scores of a
      cell sum to ``a_c(x) − a_c(0)``.

    Parameters
    ----------
    {adata}
    model
        The model whose embeddings the concepts were trained on.
    key
        The ``key_added`` of :func:`sigscan.tl.concepts`.
    concepts
        Concept indices to explain (default: all).
    method
        ``"counterfactual"`` or ``"ig"``.
    n_cells
        Cells explained per concept (its most active ones; fewer when fewer cells activate it).
    n_top
        Genes per concept in the tidy table.
    n_steps
        Integration steps for ``"ig"``.
    {layer}
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    gene_symbols, gene_ids
        ``adata.var`` columns holding gene symbols / Ensembl IDs, when ``var_names`` are of the other type.
    progress
        Show a progress bar.

    Returns
    -------
    ``None``. Writes

    - ``adata.varm[f"{{key}}_genes"]``: float32, genes × concepts, the mean score of each gene over the concept's
      cells (0 for genes outside the model, NaN for concepts not explained yet);
    - ``adata.var[f"{{key}}_in_model"]``: whether the gene is in the model (the background of
      :func:`sigscan.tl.concept_enrichment`);
    - ``adata.uns["sigscan"][f"{{key}}_genes"]``: tidy DataFrame (``concept``, ``gene``, ``score``, ``frac_cells``
      — the fraction of the concept's cells where the score is positive —, ``rank``) of the ``n_top`` genes with a
      positive score per concept, and ``uns["sigscan"][f"{{key}}_genes_params"]`` (method, model, cells).

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=16)
    >>> ss.tl.concepts(adata, model, n_concepts=16, k=2, n_epochs=5)
    >>> ss.tl.concept_genes(adata, model, concepts=[0, 1], n_cells=10, progress=False)
    >>> adata.varm["concepts_genes"].shape
    (32738, 16)
    """
    from .._engine import check_model

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use 'counterfactual' or 'ig'.")
    for name, value in (("n_cells", n_cells), ("n_top", n_top), ("n_steps", n_steps)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}.")
    check_model(model)
    sae = ConceptModel.from_uns(adata, key)
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {key!r}; run ss.tl.concepts(adata, …, key_added={key!r}) first.")
    _check_model_matches(adata, model, sae, key)
    chosen = _resolve_concepts(concepts, sae.n_concepts)
    settings = ModelSettings.resolve(
        model, adata.var, device=device, layer=layer, gene_symbols=gene_symbols, gene_ids=gene_ids
    )
    counts = counts_matrix(adata, layer)
    cells, mask = _select_cells(as_csr_float32(adata.obsm[key]), chosen, n_cells)
    n_per_concept = mask.sum(axis=0)

    n_genes = model.n_genes
    sums = np.zeros((n_genes, len(chosen)), dtype=np.float64)
    positive = np.zeros((n_genes, len(chosen)), dtype=np.float64)
    readout = _ConceptReadout(sae.module(settings.device), sae.scale, model.l2_normalized)
    batch_cells = 16 if method == "counterfactual" else 8
    with (
        timed(f"explaining {len(chosen)} concepts with {method} over {len(cells)} cells"),
        settings.inference(),
        tqdm(total=len(cells), disable=not progress, unit="cells", desc="concept genes") as bar,
    ):
        explainer = _Explainer(model, readout, settings.device, fast=model.first_linear() is not None)
        for lo in range(0, len(cells), batch_cells):
            rows = cells[lo : lo + batch_cells]
            batch = as_csr_float32(counts[rows] if not sparse.issparse(counts) else counts[rows, :])
            settings.check_counts(batch)
            x = settings.model_input(batch)
            x.sum_duplicates()
            members = mask[lo : lo + batch_cells]
            if method == "counterfactual":
                delta = explainer.knockouts(x, chosen)
                weight = members[np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))]
                np.add.at(sums, x.indices, delta * weight)
                np.add.at(positive, x.indices, (delta > 0) & weight)
            else:
                _accumulate_ig(explainer, x, members, n_steps, sums, positive, chosen)
            bar.update(len(rows))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_per_concept > 0, sums / np.maximum(n_per_concept, 1), 0.0)
        fraction = np.where(n_per_concept > 0, positive / np.maximum(n_per_concept, 1), 0.0)
    _write(adata, settings, sae, key, chosen, mean, fraction, n_top, method, model, n_cells, n_per_concept)


def _accumulate_ig(
    explainer: _Explainer,
    x: sparse.csr_matrix,
    members: np.ndarray,
    n_steps: int,
    sums: np.ndarray,
    positive: np.ndarray,
    chosen: np.ndarray,
) -> None:
    """IG for every (cell, concept) pair of the batch; add the scores to the running sums."""
    cell_of_pair, position = np.nonzero(members)
    per_call = max(1, _MAX_ROWS // max(n_steps, 1))
    for lo in range(0, len(cell_of_pair), per_call):
        pair_cells, pair_positions = cell_of_pair[lo : lo + per_call], position[lo : lo + per_call]
        pairs = x[pair_cells]
        values = explainer.integrated_gradients(pairs, chosen[pair_positions], n_steps)
        columns = np.repeat(pair_positions, np.diff(pairs.indptr))
        np.add.at(sums, (pairs.indices, columns), values)
        np.add.at(positive, (pairs.indices, columns), values > 0)


def _write(
    adata: AnnData,
    settings: ModelSettings,
    sae: ConceptModel,
    key: str,
    chosen: np.ndarray,
    mean: np.ndarray,
    fraction: np.ndarray,
    n_top: int,
    method: str,
    model: AttributionModel,
    n_cells: int,
    n_per_concept: np.ndarray,
) -> None:
    data_to_model = settings.alignment.data_to_model
    present = data_to_model >= 0
    scores = np.zeros((adata.n_vars, len(chosen)), dtype=np.float32)
    scores[present] = mean[data_to_model[present]]
    frac = np.zeros((adata.n_vars, len(chosen)), dtype=np.float32)
    frac[present] = fraction[data_to_model[present]]
    varm_key = f"{key}_genes"
    previous = adata.varm.get(varm_key)
    if isinstance(previous, np.ndarray) and previous.shape == (adata.n_vars, sae.n_concepts):
        matrix = np.array(previous, dtype=np.float32)
    else:
        matrix = np.full((adata.n_vars, sae.n_concepts), np.nan, dtype=np.float32)
    matrix[:, chosen] = scores
    table = _tidy(scores, frac, adata.var_names, chosen, n_top)
    store = adata.uns.setdefault("sigscan", {})
    old = store.get(varm_key)
    if isinstance(old, pd.DataFrame) and len(old):
        table = pd.concat([old[~old["concept"].isin(chosen)], table], ignore_index=True)
        table = table.sort_values(["concept", "rank"], kind="stable").reset_index(drop=True)
    adata.varm[varm_key] = matrix
    adata.var[f"{key}_in_model"] = present
    store[varm_key] = table
    store[f"{varm_key}_params"] = {
        "method": method,
        "model": model.name,
        "weights_sha256": model.checksum,
        "n_cells": int(n_cells),
        "n_top": int(n_top),
        "concepts": chosen.astype(np.int64),
        "cells_per_concept": n_per_concept.astype(np.int64),
    }
