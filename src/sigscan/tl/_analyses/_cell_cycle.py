"""``ss.tl.cell_cycle_contrast``: how much higher the G2/M (and S) score is in cells annotated in that phase."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..._docs import doc_adata, doc_params
from ..._gene_sets import read_gene_sets
from ..._logging import logger, timed
from .._score_genes import match_gene_sets
from . import _common
from ._common import OBSERVED, SHUFFLED

if TYPE_CHECKING:
    from anndata import AnnData

COLUMNS = [
    "phase",
    "gene_set",
    "method",
    "reads",
    "layer",
    "kind",
    "log2fc",
    "log2fc_sd",
    "mean_in_phase",
    "mean_other",
    "n_cells_phase",
    "n_cells_other",
    "n_genes",
    "n_shuffles",
]


def tirosh_sets() -> tuple[list[str], list[str]]:
    """The Tirosh et al. 2016 G2/M and S genes bundled with sigscan."""
    from ...datasets import gene_sets

    sets = gene_sets("tirosh_cell_cycle")
    return sets["TIROSH2016_G2M_PHASE"], sets["TIROSH2016_S_PHASE"]


def log2_ratio(inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """``log2(inside / outside)`` where both means are positive, else NaN."""
    inside = np.asarray(inside, dtype=np.float64)
    outside = np.asarray(outside, dtype=np.float64)
    ok = (inside > 0) & (outside > 0)
    out = np.full(np.broadcast(inside, outside).shape, np.nan)
    np.log2(np.divide(inside, outside, out=np.ones_like(out), where=ok), out=out, where=ok)
    return out


def _phase_set(genes: Any, default_name: str, default: list[str], name: str) -> tuple[str, list[str]]:
    """``(set name, genes)``: the default set, or the one set that ``genes`` gives."""
    if genes is None:
        return default_name, list(default)
    sets = read_gene_sets(genes, name=name)
    if len(sets) != 1:
        raise ValueError(f"{name} holds {len(sets)} gene sets; pass one list of genes or 'file.gmt:SET'.")
    return next(iter(sets.items()))


@doc_params(adata=doc_adata, shuffles=_common.doc_shuffles)
def cell_cycle_contrast(
    adata: AnnData,
    *,
    phase_key: str,
    g2m_genes: Sequence[str] | str | None = None,
    s_genes: Sequence[str] | str | None = None,
    layer: str | None = None,
    methods: Sequence[str] = ("attribution", "mean"),
    g2m_label: str = "G2M",
    s_label: str | None = "S",
    n_shuffles: int = 25,
    random_state: int = 0,
    expression_layer: str | None = None,
    key_added: str = "cell_cycle",
) -> pd.DataFrame:
    """Log2 fold change of the G2/M (and S) score in cells annotated in that phase against all other cells.

    The score of a phase is the mean value of its genes (``"attribution"``: mean attribution; ``"mean"``: mean
    log-normalised expression; any registered scorer works). The fold change is ``log2(mean score of the phase's
    cells / mean score of all other cells)`` (NaN when a mean is not positive), next to the same for random
    relabellings of the genes. A representation that carries the cell-cycle signal gives a large positive value.

    Parameters
    ----------
    {adata}
    phase_key
        ``obs`` column with the annotated phase of each cell (e.g. from imaging, or from
        :func:`scanpy.tl.score_genes_cell_cycle`).
    g2m_genes, s_genes
        The G2/M and S gene sets (lists, or ``"file.gmt:SET"``); default: Tirosh et al. 2016
        (``ss.datasets.gene_sets("tirosh_cell_cycle")``).
    layer
        Attribution layer (``None``: the single one present).
    methods
        Scorers (see :func:`sigscan.tl.score_genes`).
    g2m_label, s_label
        Values of ``obs[phase_key]`` marking G2/M and S cells (``s_label=None``: G2/M only; an S label without cells
        is skipped with a warning).
    {shuffles}
    expression_layer
        Layer the expression scorers read (``None``: ``X``; counts are log-normalised on the fly).
    key_added
        Key in ``adata.uns["sigscan"]`` for the table.

    Returns
    -------
    Tidy table, one row per phase × method × kind: ``phase``, ``gene_set``, ``method``, ``reads``, ``layer``,
    ``kind`` (``"gene_set"`` or ``"shuffled"``), ``log2fc`` (for the baseline the mean over relabellings),
    ``log2fc_sd`` (its standard deviation over relabellings), ``mean_in_phase``, ``mean_other``, ``n_cells_phase``,
    ``n_cells_other``, ``n_genes``, ``n_shuffles``. ``X`` and the layers are not modified.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:600].copy()
    >>> s, g2m = ss.datasets.gene_sets("tirosh_cell_cycle").values()  # S phase first, then G2/M
    >>> lognorm = sc.pp.log1p(sc.pp.normalize_total(adata, inplace=False)["X"])
    >>> scored = sc.AnnData(lognorm, obs=adata.obs[[]], var=adata.var[[]])
    >>> sc.tl.score_genes_cell_cycle(scored, s_genes=s, g2m_genes=g2m)
    >>> adata.obs["phase"] = scored.obs["phase"]
    >>> table = ss.tl.cell_cycle_contrast(adata, phase_key="phase", methods=["mean"], n_shuffles=3)
    >>> sorted(table["phase"].unique())
    ['G2M', 'S']
    """
    phases = _common.check_groupby(adata, phase_key, argument="phase_key")
    present = sorted(phases.dropna().unique())
    if g2m_label not in present:
        raise ValueError(
            f"obs[{phase_key!r}] has no {g2m_label!r} cells (values: {', '.join(present[:10]) or 'none'}); pass "
            "phase_key= a column that labels G2/M cells, or g2m_label= the value that marks them."
        )
    methods = _common.resolve_methods(adata, methods, layer)
    n_shuffles = _common.check_shuffles(n_shuffles)
    default_g2m, default_s = tirosh_sets()
    wanted = {g2m_label: _phase_set(g2m_genes, "TIROSH2016_G2M_PHASE", default_g2m, "g2m_genes")}
    if s_label is not None:
        if s_label in present:
            wanted[s_label] = _phase_set(s_genes, "TIROSH2016_S_PHASE", default_s, "s_genes")
        else:
            logger.warning("obs[%r] has no %r cells: the S contrast is skipped", phase_key, s_label)
    names = {phase: name for phase, (name, _) in wanted.items()}
    sets = dict(wanted.values())
    columns = match_gene_sets(sets, adata.var_names)
    order = list(columns)
    labels = phases.to_numpy()

    rows: list[dict[str, Any]] = []
    with timed(f"cell-cycle contrast with {len(methods)} method(s), {n_shuffles} relabellings"):
        for method in methods:
            scores, reads, matrix = _common.score_sets(
                adata,
                method,
                [columns[n] for n in order],
                n_shuffles=n_shuffles,
                random_state=random_state,
                layer=layer,
                expression_layer=expression_layer,
            )
            for phase in wanted:
                inside = labels == phase
                k = order.index(names[phase])
                picked = [k] + [k + (r + 1) * len(order) for r in range(n_shuffles)]
                mean_in = np.nanmean(scores[inside][:, picked], axis=0)
                mean_out = (
                    np.nanmean(scores[~inside][:, picked], axis=0) if (~inside).any() else np.full(len(picked), np.nan)
                )
                fold = log2_ratio(mean_in, mean_out)
                base = {
                    "phase": phase,
                    "gene_set": names[phase],
                    "method": method,
                    "reads": reads,
                    "layer": matrix,
                    "n_cells_phase": int(inside.sum()),
                    "n_cells_other": int((~inside).sum()),
                    "n_genes": int(columns[names[phase]].size),
                    "n_shuffles": n_shuffles,
                }
                rows.append(
                    {
                        **base,
                        "kind": OBSERVED,
                        "log2fc": fold[0],
                        "log2fc_sd": np.nan,
                        "mean_in_phase": mean_in[0],
                        "mean_other": mean_out[0],
                    }
                )
                if n_shuffles:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        rows.append(
                            {
                                **base,
                                "kind": SHUFFLED,
                                "log2fc": float(np.nanmean(fold[1:])),
                                "log2fc_sd": float(np.nanstd(fold[1:])),
                                "mean_in_phase": float(np.nanmean(mean_in[1:])),
                                "mean_other": float(np.nanmean(mean_out[1:])),
                            }
                        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    params = {
        "phase_key": phase_key,
        "methods": list(methods),
        "layer": layer,
        "g2m_label": g2m_label,
        "s_label": s_label,
        "gene_sets": list(columns),
        "n_shuffles": int(n_shuffles),
        "random_state": int(random_state),
    }
    return _common.store(adata, key_added, table, params)
