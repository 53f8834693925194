"""``ss.tl.qc_correlation``: how strongly each cell's gene-set score follows sequencing depth and other QC metrics."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from ..._docs import doc_adata, doc_params
from ..._logging import logger, timed
from . import _common
from ._common import OBSERVED, SHUFFLED

if TYPE_CHECKING:
    from anndata import AnnData

#: QC metrics computed from the counts (scanpy's ``calculate_qc_metrics`` names)
DEFAULT_QC = ("total_counts", "n_genes_by_counts", "pct_counts_mt")

COLUMNS = [
    "group",
    "gene_set",
    "method",
    "reads",
    "layer",
    "kind",
    "qc",
    "spearman",
    "abs_spearman",
    "abs_spearman_sd",
    "n_cells",
    "n_genes",
    "n_shuffles",
]


def qc_metrics(adata: AnnData, qc: Sequence[str], counts_layer: str | None) -> pd.DataFrame:
    """Cells × QC metrics: scanpy's ``calculate_qc_metrics`` on the counts (``mt`` = genes named ``MT-*``), or obs."""
    qc = [qc] if isinstance(qc, str) else list(qc)
    if not qc:
        raise ValueError("qc is empty; pass QC metric names, e.g. qc=('total_counts', 'n_genes_by_counts').")
    import scanpy as sc

    counts = _common.counts_matrix(adata, counts_layer)
    mt = pd.Index(adata.var_names).astype(str).str.upper().str.startswith("MT-")
    light = ad.AnnData(counts, var=pd.DataFrame({"mt": mt}, index=pd.Index(adata.var_names).astype(str)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        computed, _ = sc.pp.calculate_qc_metrics(light, qc_vars=["mt"], percent_top=None, inplace=False)
    computed.index = adata.obs_names
    columns = {}
    for name in qc:
        if name in computed:
            if name.endswith("_mt") and not mt.any():
                logger.warning("no MT- genes in var_names: %s is skipped", name)
                continue
            columns[name] = computed[name].to_numpy(dtype=np.float64)
        elif name in adata.obs and pd.api.types.is_numeric_dtype(adata.obs[name]):
            columns[name] = adata.obs[name].to_numpy(dtype=np.float64)
        else:
            raise KeyError(
                f"Unknown QC metric {name!r}: use a name of scanpy's calculate_qc_metrics (e.g. "
                f"{', '.join(DEFAULT_QC)}) or a numeric obs column."
            )
    if not columns:
        raise ValueError("None of the requested QC metrics can be computed on these data; pass qc= other metrics.")
    return pd.DataFrame(columns, index=adata.obs_names)


@doc_params(adata=doc_adata, shuffles=_common.doc_shuffles)
def qc_correlation(
    adata: AnnData,
    gene_sets: Mapping[str, Any],
    *,
    groupby: str,
    methods: Sequence[str] = ("attribution", "mean"),
    qc: Sequence[str] = DEFAULT_QC,
    layer: str | None = None,
    counts_layer: str | None = None,
    n_shuffles: int = 25,
    random_state: int = 0,
    gmt: str | os.PathLike | Mapping[str, Sequence[str]] | None = None,
    expression_layer: str | None = None,
    key_added: str = "qc_correlation",
) -> pd.DataFrame:
    """Absolute Spearman correlation between each cell's gene-set score and its QC metrics, per group (the SIGnature paper's QC test).

    For every group of ``groupby`` with a gene set, and every scoring method, the Spearman correlation over the
    group's cells between the set score and each QC metric (total counts, genes detected, % mitochondrial counts),
    next to the same for ``n_shuffles`` random relabellings of the genes. A score that tracks biology rather than
    sequencing depth has a small absolute Spearman correlation.

    Parameters
    ----------
    {adata}
    gene_sets
        ``group → genes`` (a list), or ``group → set name`` with ``gmt=``. Groups absent from ``obs[groupby]`` are
        skipped with a warning.
    groupby
        ``obs`` column with the groups (e.g. cell type).
    methods
        Scorers (see :func:`sigscan.tl.score_genes`): ``"attribution"`` reads the attribution layer, the others
        log-normalised expression.
    qc
        QC metrics: names of :func:`scanpy.pp.calculate_qc_metrics` computed from the counts (``mt`` = genes named
        ``MT-*``; a percentage of mitochondrial counts without such genes is skipped with a warning), or numeric obs
        columns.
    layer
        Attribution layer (``None``: the single one present).
    counts_layer
        Layer with the raw counts for the QC metrics (``None``: ``X``).
    {shuffles}
    gmt
        A GMT path or a mapping of sets, when ``gene_sets`` maps groups to set names.
    expression_layer
        Layer the expression scorers read (``None``: ``X``; counts are log-normalised on the fly).
    key_added
        Key in ``adata.uns["sigscan"]`` for the table (parameters under ``f"{{key_added}}_params"``).

    Returns
    -------
    Tidy table, one row per group × method × kind × QC metric: ``group``, ``gene_set``, ``method``, ``reads``
    (``"attribution"`` or ``"expression"``), ``layer`` (matrix scored), ``kind`` (``"gene_set"`` or ``"shuffled"``),
    ``qc``, ``spearman`` (signed; for the baseline the mean over relabellings), ``abs_spearman`` (for the baseline the
    mean absolute Spearman over relabellings), ``abs_spearman_sd`` (its standard deviation over relabellings), ``n_cells``,
    ``n_genes``, ``n_shuffles``. ``X`` and the layers are not modified.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:400].copy()
    >>> sets = {{"B cells": ["CD79A", "CD79B", "MS4A1"], "NK cells": ["GNLY", "NKG7", "PRF1"]}}
    >>> table = ss.tl.qc_correlation(adata, sets, groupby="cell_type", methods=["mean"], n_shuffles=3)
    >>> sorted(table["kind"].unique())
    ['gene_set', 'shuffled']
    """
    groups = _common.check_groupby(adata, groupby)
    n_shuffles = _common.check_shuffles(n_shuffles)
    label_to_set, columns = _common.group_sets(adata, gene_sets, groups, groupby, gmt)
    methods = _common.resolve_methods(adata, methods, layer)
    metrics = qc_metrics(adata, qc, counts_layer)
    names = list(columns)
    group_values = groups.to_numpy()

    rows: list[dict[str, Any]] = []
    with timed(f"QC correlation of {len(names)} gene set(s) × {len(methods)} method(s), {n_shuffles} relabellings"):
        for method in methods:
            scores, reads, matrix = _common.score_sets(
                adata,
                method,
                [columns[n] for n in names],
                n_shuffles=n_shuffles,
                random_state=random_state,
                layer=layer,
                expression_layer=expression_layer,
            )
            for group, set_name in label_to_set.items():
                cells = group_values == group
                n_cells = int(cells.sum())
                if n_cells < 3:
                    logger.warning("group %r has %d cell(s); at least 3 are needed, skipped", group, n_cells)
                    continue
                k = names.index(set_name)
                picked = [k] + [k + (r + 1) * len(names) for r in range(n_shuffles)]
                rho = _common.spearman_columns(scores[cells][:, picked], metrics.to_numpy()[cells])
                base = {
                    "group": group,
                    "gene_set": set_name,
                    "method": method,
                    "reads": reads,
                    "layer": matrix,
                    "n_cells": n_cells,
                    "n_genes": int(columns[set_name].size),
                    "n_shuffles": n_shuffles,
                }
                for q, metric in enumerate(metrics.columns):
                    rows.append(
                        {
                            **base,
                            "kind": OBSERVED,
                            "qc": metric,
                            "spearman": rho[0, q],
                            "abs_spearman": abs(rho[0, q]),
                            "abs_spearman_sd": np.nan,
                        }
                    )
                    if n_shuffles:
                        shuffled = rho[1:, q]
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)
                            rows.append(
                                {
                                    **base,
                                    "kind": SHUFFLED,
                                    "qc": metric,
                                    "spearman": float(np.nanmean(shuffled)),
                                    "abs_spearman": float(np.nanmean(np.abs(shuffled))),
                                    "abs_spearman_sd": float(np.nanstd(np.abs(shuffled))),
                                }
                            )
    table = pd.DataFrame(rows, columns=COLUMNS)
    params = {
        "groupby": groupby,
        "methods": list(methods),
        "qc": list(metrics.columns),
        "layer": layer,
        "counts_layer": counts_layer or "X",
        "expression_layer": expression_layer or "X",
        "n_shuffles": int(n_shuffles),
        "random_state": int(random_state),
        "groups": list(label_to_set),
        "gene_sets": list(label_to_set.values()),
    }
    return _common.store(adata, key_added, table, params)
