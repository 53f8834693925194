"""``ss.tl.downsampling_stability``: whether a group's gene ranking survives thinned counts (SPEC 5.1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import rankdata

from .._docs import doc_adata, doc_layer_counts, doc_params
from .._engine import counts_matrix
from .._logging import logger, timed
from .._thinning import check_fraction, thin_counts
from .._utils import as_csr_float32, scale_rows
from .._validation import check_counts

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel

#: the SIGnature paper's levels: 0–90% of the counts removed
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: the two gene rankings compared: mean attribution and mean log-normalised expression per gene
READS = ("attribution", "expression")
#: ``kind`` of the rows: the ranking itself, or its shuffled-gene-label baseline (the other analyses' word)
RANKING, SHUFFLED = "ranking", "shuffled"
COLUMNS = ["group", "fraction", "reads", "kind", "spearman", "top_overlap", "n_top", "n_cells", "n_genes"]
_ATTRIBUTION_KEY = "_sigscan_downsampling"


def group_labels(adata: AnnData, groupby: str | None, groups: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """(label of each cell as str, or ``""`` when not analysed; the groups analysed, in category order)."""
    if groupby is None:
        if groups is not None:
            raise ValueError("groups= needs groupby=: pass the obs column that holds those groups.")
        return np.full(adata.n_obs, "all", dtype=object), ["all"]
    if groupby not in adata.obs:
        raise KeyError(
            f"groupby={groupby!r} is not an obs column; available: {', '.join(map(str, adata.obs.columns))}. Pass "
            "the column with the cell types, or groupby=None for all cells as one group."
        )
    column = adata.obs[groupby]
    present = [str(v) for v in (column.cat.categories if hasattr(column, "cat") else pd.unique(column.dropna()))]
    present = [v for v in present if (column.astype(str) == v).any()]
    if groups is None:
        chosen = present
    else:
        chosen = [str(g) for g in groups]
        unknown = [g for g in chosen if g not in present]
        if unknown:
            raise ValueError(
                f"groups {unknown} are not values of obs[{groupby!r}] (values: {', '.join(present[:12])}); pass "
                "existing groups or groups=None for all."
            )
    labels = column.astype(str).to_numpy(dtype=object)
    labels[column.isna().to_numpy() | ~np.isin(labels, chosen)] = ""
    return labels, chosen


def group_means(matrix: sparse.csr_matrix, labels: np.ndarray, groups: list[str]) -> np.ndarray:
    """Mean of each column over each group's cells (groups × genes, float64), without densifying ``matrix``."""
    rows, cols, values = [], [], []
    for k, group in enumerate(groups):
        cells = np.flatnonzero(labels == group)
        rows.append(np.full(cells.size, k))
        cols.append(cells)
        values.append(np.full(cells.size, 1.0 / max(cells.size, 1)))
    indicator = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(len(groups), matrix.shape[0])
    )
    return np.asarray((indicator @ matrix.astype(np.float64)).todense())


def log_normalise(counts: sparse.csr_matrix, target_sum: float = 1e4) -> sparse.csr_matrix:
    """``log1p`` of counts scaled to ``target_sum`` per cell (scanpy's ``normalize_total`` + ``log1p``), as a copy."""
    scaled = scale_rows(as_csr_float32(counts).copy(), target_sum)
    scaled.data = np.log1p(scaled.data)
    return scaled


def top_overlap(reference: np.ndarray, values: np.ndarray, n_top: int) -> float:
    """Share of the ``n_top`` highest genes of ``reference`` that are among the ``n_top`` highest of ``values``."""
    n_top = min(n_top, reference.size)
    if n_top == 0:
        return float("nan")
    top_a = np.argsort(-reference, kind="stable")[:n_top]
    top_b = np.argsort(-values, kind="stable")[:n_top]
    return float(np.intersect1d(top_a, top_b).size / n_top)


