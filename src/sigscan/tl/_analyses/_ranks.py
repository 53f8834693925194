"""``ss.tl.rank_percentiles``: where gene families sit within each cell's ranking of its non-zero values."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pandas as pd
from scipy import sparse

from ..._attribution_layer import PREFIX, recorded_attributions
from ..._docs import doc_adata, doc_params
from ..._gene_sets import read_gene_set, read_gene_sets
from ..._logging import logger, timed
from ..._validation import looks_like_counts
from .._scorers._data import ScoringData
from . import _common
from ._common import SHUFFLED

if TYPE_CHECKING:
    from anndata import AnnData

#: built-in gene families (see :func:`rank_percentiles`)
BUILTIN_FAMILIES = ("markers", "ribosomal", "mitochondrial", "transcription_factors")
#: cytosolic ribosomal protein genes: RPL*/RPS* (incl. RPLP0-2, paralogues such as RPL3L, RPS4Y1), not RPS6KA* etc.
_RIBOSOMAL = re.compile(r"^RP[LS]P?\d+(A|AL|L\d?|LA|X|Y\d?)?$", re.IGNORECASE)
_MITOCHONDRIAL = re.compile(r"^MT-", re.IGNORECASE)

COLUMNS = [
    "group",
    "family",
    "layer",
    "reads",
    "kind",
    "mean_percentile",
    "n_genes",
    "n_detected",
    "n_cells",
    "n_shuffles",
]
GENE_COLUMNS = ["group", "family", "layer", "reads", "gene", "mean_percentile", "n_cells_detected"]


@numba.njit(parallel=True, cache=True)
def _row_percentiles_numba(indptr, data, out):  # pragma: no cover - compiled
    for i in numba.prange(indptr.size - 1):
        lo = indptr[i]
        n = indptr[i + 1] - lo
        if n == 0:
            continue
        values = data[lo : lo + n]
        order = np.argsort(values, kind="mergesort")
        j = 0
        while j < n:
            k = j
            while k + 1 < n and values[order[k + 1]] == values[order[j]]:
                k += 1
            percentile = ((j + k) / 2.0 + 1.0) * 100.0 / n
            for m in range(j, k + 1):
                out[lo + order[m]] = percentile
            j = k + 1


def row_percentiles(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Within each row, the stored non-zero values as rank percentiles ``100 · rank / n`` (ties averaged).

    ``rank`` is :func:`scipy.stats.rankdata` (``method="average"``) of the row's ``n`` non-zero values, so the
    largest value gets 100 and a row with one non-zero value gets 100. Zeros (and explicit zeros) stay unranked.
    """
    matrix = sparse.csr_matrix(matrix)
    if matrix.nnz and (matrix.data == 0).any():
        matrix = matrix.copy()
        matrix.eliminate_zeros()
    out = np.zeros(matrix.nnz, dtype=np.float64)
    _row_percentiles_numba(
        np.ascontiguousarray(matrix.indptr, dtype=np.int64), np.ascontiguousarray(matrix.data, np.float64), out
    )
    return sparse.csr_matrix((out, matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape)


@lru_cache(maxsize=1)
def transcription_factors() -> tuple[str, ...]:
    """The 1,639 human transcription factors of Lambert et al. 2018 (*Cell* 172:650), Human TFs list v1.01."""
    from ...datasets import gene_sets

    return tuple(gene_sets("human_tfs")["LAMBERT2018_HUMAN_TFS"])


def _builtin(name: str, var_names: pd.Index) -> list[str]:
    names = pd.Index(var_names).astype(str)
    if name == "ribosomal":
        return [g for g in names if _RIBOSOMAL.match(g)]
    if name == "mitochondrial":
        return [g for g in names if _MITOCHONDRIAL.match(g)]
    present = set(names)
    return [g for g in transcription_factors() if g in present]


def _markers(
    adata: AnnData, groups: pd.Series, order: Sequence[str], n_top: int, expression_layer: str | None
) -> dict[str, list[str]]:
    """Top ``n_top`` genes per group by :func:`scanpy.tl.rank_genes_groups` (t-test) on log-normalised data."""
    import anndata as ad
    import scanpy as sc

    counted = groups.dropna().value_counts()
    usable = [g for g in order if counted.get(g, 0) >= 2]
    if len(usable) < 2:
        raise ValueError(
            "The 'markers' family needs at least two groups with >= 2 cells each in obs[groupby]; pass marker genes "
            "yourself as gene_families={'markers': {group: genes}} or drop 'markers'."
        )
    data = ScoringData(adata, expression_layer)
    data.normalize = data.matrix is not None and looks_like_counts(data.matrix)
    matrix = data.to_memory()  # log-normalised (a new matrix; the stored one is not touched)
    cells = groups.isin(usable).to_numpy()
    light = ad.AnnData(
        matrix[cells],
        obs=pd.DataFrame({"group": pd.Categorical(groups[cells], categories=usable)}, index=adata.obs_names[cells]),
        var=pd.DataFrame(index=pd.Index(adata.var_names).astype(str)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(light, "group", method="t-test", n_genes=n_top, use_raw=False)
    names = light.uns["rank_genes_groups"]["names"]
    return {g: [str(x) for x in names[g]] for g in usable}


def resolve_families(
    adata: AnnData,
    gene_families: Any,
    groups: pd.Series,
    order: Sequence[str],
    *,
    n_top: int,
    expression_layer: str | None,
) -> dict[str, dict[str, list[str]] | list[str]]:
    """``family → genes`` (one list for all groups) or ``family → {{group → genes}}`` (per-group families)."""
    if isinstance(gene_families, str) and (gene_families in BUILTIN_FAMILIES):
        gene_families = [gene_families]
    if isinstance(gene_families, Mapping):
        items = list(gene_families.items())
    elif isinstance(gene_families, Sequence) and not isinstance(gene_families, str) and gene_families:
        items = []
        for entry in gene_families:
            if isinstance(entry, str) and entry in BUILTIN_FAMILIES:
                items.append((entry, entry))
            else:
                items.extend(read_gene_sets(entry).items())
    elif isinstance(gene_families, str):
        items = list(read_gene_sets(gene_families).items())
    else:
        raise TypeError(
            f"gene_families must be built-in family names ({', '.join(BUILTIN_FAMILIES)}), a mapping of family → "
            "genes, or a GMT path."
        )
    families: dict[str, dict[str, list[str]] | list[str]] = {}
    for name, value in items:
        name = str(name)
        if isinstance(value, str) and value in BUILTIN_FAMILIES:
            if value == "markers":
                families[name] = _markers(adata, groups, order, n_top, expression_layer)
            else:
                families[name] = _builtin(value, adata.var_names)
        elif isinstance(value, Mapping):
            families[name] = {str(g): read_gene_set(genes, name=str(g)) for g, genes in value.items()}
        else:
            families[name] = read_gene_set(value, name=name)
    empty = [name for name, genes in families.items() if isinstance(genes, list) and not genes]
    for name in empty:
        logger.warning("gene family %r has no genes in the data and is skipped", name)
        del families[name]
    if not families:
        raise ValueError("No gene family has genes in the data; check the gene identifiers (symbols vs Ensembl IDs).")
    return families


def _layers(adata: AnnData, layers: Sequence[str | None] | str | None) -> list[tuple[str | None, str]]:
    """``(layer, reads)`` pairs: every attribution layer plus ``X`` by default."""
    recorded = recorded_attributions(adata.uns)
    attribution = [k for k in adata.layers if k in recorded or k.startswith(PREFIX)]
    if layers is None:
        chosen: list[str | None] = [*attribution, None]
    else:
        chosen = [layers] if isinstance(layers, str) else list(layers)
        if not chosen:
            raise ValueError("layers is empty; pass layer names (None or 'X' for adata.X).")
    out = []
    for layer in chosen:
        layer = None if layer == "X" else layer
        if layer is not None and layer not in adata.layers:
            raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)} (or 'X').")
        out.append((layer, "attribution" if layer in attribution else "expression"))
    return out


def gene_mean_percentiles(data: ScoringData, indicator: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Groups × genes mean rank percentile over the cells where the gene is non-zero (NaN if none), and that count."""
    sums = np.zeros((indicator.shape[0], data.shape[1]))
    detected = np.zeros_like(sums)
    for lo, hi, chunk in data.chunks():
        percentiles = row_percentiles(chunk)
        block = indicator[:, lo:hi]
        sums += np.asarray((block @ percentiles).todense())
        percentiles.data[:] = 1.0
        detected += np.asarray((block @ percentiles).todense())
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(detected > 0, sums / np.maximum(detected, 1), np.nan)
    return means, detected


@doc_params(adata=doc_adata, shuffles=_common.doc_shuffles)
def rank_percentiles(
    adata: AnnData,
    gene_families: Any = BUILTIN_FAMILIES,
    *,
    groupby: str,
    layers: Sequence[str | None] | str | None = None,
    n_top: int = 25,
    n_shuffles: int = 25,
    random_state: int = 0,
    expression_layer: str | None = None,
    key_added: str = "rank_percentiles",
) -> pd.DataFrame:
    """Mean within-cell rank percentile of gene families per group (the SIGnature paper's ranking test).

    In each cell the non-zero values are rank-normalised to percentiles ``100 · rank / n`` (ties averaged as in
    :func:`scipy.stats.rankdata`; the cell's largest value is 100). Per group, each gene's percentile is averaged over
    the cells where it is non-zero; a family's value is the mean over its genes detected in the group. Attribution
    layers and expression are ranked side by side (expression ranks are the same for counts and log-normalised
    values), next to the same for random relabellings of the genes.

    Parameters
    ----------
    {adata}
    gene_families
        Families to report: built-in names, a mapping of family name → genes (or → a built-in name, or → a mapping
        of group → genes for per-group families), or a GMT path. Built-in: ``"markers"`` (the top ``n_top``
        genes of each group by :func:`scanpy.tl.rank_genes_groups`, t-test on log-normalised expression, each group
        scored on its own markers), ``"ribosomal"`` (``RPL*``/``RPS*``), ``"mitochondrial"`` (``MT-*``) and
        ``"transcription_factors"`` (the 1,639 human TFs of Lambert et al. 2018, shipped with sigscan).
    groupby
        ``obs`` column with the groups (e.g. cell type).
    layers
        Matrices to rank: layer names, ``"X"`` for ``adata.X``. Default: every attribution layer and ``X``.
    n_top
        Marker genes per group for ``"markers"``.
    {shuffles}
    expression_layer
        Layer with expression for the ``"markers"`` family (``None``: ``X``; counts are log-normalised).
    key_added
        Key in ``adata.uns["sigscan"]``: the family table; the per-gene values go to ``f"{{key_added}}_genes"``.

    Returns
    -------
    Tidy table, one row per group × family × layer × kind: ``group``, ``family``, ``layer``, ``reads``
    (``"attribution"`` or ``"expression"``), ``kind`` (``"gene_set"`` or ``"shuffled"``), ``mean_percentile``,
    ``n_genes`` (family genes in the data), ``n_detected`` (of those, detected in the group), ``n_cells``,
    ``n_shuffles``. ``X`` and the layers are not modified.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:500].copy()
    >>> table = ss.tl.rank_percentiles(adata, ["ribosomal", "mitochondrial"], groupby="cell_type", n_shuffles=2)
    >>> sorted(table["family"].unique())
    ['mitochondrial', 'ribosomal']
    """
    groups = _common.check_groupby(adata, groupby)
    order = sorted(groups.dropna().unique())
    if not order:
        raise ValueError(f"obs[{groupby!r}] has no values; pass a groupby column that labels the cells.")
    chosen = _layers(adata, layers)
    n_shuffles = _common.check_shuffles(n_shuffles)
    families = resolve_families(adata, gene_families, groups, order, n_top=n_top, expression_layer=expression_layer)
    indicator = _common.group_indicator(groups, order)
    n_cells = np.asarray(indicator.sum(axis=1)).ravel().astype(int)
    position = pd.Series(np.arange(adata.n_vars), index=pd.Index(adata.var_names).astype(str))
    position = position[~position.index.duplicated()]

    def columns_of(genes: list[str]) -> np.ndarray:
        return position.reindex(genes).dropna().to_numpy(dtype=np.int64)

    rows: list[dict[str, Any]] = []
    gene_rows: list[pd.DataFrame] = []
    with timed(f"rank percentiles of {len(families)} famil(ies) in {len(chosen)} matrix(es), {len(order)} groups"):
        for layer, reads in chosen:
            means, detected = gene_mean_percentiles(ScoringData(adata, layer), indicator)
            perms = _common.permutations(detected.sum(axis=0) > 0, n_shuffles, random_state)
            name = "X" if layer is None else layer
            for family, genes in families.items():
                for g, group in enumerate(order):
                    cols = columns_of(genes.get(group, []) if isinstance(genes, dict) else genes)
                    if cols.size == 0:
                        continue
                    values = means[g, cols]
                    base = {
                        "group": group,
                        "family": family,
                        "layer": name,
                        "reads": reads,
                        "n_genes": int(cols.size),
                        "n_cells": int(n_cells[g]),
                        "n_shuffles": n_shuffles,
                    }
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        rows.append(
                            {
                                **base,
                                "kind": _common.OBSERVED,
                                "mean_percentile": float(np.nanmean(values)),
                                "n_detected": int(np.isfinite(values).sum()),
                            }
                        )
                        if perms:
                            shuffled = [means[g, perm[cols]] for perm in perms]
                            rows.append(
                                {
                                    **base,
                                    "kind": SHUFFLED,
                                    "mean_percentile": float(np.nanmean([np.nanmean(v) for v in shuffled])),
                                    "n_detected": round(float(np.mean([np.isfinite(v).sum() for v in shuffled]))),
                                }
                            )
                    gene_rows.append(
                        pd.DataFrame(
                            {
                                "group": group,
                                "family": family,
                                "layer": name,
                                "reads": reads,
                                "gene": pd.Index(adata.var_names)[cols].astype(str),
                                "mean_percentile": values,
                                "n_cells_detected": detected[g, cols].astype(int),
                            }
                        )
                    )
    table = pd.DataFrame(rows, columns=COLUMNS)
    genes_table = pd.concat(gene_rows, ignore_index=True) if gene_rows else pd.DataFrame(columns=GENE_COLUMNS)
    params = {
        "groupby": groupby,
        "layers": ["X" if layer is None else layer for layer, _ in chosen],
        "families": list(families),
        "n_top": int(n_top),
        "n_shuffles": int(n_shuffles),
        "random_state": int(random_state),
    }
    adata.uns.setdefault("sigscan", {})[f"{key_added}_genes"] = genes_table
    return _common.store(adata, key_added, table, params)
