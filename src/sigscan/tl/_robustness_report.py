"""``ss.tl.robustness_report``: the SPEC 5.1 analyses in one call, written as one report (markdown + HTML)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._docs import doc_adata, doc_params
from .._logging import logger
from .._report import Report
from ._downsampling import DEFAULT_FRACTIONS

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel


@dataclass
class ReportContext:
    """Everything the analyses of one report share, resolved once by :func:`robustness_report`."""

    adata: AnnData
    model: AttributionModel
    gene_sets: dict[str, list[str]]
    groupby: str
    attribution_layer: str
    counts_layer: str | None
    method: str
    fractions: tuple[float, ...]
    n_shuffles: int
    phase_key: str | None
    random_state: int
    attribution_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    """One section of the report: how to run the analysis, summarise its table and draw it.

    ``skip`` says why the analysis does not apply to a context (``None``: it applies).
    """

    name: str
    title: str
    description: str
    run: Callable[[ReportContext], pd.DataFrame]
    summarise: Callable[[pd.DataFrame], pd.DataFrame]
    plot: Callable[[pd.DataFrame], Any]
    skip: Callable[[ReportContext], str | None] = lambda context: None


def _label(reads: pd.Series, kind: pd.Series) -> np.ndarray:
    """``"attribution"``, ``"mean"``, … with `` (shuffled genes)`` for the baseline rows."""
    return np.where(kind == "shuffled", reads.astype(str) + " (shuffled genes)", reads.astype(str))


def _columns_in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Observed columns first, each followed by its shuffled baseline."""
    observed = [c for c in frame.columns if not str(c).endswith("(shuffled genes)")]
    ordered = []
    for column in observed:
        ordered += [column] + [c for c in frame.columns if c == f"{column} (shuffled genes)"]
    ordered += [c for c in frame.columns if c not in ordered]
    return frame[ordered]


# --- QC correlation -------------------------------------------------------------------------------------------------


def _run_qc(context: ReportContext) -> pd.DataFrame:
    from ._analyses import qc_correlation

    return qc_correlation(
        context.adata,
        context.gene_sets,
        groupby=context.groupby,
        methods=("attribution", "mean"),
        layer=context.attribution_layer,
        counts_layer=context.counts_layer,
        n_shuffles=context.n_shuffles,
        random_state=context.random_state,
    )


def qc_summary(table: pd.DataFrame) -> pd.DataFrame:
    """|Spearman| with each QC metric per group (rows) and method (columns, shuffled baseline beside each)."""
    part = table.assign(method=_label(table["method"], table["kind"]))
    blocks = []
    for qc, rows in part.groupby("qc", sort=False):
        wide = rows.pivot_table(index="group", columns="method", values="abs_spearman", sort=False)
        wide.loc["mean over groups"] = wide.mean()
        blocks.append(wide.reset_index().assign(qc=qc))
    frame = pd.concat(blocks, ignore_index=True)
    return _columns_in_order(frame[["qc", *[c for c in frame.columns if c != "qc"]]])


# --- within-cell ranks ----------------------------------------------------------------------------------------------


def _run_ranks(context: ReportContext) -> pd.DataFrame:
    from ._analyses import rank_percentiles

    families: dict[str, Any] = {}
    groups = set(context.adata.obs[context.groupby].astype(str))
    markers = {group: genes for group, genes in context.gene_sets.items() if group in groups}
    if markers:
        families["markers (gene sets)"] = markers
    families.update({name: name for name in ("ribosomal", "mitochondrial", "transcription_factors")})
    return rank_percentiles(
        context.adata,
        families,
        groupby=context.groupby,
        layers=[context.attribution_layer, context.counts_layer or "X"],
        n_shuffles=context.n_shuffles,
        random_state=context.random_state,
    )


