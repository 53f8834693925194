"""Plots of the paper's analyses (SPEC 5.1): QC correlation, rank percentiles, cell-cycle contrast, factor tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._docs import doc_params, doc_show_save_ax
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from anndata import AnnData

doc_table = """\
adata
    The table returned by the matching ``ss.tl`` function, or an AnnData holding it in ``uns["sigscan"][key]``.
key
    Key of the table in ``uns["sigscan"]``."""


def _table(data: AnnData | pd.DataFrame, key: str, columns: Sequence[str], tool: str) -> pd.DataFrame:
    """The result table from a DataFrame or ``adata.uns["sigscan"][key]``; wrong input names the tool to run."""
    if isinstance(data, pd.DataFrame):
        table = data
    else:
        table = getattr(data, "uns", {}).get("sigscan", {}).get(key)
        if table is None:
            raise KeyError(f'No table in adata.uns["sigscan"][{key!r}]: run ss.tl.{tool} first (or pass key=).')
        table = pd.DataFrame(table)
    missing = [c for c in columns if c not in table]
    if missing:
        raise KeyError(f"The table lacks columns {missing}: pass the result of ss.tl.{tool}.")
    if table.empty:
        raise ValueError(f"The ss.tl.{tool} table is empty; nothing to draw.")
    return table


def _series(table: pd.DataFrame) -> list[str]:
    """One series per method (or layer) in table order."""
    column = "method" if "method" in table else "layer"
    return list(dict.fromkeys(table[column].astype(str)))


def _grouped_bars(
    ax: Any,
    table: pd.DataFrame,
    *,
    x: str,
    series: str,
    value: str,
    spread: str | None,
    order: Sequence[str],
) -> None:
    """Observed values as solid bars and the shuffled baseline as hatched bars (± its spread), per x and series."""
    names = list(dict.fromkeys(table[series].astype(str)))
    kinds = [k for k in ("gene_set", "shuffled") if (table["kind"] == k).any()]
    width = 0.8 / (len(names) * len(kinds))
    for i, name in enumerate(names):
        for j, kind in enumerate(kinds):
            part = table[(table[series].astype(str) == name) & (table["kind"] == kind)].set_index(x)
            heights = part[value].reindex(order).to_numpy(dtype=float)
            errors = part[spread].reindex(order).to_numpy(dtype=float) if spread and kind == "shuffled" else None
            offset = (i * len(kinds) + j - (len(names) * len(kinds) - 1) / 2) * width
            ax.bar(
                np.arange(len(order)) + offset,
                np.nan_to_num(heights),
                width,
                yerr=None if errors is None else np.nan_to_num(errors),
                color=f"C{i}",
                alpha=1.0 if kind == "gene_set" else 0.45,
                hatch=None if kind == "gene_set" else "//",
                edgecolor="black" if kind == "shuffled" else None,
                linewidth=0.4,
                capsize=1.5,
                label=name if kind == "gene_set" else f"{name} (shuffled genes)",
            )
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.legend(fontsize=7, frameon=False)


@doc_params(table=doc_table, show_save_ax=doc_show_save_ax)
def qc_correlation(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "qc_correlation",
    qc: Sequence[str] | str | None = None,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Absolute Spearman correlation between set scores and QC metrics per group: one panel per metric, bars per method and baseline.

    Parameters
    ----------
    {table}
    qc
        QC metrics to draw, one panel each (default: all in the table).
    {show_save_ax}

    Returns
    -------
    The array of Axes (one per QC metric), unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:400].copy()
    >>> sets = {{"B cells": ["CD79A", "CD79B", "MS4A1"], "NK cells": ["GNLY", "NKG7", "PRF1"]}}
    >>> _ = ss.tl.qc_correlation(adata, sets, groupby="cell_type", methods=["mean"], n_shuffles=3)
    >>> len(ss.pl.qc_correlation(adata))
    3
    """
    table = _table(adata, key, ["group", "method", "kind", "qc", "abs_spearman"], "qc_correlation")
    panels = [qc] if isinstance(qc, str) else list(qc) if qc is not None else list(dict.fromkeys(table["qc"]))
    missing = [q for q in panels if q not in set(table["qc"])]
    if missing or not panels:
        raise ValueError(f"QC metrics {missing} are not in the table (it has {sorted(set(table['qc']))}).")
    order = list(dict.fromkeys(table["group"].astype(str)))
    if figsize is None:
        figsize = (max(4.0, 0.9 * len(order) + 2) * len(panels), 3.8)
    figure, axes = new_axes(ax, len(panels), figsize)
    for ax, metric in zip(axes, panels, strict=True):
        part = table[table["qc"] == metric]
        _grouped_bars(ax, part, x="group", series="method", value="abs_spearman", spread="abs_spearman_sd", order=order)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"|Spearman| with {metric}")
    return finish(figure, axes, show=show, save=save, return_fig=return_fig)


