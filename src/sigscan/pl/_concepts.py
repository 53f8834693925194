"""Plots of concepts: mean activation per group (dot plot) and the top genes of one concept (bars)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._docs import doc_adata, doc_params, doc_show_save_ax
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from anndata import AnnData


def group_activations(adata: AnnData, groupby: str, *, key: str = "concepts") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean activation and fraction of active cells per group (groups × concepts), from ``adata.obsm[key]``."""
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {key!r}; run ss.tl.concepts(adata, …, key_added={key!r}) first.")
    if groupby not in adata.obs:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs.")
    codes = adata.obsm[key]
    codes = sparse.csr_matrix(codes) if not sparse.issparse(codes) else codes.tocsr()
    groups = pd.Categorical(adata.obs[groupby])
    present = groups.codes >= 0
    indicator = sparse.csr_matrix(
        (np.ones(int(present.sum())), (groups.codes[present], np.flatnonzero(present))),
        shape=(len(groups.categories), adata.n_obs),
    )
    sizes = np.asarray(indicator.sum(axis=1)).ravel()
    keep = sizes > 0
    sums = np.asarray((indicator @ codes).todense())
    active = np.asarray((indicator @ (codes > 0).astype(np.float64)).todense())
    index = pd.Index(groups.categories[keep].astype(str), name=groupby)
    columns = pd.RangeIndex(codes.shape[1], name="concept")
    mean = pd.DataFrame(sums[keep] / sizes[keep, None], index=index, columns=columns)
    fraction = pd.DataFrame(active[keep] / sizes[keep, None], index=index, columns=columns)
    return mean, fraction


def concept_order(mean: pd.DataFrame) -> list[int]:
    """Concepts (columns of ``mean``) active somewhere, ordered by their best group, then by activation there."""
    values = mean.to_numpy()
    used = np.flatnonzero(values.max(axis=0) > 0)
    best = values[:, used].argmax(axis=0)
    peak = values[:, used].max(axis=0)
    order = np.lexsort((-peak, best))
    return [int(mean.columns[used[i]]) for i in order]