def ranks_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over groups of each family's mean rank percentile, per representation (shuffled baseline beside)."""
    part = table.assign(reads=_label(table["reads"], table["kind"]))
    wide = part.pivot_table(index="family", columns="reads", values="mean_percentile", sort=False)
    return _columns_in_order(wide).reset_index()


# --- cell cycle -----------------------------------------------------------------------------------------------------


def _run_cell_cycle(context: ReportContext) -> pd.DataFrame:
    from ._analyses import cell_cycle_contrast

    return cell_cycle_contrast(
        context.adata,
        phase_key=str(context.phase_key),
        layer=context.attribution_layer,
        methods=("attribution", "mean"),
        n_shuffles=context.n_shuffles,
        random_state=context.random_state,
    )


def cell_cycle_summary(table: pd.DataFrame) -> pd.DataFrame:
    """log2 fold change of each phase's score per method (shuffled baseline beside)."""
    part = table.assign(method=_label(table["method"], table["kind"]))
    wide = part.pivot_table(index="phase", columns="method", values="log2fc", sort=False)
    return _columns_in_order(wide).reset_index()


def _skip_cell_cycle(context: ReportContext) -> str | None:
    if context.phase_key is None:
        return "no cell-cycle phase labels (pass phase_key=, or --phase-key, naming the obs column with G2M/S/G1)"
    return None


# --- downsampling ---------------------------------------------------------------------------------------------------


def _run_downsampling(context: ReportContext) -> pd.DataFrame:
    from ._downsampling import downsampling_stability

    return downsampling_stability(
        context.adata,
        context.model,
        fractions=context.fractions,
        groupby=context.groupby,
        method=context.method,
        layer=context.counts_layer,
        n_shuffles=context.n_shuffles,
        random_state=context.random_state,
        **context.attribution_options,
    )


def downsampling_summary(table: pd.DataFrame, fractions: Sequence[float] | None = None) -> pd.DataFrame:
    """Mean over groups of Spearman and top-n overlap at the chosen fractions (default: 0.5 and 0.9 if present).

    One row per representation (``reads``), and per representation's shuffled-gene baseline.
    """
    present = sorted(set(table["fraction"]))
    if fractions is None:
        fractions = [f for f in (0.5, 0.9) if f in present] or [f for f in present if f > 0][-1:] or present
    part = table[table["fraction"].isin(list(fractions))].copy()
    part["reads"] = _label(part["reads"], part["kind"])
    wide = part.groupby(["reads", "fraction"], sort=False)[["spearman", "top_overlap"]].mean().unstack("fraction")
    wide.columns = [f"{stat} @ {fraction:g}" for stat, fraction in wide.columns]
    ordered = sorted(wide.columns, key=lambda c: (float(c.split("@")[1]), c))
    return wide[ordered].reset_index()


def _plot_downsampling(table: pd.DataFrame) -> Any:
    return _plot("downsampling_stability", table)


def _plot(name: str, table: pd.DataFrame) -> Any:
    """The figure of ``ss.pl.<name>`` for the table."""
    from .. import pl

    return getattr(pl, name)(table, show=False, return_fig=True)


