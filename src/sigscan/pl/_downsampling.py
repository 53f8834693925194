"""Plot of gene-ranking stability under count thinning (the result of ``ss.tl.downsampling_stability``)."""

from __future__ import annotations

import os
from typing import Any

from .._docs import doc_params, doc_show_save_ax
from ._analyses import _table
from ._utils import finish, new_axes

_COLOURS = {"attribution": "#d62728", "expression": "#1f77b4"}
_PANELS = {"spearman": "Spearman vs fraction 0", "top_overlap": "top-n overlap vs fraction 0"}


@doc_params(show_save_ax=doc_show_save_ax)
def downsampling_stability(
    data: Any,
    *,
    key: str = "downsampling",
    groups: list[str] | None = None,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Spearman correlation and top-n overlap with the undownsampled gene ranking, against the fraction removed.

    One panel per statistic; a line per representation (attribution, expression; mean over the groups, the band spans the lowest and highest group)
    and, dashed, its shuffled-gene baseline.

    Parameters
    ----------
    data
        The table of :func:`sigscan.tl.downsampling_stability`, or the AnnData it was stored in.
    key
        Key in ``adata.uns["sigscan"]`` when ``data`` is an AnnData.
    groups
        Groups to include (default: all).
    {show_save_ax}

    Returns
    -------
    The two Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:60].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> _ = ss.tl.downsampling_stability(adata, model, fractions=(0, 0.5), method="ixg", n_shuffles=2)
    >>> axes = ss.pl.downsampling_stability(adata)
    """
    columns = ["group", "fraction", "reads", "kind", "spearman", "top_overlap"]
    table = _table(data, key, columns, "downsampling_stability")
    if groups is not None:
        table = table[table["group"].isin([str(g) for g in groups])]
        if table.empty:
            raise ValueError(f"none of groups {groups} is in the table; pass groups it holds or groups=None.")
    figure, axes = new_axes(ax, 2, figsize or (10.5, 3.6))
    n_top = int(table["n_top"].iloc[0]) if "n_top" in table and len(table) else None
    for ax_, (column, title) in zip(axes, _PANELS.items(), strict=True):
        for (reads, kind), part in table.groupby(["reads", "kind"], sort=True):
            shuffled = kind == "shuffled"
            summary = part.groupby("fraction")[column].agg(["mean", "min", "max"]).sort_index()
            colour = _COLOURS.get(str(reads))
            label = f"{reads} (shuffled genes)" if shuffled else str(reads)
            style = "--" if shuffled else "-"
            ax_.plot(summary.index, summary["mean"], style, color=colour, marker="o", ms=3, label=label)
            if not shuffled and part["group"].nunique() > 1:
                ax_.fill_between(summary.index, summary["min"], summary["max"], color=colour, alpha=0.15, lw=0)
        ax_.set_xlabel("fraction of counts removed")
        ax_.set_title(title.replace("top-n", f"top-{n_top}") if n_top else title)
        ax_.set_ylim(min(-0.05, float(table[column].min()) - 0.05), 1.05)
        ax_.grid(alpha=0.3)
    axes[0].set_ylabel("value (mean over groups)")
    axes[-1].legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(figure, axes, show=show, save=save, return_fig=return_fig)