@doc_params(table=doc_table, show_save_ax=doc_show_save_ax)
def rank_percentiles(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "rank_percentiles",
    families: Sequence[str] | None = None,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Mean within-cell rank percentile per gene family: one point per group, the mean as a bar, per layer.

    The shuffled-gene-label baseline of each layer is the dashed line over its bar.

    Parameters
    ----------
    {table}
    families
        Families to draw, in order (default: all in the table).
    {show_save_ax}

    Returns
    -------
    The Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:500].copy()
    >>> _ = ss.tl.rank_percentiles(adata, ["ribosomal", "mitochondrial"], groupby="cell_type", n_shuffles=2)
    >>> ax = ss.pl.rank_percentiles(adata)
    """
    table = _table(adata, key, ["group", "family", "layer", "kind", "mean_percentile"], "rank_percentiles")
    order = list(families) if families is not None else list(dict.fromkeys(table["family"]))
    missing = [f for f in order if f not in set(table["family"])]
    if missing or not order:
        raise ValueError(f"Families {missing} are not in the table (it has {sorted(set(table['family']))}).")
    layers = list(dict.fromkeys(table["layer"].astype(str)))
    figure, (ax,) = new_axes(ax, 1, figsize or (max(4.0, 1.1 * len(order) * len(layers) + 2), 3.8))
    width = 0.8 / len(layers)
    rng = np.random.default_rng(0)
    for i, layer in enumerate(layers):
        part = table[table["layer"].astype(str) == layer]
        observed = part[part["kind"] == "gene_set"]
        shuffled = part[part["kind"] == "shuffled"]
        x = np.arange(len(order)) + (i - (len(layers) - 1) / 2) * width
        means = observed.groupby("family")["mean_percentile"].mean().reindex(order).to_numpy(dtype=float)
        ax.bar(x, np.nan_to_num(means), width * 0.9, color=f"C{i}", alpha=0.6, label=layer)
        for k, family in enumerate(order):
            values = observed.loc[observed["family"] == family, "mean_percentile"].to_numpy(dtype=float)
            jitter = rng.uniform(-width * 0.25, width * 0.25, values.size)
            ax.scatter(x[k] + jitter, values, s=9, color=f"C{i}", edgecolor="black", linewidth=0.3, zorder=3)
            base = shuffled.loc[shuffled["family"] == family, "mean_percentile"].to_numpy(dtype=float)
            if base.size and np.isfinite(base).any():
                level = float(np.nanmean(base))
                ax.plot([x[k] - width * 0.45, x[k] + width * 0.45], [level, level], "k--", linewidth=1, zorder=4)
    if (table["kind"] == "shuffled").any():
        ax.plot([], [], "k--", linewidth=1, label="shuffled genes")
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.set_ylim(0, 102)
    ax.set_ylabel("mean rank percentile in cell")
    ax.legend(fontsize=7, frameon=False)
    return finish(figure, ax, show=show, save=save, return_fig=return_fig)


@doc_params(table=doc_table, show_save_ax=doc_show_save_ax)
def cell_cycle_contrast(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "cell_cycle",
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Log2 fold change of each phase's score in its annotated cells: bars per method next to the shuffled baseline.

    Parameters
    ----------
    {table}
    {show_save_ax}

    Returns
    -------
    The Axes, unless ``show=True``.

    Examples
    --------
    >>> import numpy as np
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:600].copy()
    >>> adata.obs["phase"] = np.where(adata.obs_names.isin(adata.obs_names[::10]), "G2M", "G1")
    >>> _ = ss.tl.cell_cycle_contrast(adata, phase_key="phase", methods=["mean"], n_shuffles=3)
    >>> ax = ss.pl.cell_cycle_contrast(adata)
    """
    table = _table(adata, key, ["phase", "method", "kind", "log2fc"], "cell_cycle_contrast")
    order = list(dict.fromkeys(table["phase"].astype(str)))
    figure, (ax,) = new_axes(ax, 1, figsize or (max(3.5, 1.6 * len(order) * len(_series(table)) + 1.5), 3.6))
    frame = table.assign(phase=table["phase"].astype(str))
    _grouped_bars(ax, frame, x="phase", series="method", value="log2fc", spread="log2fc_sd", order=order)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("log2 fold change, phase vs other cells")
    ax.set_xticks(range(len(order)), [f"{p} score in {p} cells" for p in order], rotation=0, ha="center")
    return finish(figure, ax, show=show, save=save, return_fig=return_fig)