#: the report's sections, in the order they are written; ``analyses=`` picks among their names
ANALYSES: dict[str, Analysis] = {
    "qc_correlation": Analysis(
        name="qc_correlation",
        title="QC correlation: do scores follow sequencing depth?",
        description=(
            "Per cell type with a marker set, |Spearman| over its cells between the set score and each QC metric "
            "(from the raw counts, scanpy's `calculate_qc_metrics` names). `attribution` is the mean attribution of "
            "the set's genes, `mean` their mean log-normalised expression; the shuffled columns average random "
            "relabellings of the genes. Lower is better: the score follows biology rather than depth."
        ),
        run=_run_qc,
        summarise=qc_summary,
        plot=lambda table: _plot("qc_correlation", table),
    ),
    "rank_percentiles": Analysis(
        name="rank_percentiles",
        title="Within-cell ranks of gene families",
        description=(
            "In each cell the non-zero values are ranked 0–100; per cell type, each gene's mean percentile over the "
            "cells where it is detected, averaged over a family's genes, then over cell types. Markers (the marker "
            "sets given) and transcription factors should rank high, ribosomal and mitochondrial genes low. "
            "`expression` ranks the counts (ranks are the same after log-normalisation)."
        ),
        run=_run_ranks,
        summarise=ranks_summary,
        plot=lambda table: _plot("rank_percentiles", table),
    ),
    "downsampling": Analysis(
        name="downsampling",
        title="Downsampling: gene-ranking stability under thinned counts",
        description=(
            "Counts thinned binomially (each count kept with probability 1 − fraction), attributions recomputed, and "
            "each group's genes ranked by mean attribution (and by mean log-normalised expression); Spearman "
            "correlation and top-50 overlap with the undownsampled ranking, mean over groups. The shuffled rows "
            "permute the thinned ranking's gene labels (chance level)."
        ),
        run=_run_downsampling,
        summarise=downsampling_summary,
        plot=_plot_downsampling,
    ),
    "cell_cycle": Analysis(
        name="cell_cycle",
        title="Cell cycle: G2/M and S scores in annotated phases",
        description=(
            "log2 fold change of the Tirosh G2/M (S) score — the mean value of its genes — in cells annotated G2M "
            "(S) against all other cells; attribution and mean log-normalised expression, and the shuffled-gene "
            "baseline. Larger is better."
        ),
        run=_run_cell_cycle,
        summarise=cell_cycle_summary,
        plot=lambda table: _plot("cell_cycle_contrast", table),
        skip=_skip_cell_cycle,
    ),
}