def _rank_correlation(rank_a: np.ndarray, rank_b: np.ndarray) -> float:
    """Pearson correlation of two rank vectors (= Spearman of the values); NaN when either is constant."""
    a = rank_a - rank_a.mean()
    b = rank_b - rank_b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def compare_rankings(
    reference: np.ndarray, values: np.ndarray, *, n_top: int, n_shuffles: int, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """(Spearman, top overlap, and their means over ``n_shuffles`` relabellings of the genes of ``values``)."""
    rank_ref = rankdata(reference)
    rank_values = rankdata(values)
    spearman = _rank_correlation(rank_ref, rank_values)
    overlap = top_overlap(reference, values, n_top)
    shuffled_spearman, shuffled_overlap = [], []
    for _ in range(n_shuffles):
        permutation = rng.permutation(values.size)
        shuffled_spearman.append(_rank_correlation(rank_ref, rank_values[permutation]))
        shuffled_overlap.append(top_overlap(reference, values[permutation], n_top))
    nan = float("nan")
    return (
        spearman,
        overlap,
        float(np.mean(shuffled_spearman)) if n_shuffles else nan,
        float(np.mean(shuffled_overlap)) if n_shuffles else nan,
    )


@doc_params(adata=doc_adata, layer=doc_layer_counts)
def downsampling_stability(
    adata: AnnData,
    model: AttributionModel,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    groupby: str | None = None,
    groups: Sequence[str] | None = None,
    method: Literal["ig", "dl", "ixg"] = "ig",
    n_top: int = 50,
    layer: str | None = None,
    n_shuffles: int = 25,
    target_sum: float = 1e4,
    random_state: int = 0,
    key_added: str = "downsampling",
    **attribution_options: Any,
) -> pd.DataFrame:
    """Stability of each group's gene ranking when counts are thinned (SIGnature's downsampling analysis).

    For every level in ``fractions`` the raw counts are thinned binomially (each count kept with probability
    ``1 − fraction``, :func:`sigscan.pp.downsample_counts`) on a copy, attributions are recomputed with
    :func:`sigscan.pp.attributions`, and in each group the genes are ranked by their mean attribution over the group's
    cells. That ranking is compared with the one of the undownsampled counts by Spearman correlation and by the
    overlap of the ``n_top`` highest genes. The same is done for the mean log-normalised expression (counts scaled to
    ``target_sum`` per cell, ``log1p``), and for both a shuffled baseline: the thinned ranking with its gene labels
    permuted, averaged over ``n_shuffles`` permutations (the chance level: Spearman near 0, overlap near
    ``n_top / n_genes``).

    Genes compared are those in the model and detected in the group at fraction 0 (an undetected gene stays zero
    whatever the thinning, and would only add ties).

    Parameters
    ----------
    {adata}
    model
        A model wrapper from :mod:`sigscan.models`.
    fractions
        Shares of counts removed, each in [0, 1). Fraction 0 (the reference) is always computed.
    groupby
        obs column with the groups (e.g. cell types); ``None`` treats all cells as one group ``"all"``.
    groups
        Groups to report (default: all).
    method
        Attribution method of :func:`sigscan.pp.attributions`.
    n_top
        Size of the top-gene lists whose overlap is reported.
    {layer}
    n_shuffles
        Gene-label permutations of the shuffled baseline (0 skips it).
    target_sum
        Counts per cell before ``log1p`` for the expression ranking.
    random_state
        Seed of the thinning and of the permutations.
    key_added
        Key in ``adata.uns["sigscan"]`` for the table (parameters in ``f"{{key_added}}_params"``).
    **attribution_options
        Passed to :func:`sigscan.pp.attributions` (e.g. ``n_steps``, ``batch_size``, ``device``,
        ``gene_symbols``).

    Returns
    -------
    Tidy table, one row per group × fraction × ``reads`` (``"attribution"``, ``"expression"``) × ``kind``
    (``"ranking"``: the ranking itself; ``"shuffled"``: the baseline): ``spearman``, ``top_overlap``, ``n_top``,
    ``n_cells``, ``n_genes``. Also stored in ``adata.uns["sigscan"][key_added]``; ``X`` and layers are left unchanged.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:60].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> df = ss.tl.downsampling_stability(adata, model, fractions=(0, 0.5), method="ixg", n_shuffles=2)
    >>> float(df.query("fraction == 0 and kind == 'ranking'")["spearman"].min())
    1.0
    """
    from .. import pp

    levels = [check_fraction(f, name=f"fractions entry {f!r}; fraction") for f in fractions]
    if not levels:
        raise ValueError("fractions is empty; pass the shares of counts to remove, e.g. fractions=(0, 0.5, 0.9).")
    if int(n_top) < 1:
        raise ValueError(f"n_top={n_top} must be at least 1 (the size of the top-gene lists compared).")
    if int(n_shuffles) < 0:
        raise ValueError(f"n_shuffles={n_shuffles} must be 0 (no baseline) or more.")
    labels, chosen = group_labels(adata, groupby, groups)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    analysed = labels != ""  # only the cells of the chosen groups are thinned and attributed
    counts = counts_matrix(adata, layer)
    counts = counts[analysed] if not analysed.all() else counts
    labels = labels[analysed]
    check_counts(counts, where=where)
    order = sorted(set(levels) | {0.0})
    seeds = np.random.SeedSequence(random_state).spawn(len(order) + 1)
    shuffle_rng = np.random.default_rng(seeds[-1])
    n_cells = {g: int((labels == g).sum()) for g in chosen}

    import anndata as ad

    means: dict[float, dict[str, np.ndarray]] = {}
    in_model: np.ndarray | None = None
    start = time.perf_counter()
    with timed(f"downsampling stability of {len(chosen)} group(s) at {len(order)} levels ({method} attributions)"):
        for level, seed in zip(order, seeds[:-1], strict=False):
            thinned = thin_counts(counts, level, np.random.default_rng(seed), where=where)
            work = ad.AnnData(X=thinned, obs=pd.DataFrame(index=adata.obs_names[analysed]), var=adata.var.copy())
            pp.attributions(
                work, model, method=method, key_added=_ATTRIBUTION_KEY, progress=False, **attribution_options
            )
            if in_model is None:
                in_model = work.var[f"{_ATTRIBUTION_KEY}_in_model"].to_numpy(dtype=bool)
            means[level] = {
                "attribution": group_means(work.layers[_ATTRIBUTION_KEY], labels, chosen),
                "expression": group_means(log_normalise(thinned, target_sum), labels, chosen),
            }
            logger.info("    fraction %.2f done (%.0f s)", level, time.perf_counter() - start)

    reference_counts = group_means((as_csr_float32(counts) > 0).astype(np.float32), labels, chosen)
    rows: list[dict[str, Any]] = []
    for k, group in enumerate(chosen):
        genes = in_model & (reference_counts[k] > 0)
        for level in levels:
            for reads in READS:
                reference = means[0.0][reads][k, genes]
                values = means[level][reads][k, genes]
                spearman, overlap, shuffled_spearman, shuffled_overlap = compare_rankings(
                    reference, values, n_top=int(n_top), n_shuffles=int(n_shuffles), rng=shuffle_rng
                )
                common = {"group": group, "fraction": level, "reads": reads, "n_top": int(n_top)}
                extra = {"n_cells": n_cells[group], "n_genes": int(genes.sum())}
                rows.append({**common, "kind": RANKING, "spearman": spearman, "top_overlap": overlap, **extra})
                if n_shuffles:
                    rows.append(
                        {
                            **common,
                            "kind": SHUFFLED,
                            "spearman": shuffled_spearman,
                            "top_overlap": shuffled_overlap,
                            **extra,
                        }
                    )
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"group": str, "reads": str, "kind": str})
    store = adata.uns.setdefault("sigscan", {})
    store[key_added] = table
    store[f"{key_added}_params"] = {
        "groupby": groupby or "none",
        "fractions": [float(f) for f in levels],
        "method": method,
        "n_top": int(n_top),
        "layer": layer or "X",
        "n_shuffles": int(n_shuffles),
        "target_sum": float(target_sum),
        "random_state": int(random_state),
        "model": getattr(model, "name", type(model).__name__),
    }
    return table