@doc_params(table=doc_table, show_save_ax=doc_show_save_ax)
def factor_specificity(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "factor_specificity",
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Any:
    """Pass rate per representation (left) and each run's worst-comparison -log10 p with the Bonferroni bound (right).

    Parameters
    ----------
    {table}
    {show_save_ax}

    Returns
    -------
    The array of two Axes, unless ``show=True``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.kang_ifnb()[:, :300].copy()
    >>> _ = ss.tl.factor_specificity(adata, "B cells", batch_key="donor", n_factors=4, reads=["expression"])
    >>> len(ss.pl.factor_specificity(adata))
    2
    """
    table = _table(adata, key, ["reads", "layer", "p_value", "threshold", "passes"], "factor_specificity")
    labels = list(dict.fromkeys(table["reads"].astype(str) + ": " + table["layer"].astype(str)))
    table = table.assign(series=table["reads"].astype(str) + ": " + table["layer"].astype(str))
    figure, axes = new_axes(ax, 2, figsize or (max(6.0, 2.2 * len(labels) + 3), 3.6))
    rates = table.groupby("series", sort=False)["passes"].agg(["mean", "sum", "size"]).reindex(labels)
    left, right = axes
    left.bar(range(len(labels)), rates["mean"], color=[f"C{i}" for i in range(len(labels))])
    for i, (_, row) in enumerate(rates.iterrows()):
        left.text(i, row["mean"] + 0.02, f"{int(row['sum'])}/{int(row['size'])}", ha="center", fontsize=7)
    left.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    left.set_ylim(0, 1.1)
    left.set_ylabel("pass rate (Bonferroni)")
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        part = table[table["series"] == label]
        values = -np.log10(np.clip(part["p_value"].to_numpy(dtype=float), 1e-300, 1))
        right.scatter(i + rng.uniform(-0.15, 0.15, values.size), values, s=12, color=f"C{i}", edgecolor="black")
    bound = -np.log10(float(table["threshold"].iloc[0]))
    right.axhline(bound, color="black", linestyle="--", linewidth=1, label="Bonferroni bound")
    right.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    right.set_ylabel("-log10 p, worst comparison")
    right.legend(fontsize=7, frameon=False)
    return finish(figure, axes, show=show, save=save, return_fig=return_fig)