@doc_params(adata=doc_adata, show_save_ax=doc_show_save_ax)
def concepts(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "concepts",
    concepts: list[int] | None = None,
    standard_scale: bool = True,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Dot plot of concept activations per group: colour the mean activation, size the fraction of active cells.

    Concepts are ordered by the group where their mean activation is highest (then by that mean), so that the
    concepts of each group form a block along the diagonal; concepts active in no cell are left out.

    Parameters
    ----------
    {adata}
    groupby
        ``adata.obs`` column with the groups.
    key
        The ``key_added`` of :func:`sigscan.tl.concepts`.
    concepts
        Concept indices to show (default: every concept active somewhere).
    standard_scale
        Scale each concept's mean activation to a maximum of 1 over the groups.
    {show_save_ax}

    Returns
    -------
    The Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=16)
    >>> ss.tl.concepts(adata, model, n_concepts=16, k=2, n_epochs=5)
    >>> ax = ss.pl.concepts(adata, "cell_type")
    """
    mean, fraction = group_activations(adata, groupby, key=key)
    order = concept_order(mean)
    if concepts is not None:
        wanted = [int(c) for c in np.atleast_1d(concepts)]
        bad = [c for c in wanted if c not in mean.columns]
        if bad:
            raise ValueError(f"Concepts {bad} are out of range; adata.obsm[{key!r}] has {mean.shape[1]} concepts.")
        order = [c for c in order if c in wanted] + [c for c in wanted if c not in order]
    if not order:
        raise ValueError(f"No concept is active in any cell of adata.obsm[{key!r}].")
    values = mean[order].to_numpy()
    if standard_scale:
        peak = values.max(axis=0)
        values = np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
    sizes = fraction[order].to_numpy()
    n_groups, n_shown = values.shape
    figure, (ax,) = new_axes(ax, 1, figsize or (max(4.0, 0.32 * n_shown + 2.5), max(2.5, 0.35 * n_groups + 1.5)))
    xs, ys = np.meshgrid(np.arange(n_shown), np.arange(n_groups))
    points = ax.scatter(
        xs.ravel(),
        ys.ravel(),
        s=250 * sizes.ravel() + 2,
        c=values.ravel(),
        cmap="Reds",
        vmin=0,
        edgecolors="0.6",
        linewidths=0.3,
    )
    ax.set_xticks(np.arange(n_shown), [str(c) for c in order], rotation=90, fontsize=8)
    ax.set_yticks(np.arange(n_groups), list(mean.index))
    ax.set_xlim(-0.7, n_shown - 0.3)
    ax.set_ylim(n_groups - 0.5, -0.5)
    ax.set_xlabel("concept")
    ax.set_ylabel(groupby)
    figure.colorbar(points, ax=ax, label="mean activation" + (" (scaled)" if standard_scale else ""), shrink=0.6)
    for fraction_shown in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=250 * fraction_shown + 2, c="0.5", label=f"{fraction_shown:.0%}")
    ax.legend(title="cells active", loc="upper left", bbox_to_anchor=(1.25, 1.0), frameon=False, labelspacing=1.2)
    return finish(figure, ax, show=show, save=save, return_fig=return_fig)


@doc_params(adata=doc_adata, show_save_ax=doc_show_save_ax)
def concept_genes(
    adata: AnnData,
    concept: int,
    *,
    key: str = "concepts",
    n_top: int = 20,
    fdr: float = 0.05,
    n_sets: int = 3,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """The genes that drive one concept (bars of their scores), with its best enrichment hits annotated.

    Reads the scores of :func:`sigscan.tl.concept_genes` and, when present, the table of
    :func:`sigscan.tl.concept_enrichment`: up to ``n_sets`` sets with FDR below ``fdr`` are listed in the corner, and
    the bars of their genes are drawn in a darker colour.

    Parameters
    ----------
    {adata}
    concept
        The concept index.
    key
        The ``key`` of :func:`sigscan.tl.concept_genes`.
    n_top
        Genes shown.
    fdr
        Enrichment hits below this FDR are annotated.
    n_sets
        At most this many hits are annotated.
    {show_save_ax}

    Returns
    -------
    The Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=16)
    >>> ss.tl.concepts(adata, model, n_concepts=16, k=2, n_epochs=5)
    >>> ss.tl.concept_genes(adata, model, concepts=[0], n_cells=10, progress=False)
    >>> ax = ss.pl.concept_genes(adata, 0)
    """
    varm_key = f"{key}_genes"
    if varm_key not in adata.varm:
        raise KeyError(f"adata.varm has no {varm_key!r}; run ss.tl.concept_genes(adata, model, key={key!r}) first.")
    scores_all = np.asarray(adata.varm[varm_key])
    if not isinstance(concept, int | np.integer) or not 0 <= concept < scores_all.shape[1]:
        raise ValueError(f"concept must be an index between 0 and {scores_all.shape[1] - 1}, not {concept!r}.")
    scores = scores_all[:, concept].astype(np.float64)
    if np.isnan(scores).all():
        raise ValueError(
            f"Concept {concept} has no gene scores yet; run ss.tl.concept_genes(adata, model, concepts=[{concept}])."
        )
    scores = np.nan_to_num(scores)
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[scores[order] > 0][:n_top]
    genes = adata.var_names[order].astype(str)
    hits = _enrichment_hits(adata, key, concept, fdr, n_sets)
    highlighted = {g for genes_of_set in hits["genes"] for g in str(genes_of_set).split(";") if g}
    figure, (ax,) = new_axes(ax, 1, figsize or (5.0, max(2.5, 0.25 * len(order) + 1.2)))
    colours = ["#a50f15" if g in highlighted else "#fc9272" for g in genes]
    ax.barh(np.arange(len(order)), scores[order], color=colours)
    ax.set_yticks(np.arange(len(order)), list(genes), fontsize=8)
    ax.invert_yaxis()
    method = adata.uns.get("sigscan", {}).get(f"{varm_key}_params", {}).get("method", "score")
    ax.set_xlabel(f"mean {method} score")
    ax.set_title(f"concept {concept}")
    if len(hits):
        text = "\n".join(f"{row.gene_set} (FDR {row.fdr:.1e})" for row in hits.itertuples())
        ax.text(
            0.98,
            0.02,
            text,
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
        )
    return finish(figure, ax, show=show, save=save, return_fig=return_fig)


def _enrichment_hits(adata: AnnData, key: str, concept: int, fdr: float, n_sets: int) -> pd.DataFrame:
    table = adata.uns.get("sigscan", {}).get(f"{key}_enrichment")
    if not isinstance(table, pd.DataFrame) or table.empty:
        return pd.DataFrame(columns=["gene_set", "fdr", "genes"])
    rows = table[(table["concept"] == concept) & (table["fdr"] < fdr)]
    return rows.sort_values("fdr", kind="stable").head(n_sets)
