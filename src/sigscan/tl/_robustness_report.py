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
    """One section of the report: how to run the analysis, summarise its table and draw it."""

    name: str
    title: str
    description: str
    run: Callable[[ReportContext], pd.DataFrame]
    summarise: Callable[[pd.DataFrame], pd.DataFrame]
    plot: Callable[[pd.DataFrame], Any]


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
    part["reads"] = np.where(part["kind"] == "shuffled", part["reads"] + " (shuffled genes)", part["reads"])
    wide = part.groupby(["reads", "fraction"], sort=False)[["spearman", "top_overlap"]].mean().unstack("fraction")
    wide.columns = [f"{stat} @ {fraction:g}" for stat, fraction in wide.columns]
    ordered = sorted(wide.columns, key=lambda c: (float(c.split("@")[1]), c))
    return wide[ordered].reset_index()


def _plot_downsampling(table: pd.DataFrame) -> Any:
    from .. import pl

    return pl.downsampling_stability(table, show=False, return_fig=True)


#: the report's sections, in the order they are written; ``analyses=`` picks among their names
ANALYSES: dict[str, Analysis] = {
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
    for name in chosen:
        analysis = ANALYSES[name]
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
        pd.DataFrame({"step": list(timings), "seconds": [round(t, 1) for t in timings.values()]})
    )
    return report.write(out)