@doc_params(adata=doc_adata)
def robustness_report(
    adata: AnnData,
    model: AttributionModel,
    gene_sets: Mapping[str, Sequence[str]] | str | os.PathLike,
    *,
    groupby: str,
    out: str | os.PathLike,
    analyses: Sequence[str] | None = None,
    method: Literal["ig", "dl", "ixg"] = "ig",
    counts_layer: str | None = None,
    attribution_layer: str | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    phase_key: str | None = None,
    n_shuffles: int = 25,
    random_state: int = 0,
    title: str = "sigscan robustness report",
    **attribution_options: Any,
) -> Path:
    """Run the SPEC 5.1 analyses on one dataset and model and write one report with their tables and figures.

    Attributions are computed once (unless ``attribution_layer`` names existing ones); each analysis then runs with
    its defaults, its table is stored in ``adata.uns["sigscan"]`` (as the analysis itself does) and written as CSV
    into ``out``, and ``out/report.md`` (with PNG figures) and the self-contained ``out/report.html`` summarise
    them: attribution, expression and the shuffled-gene baseline side by side, with each analysis' wall time.

    Parameters
    ----------
    {adata}
        Raw counts in ``X`` or in ``counts_layer``.
    model
        A model wrapper from :mod:`sigscan.models`.
    gene_sets
        Marker sets: a mapping (or GMT file) whose set names are values of ``groupby``.
    groupby
        obs column with the cell types.
    out
        Output folder (created).
    analyses
        Names of the analyses to run, a subset of :data:`ANALYSES` (default: all that apply).
    method
        Attribution method of :func:`sigscan.pp.attributions`.
    counts_layer
        Layer holding raw counts (``None``: ``X``).
    attribution_layer
        An existing attribution layer to use instead of computing one.
    fractions
        Levels of the downsampling analysis.
    phase_key
        obs column with cell-cycle phases (``"G1"``, ``"S"``, ``"G2M"``) for the cell-cycle contrast.
    n_shuffles
        Gene-label relabellings of the shuffled baselines.
    random_state
        Seed of every random step.
    title
        The report's title.
    **attribution_options
        Passed to :func:`sigscan.pp.attributions` (e.g. ``n_steps``, ``batch_size``, ``device``).

    Returns
    -------
    The path of ``report.html``. Writes the attribution layer (when computed) and the analyses' tables into
    ``adata``; ``X`` and the counts are not changed.

    Examples
    --------
    >>> import tempfile
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:80].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    >>> sets = {{"B cells": ["CD79A", "MS4A1"], "NK cells": ["GNLY", "NKG7"]}}
    >>> page = ss.tl.robustness_report(
    ...     adata, model, sets, groupby="cell_type", out=tempfile.mkdtemp(), analyses=["downsampling"],
    ...     fractions=(0, 0.5), method="ixg", n_shuffles=2,
    ... )
    >>> page.name
    'report.html'
    """
    import matplotlib.pyplot as plt

    from .. import pp
    from .._attribution_layer import attribution_layer as find_attribution_layer
    from .._gene_sets import read_gene_sets

    chosen = list(ANALYSES) if analyses is None else list(analyses)
    unknown = [name for name in chosen if name not in ANALYSES]
    if unknown or not chosen:
        raise ValueError(f"analyses {unknown or chosen}: choose among {', '.join(ANALYSES)}.")
    if groupby not in adata.obs:
        raise KeyError(
            f"groupby={groupby!r} is not an obs column; available: {', '.join(map(str, adata.obs.columns))}."
        )
    if phase_key is not None and phase_key not in adata.obs:
        raise KeyError(f"phase_key={phase_key!r} is not an obs column; pass the column with the cell-cycle phases.")
    sets = read_gene_sets(gene_sets, name="gene_sets")
    timings: dict[str, float] = {}
    if attribution_layer is None:
        start = time.perf_counter()
        key = f"attr_{model.name}_{method}"
        pp.attributions(
            adata, model, method=method, layer=counts_layer, key_added=key, progress=False, **attribution_options
        )
        timings["attributions"] = time.perf_counter() - start
        attribution_layer = key
    else:
        attribution_layer = find_attribution_layer(adata, attribution_layer)
    context = ReportContext(
        adata=adata,
        model=model,
        gene_sets=sets,
        groupby=groupby,
        attribution_layer=attribution_layer,
        counts_layer=counts_layer,
        method=method,
        fractions=tuple(float(f) for f in fractions),
        n_shuffles=int(n_shuffles),
        phase_key=phase_key,
        random_state=int(random_state),
        attribution_options=dict(attribution_options),
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(title)
    report.text(
        f"{adata.n_obs} cells × {adata.n_vars} genes, groups from `obs[{groupby!r}]`; model `{model.name}` "
        f"({model.n_genes} genes), `{method}` attributions in layer `{attribution_layer}`; shuffled baselines over "
        f"{n_shuffles} gene-label relabellings; random_state {random_state}."
    )
    skipped = {name: ANALYSES[name].skip(context) for name in chosen}
    asked = [name for name in chosen if skipped[name] is not None and analyses is not None]
    if asked:
        raise ValueError(f"analysis {asked[0]!r} cannot run: {skipped[asked[0]]}.")
    for name in chosen:
        analysis = ANALYSES[name]
        if skipped[name] is not None:
            report.heading(analysis.title).text(f"Not run: {skipped[name]}.")
            continue
        logger.info("robustness report: %s", name)
        start = time.perf_counter()
        table = analysis.run(context)
        timings[name] = time.perf_counter() - start
        table.to_csv(out / f"{name}.csv", index=False)
        figure = analysis.plot(table)
        report.heading(analysis.title).text(analysis.description).table(analysis.summarise(table))
        report.figure(figure, f"{name}.png", analysis.title).text(f"Full table: `{name}.csv`.")
        plt.close(figure)
    report.heading("Wall time (seconds)").table(
        pd.DataFrame({"step": list(timings), "seconds": [f"{t:.1f}" for t in timings.values()]})
    )
    return report.write(out)
