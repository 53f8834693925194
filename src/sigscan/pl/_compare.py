"""Plots of scorer comparisons and score distributions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._docs import doc_params, doc_show_save_ax
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from anndata import AnnData


def _comparison_table(data: AnnData | pd.DataFrame, key: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    table = data.uns.get("sigscan", {}).get(key)
    if table is None:
        raise KeyError(f'No comparison in adata.uns["sigscan"][{key!r}]: run ss.tl.compare_scorers first.')
    return pd.DataFrame(table)


@doc_params(show_save_ax=doc_show_save_ax)
def compare_scorers(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "compare_scorers",
    classifiers: Sequence[str] | None = None,
    kind: Literal["heatmap", "bar"] = "heatmap",
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """F1 of each scorer per label, one panel per classifier.

    Parameters
    ----------
    adata
        The table returned by :func:`sigscan.tl.compare_scorers`, or an AnnData holding it in
        ``uns["sigscan"][key]``.
    key
        Key of the table in ``uns["sigscan"]``.
    classifiers
        Panels to draw (default: every classifier in the table).
    kind
        ``"heatmap"``: mean F1 per method × label, annotated; ``"bar"``: grouped bars with the standard deviation
        over splits.
    {show_save_ax}

    Returns
    -------
    The array of Axes (one per classifier), unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.toy(n_cells=200, n_genes=100)
    >>> _ = ss.tl.compare_scorers(adata, adata.uns["programs"], "group", methods=["ucell", "mean"], n_splits=3)
    >>> axes = ss.pl.compare_scorers(adata)
    >>> len(axes)
    2
    """
    table = _comparison_table(adata, key)
    panels = list(classifiers) if classifiers is not None else list(dict.fromkeys(table["classifier"]))
    missing = [c for c in panels if c not in set(table["classifier"])]
    if missing or not panels:
        raise ValueError(f"Classifiers {missing} are not in the table (it has {sorted(set(table['classifier']))}).")
    methods = list(dict.fromkeys(table["method"]))
    labels = list(dict.fromkeys(table["label"]))
    if figsize is None:
        figsize = (max(4.0, 0.9 * len(labels) + 2.5) * len(panels), 0.45 * len(methods) + 2.5)
    figure, axes = new_axes(ax, len(panels), figsize)
    for ax, classifier in zip(axes, panels, strict=True):
        part = table[table["classifier"] == classifier]
        means = part.pivot_table(index="method", columns="label", values="f1", aggfunc="mean").reindex(
            index=methods, columns=labels
        )
        if kind == "heatmap":
            image = ax.imshow(means.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(means.to_numpy(dtype=float)):
                if np.isfinite(value):
                    ax.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if value > 0.6 else "white",
                    )
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_yticks(range(len(methods)), methods)
            figure.colorbar(image, ax=ax, label="F1", shrink=0.8)
        elif kind == "bar":
            spread = part.pivot_table(index="method", columns="label", values="f1", aggfunc="std").reindex(
                index=methods, columns=labels
            )
            width = 0.8 / len(methods)
            for i, method in enumerate(methods):
                x = np.arange(len(labels)) + (i - (len(methods) - 1) / 2) * width
                ax.bar(x, means.loc[method], width, yerr=spread.loc[method].fillna(0), label=method, capsize=1.5)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("F1")
            ax.legend(fontsize=7, frameon=False)
        else:
            raise ValueError(f"Unknown kind {kind!r}; use 'heatmap' or 'bar'.")
        ax.set_title(f"F1 ({classifier})")
    return finish(figure, axes, show=show, save=save, return_fig=return_fig)


@doc_params(show_save_ax=doc_show_save_ax)
def score_distributions(
    adata: AnnData | pd.DataFrame,
    keys: str | Sequence[str],
    groupby: str,
    *,
    kind: Literal["violin", "density"] = "violin",
    order: Sequence[str] | None = None,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Distributions of one or more scores by group, as violins or densities.

    Parameters
    ----------
    adata
        AnnData (its ``obs``) or a DataFrame of cells.
    keys
        Score column(s); one panel each.
    groupby
        Column with the groups.
    kind
        ``"violin"`` or ``"density"`` (a Gaussian KDE per group).
    order
        Group order (default: categories, or sorted values).
    {show_save_ax}

    Returns
    -------
    The array of Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.toy(n_cells=200, n_genes=100)
    >>> ss.tl.score_genes(adata, adata.uns["programs"]["group0"], method="ucell")
    >>> axes = ss.pl.score_distributions(adata, "ucell_score", "group")
    >>> len(axes)
    1
    """
    frame = adata if isinstance(adata, pd.DataFrame) else adata.obs
    keys = [keys] if isinstance(keys, str) else list(keys)
    absent = [k for k in [*keys, groupby] if k not in frame]
    if absent:
        raise KeyError(f"Columns {absent} not found; available: {', '.join(map(str, frame.columns))}.")
    groups = frame[groupby]
    if order is None:
        order = (
            list(groups.cat.categories)
            if isinstance(groups.dtype, pd.CategoricalDtype)
            else sorted(map(str, groups.dropna().unique()))
        )
    order = [g for g in order if (groups.astype(str) == str(g)).any()]
    if figsize is None:
        figsize = (max(4.0, 0.6 * len(order) + 2) * len(keys), 3.8)
    figure, axes = new_axes(ax, len(keys), figsize)
    for ax, key in zip(axes, keys, strict=True):
        values = [
            pd.to_numeric(frame.loc[(groups.astype(str) == str(g)).to_numpy(), key], errors="coerce")
            .dropna()
            .to_numpy()
            for g in order
        ]
        if kind == "violin":
            drawable = [i for i, v in enumerate(values) if v.size > 1 and np.ptp(v) > 0]
            if drawable:
                ax.violinplot([values[i] for i in drawable], positions=drawable, showmedians=True, widths=0.8)
            for i, v in enumerate(values):
                if i not in drawable and v.size:
                    ax.scatter([i] * v.size, v, s=4, color="C0")
            ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
            ax.set_ylabel(key)
        elif kind == "density":
            from scipy.stats import gaussian_kde

            finite = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.zeros(1)
            grid = np.linspace(finite.min(), finite.max(), 200)
            for g, v in zip(order, values, strict=True):
                if v.size > 1 and np.ptp(v) > 0:
                    ax.plot(grid, gaussian_kde(v)(grid), label=str(g))
            ax.set_xlabel(key)
            ax.set_ylabel("density")
            ax.legend(fontsize=7, frameon=False)
        else:
            raise ValueError(f"Unknown kind {kind!r}; use 'violin' or 'density'.")
        ax.set_title(key)
    return finish(figure, axes, show=show, save=save, return_fig=return_fig)
