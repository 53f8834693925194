"""Plot of per-sample hit fractions (SPEC 3)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from .._docs import doc_params, doc_show_save_ax
from ._utils import finish, new_axes


@doc_params(show_save_ax=doc_show_save_ax)
def sample_hits(
    table: pd.DataFrame,
    *,
    groupby: str | None = None,
    hue: str | None = None,
    swarm: bool = True,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Boxplots of the per-sample hit fraction per group, groups ordered by mean hit fraction (highest first).

    Parameters
    ----------
    table
        The result of :func:`sigscan.tl.sample_hits`.
    groupby
        Column with the groups (default: the one recorded by :func:`~sigscan.tl.sample_hits`).
    hue
        A sample-level column (e.g. ``"condition"``) splitting each group into side-by-side boxes.
    swarm
        Overlay one jittered point per sample.
    {show_save_ax}

    Returns
    -------
    The Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.toy(n_cells=300)
    >>> ss.tl.score_genes(adata, adata.uns["programs"]["group0"], method="mean", key_added="program0")
    >>> ss.tl.hits(adata, "program0", percentile=80)
    >>> table = ss.tl.sample_hits(adata, "program0_hit", sample_key="sample", groupby="group", min_cells=5)
    >>> ax = ss.pl.sample_hits(table)
    """
    if "hit_fraction" not in table:
        raise KeyError("table has no 'hit_fraction' column: pass the result of ss.tl.sample_hits.")
    groupby = groupby or table.attrs.get("sigscan", {}).get("groupby")
    frame = table.copy()
    if groupby is None:
        groupby = "_group"
        frame[groupby] = "all"
    if groupby not in frame:
        raise KeyError(f"groupby={groupby!r} is not a column of the table.")
    if hue is not None and hue not in frame:
        raise KeyError(f"hue={hue!r} is not a column of the table.")
    order = frame.groupby(groupby, observed=True)["hit_fraction"].mean().sort_values(ascending=False).index.tolist()
    levels = list(dict.fromkeys(frame[hue])) if hue is not None else [None]
    figure, (ax,) = new_axes(ax, 1, figsize or (max(4.0, 0.8 * len(order) * len(levels) + 2), 3.8))
    width = 0.8 / len(levels)
    rng = np.random.default_rng(0)
    for j, level in enumerate(levels):
        part = frame if level is None else frame[frame[hue] == level]
        offset = (j - (len(levels) - 1) / 2) * width
        data = [part.loc[part[groupby] == g, "hit_fraction"].to_numpy(dtype=float) for g in order]
        positions = np.arange(len(order)) + offset
        kept = [i for i, d in enumerate(data) if d.size]
        if kept:
            boxes = ax.boxplot(
                [data[i] for i in kept],
                positions=positions[kept],
                widths=width * 0.85,
                patch_artist=True,
                showfliers=not swarm,
                manage_ticks=False,
            )
            for patch in boxes["boxes"]:
                patch.set_facecolor(f"C{j}")
                patch.set_alpha(0.5)
        if swarm:
            for i in kept:
                jitter = rng.uniform(-width * 0.25, width * 0.25, data[i].size)
                ax.scatter(
                    positions[i] + jitter, data[i], s=10, color=f"C{j}", edgecolor="black", linewidth=0.3, zorder=3
                )
        if level is not None:
            ax.plot([], [], color=f"C{j}", linewidth=6, alpha=0.5, label=str(level))
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_ylabel("hit fraction per sample")
    if hue is not None:
        ax.legend(title=hue, fontsize=7, frameon=False)
    return finish(figure, ax, show=show, save=save, return_fig=return_fig)
