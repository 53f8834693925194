"""Helpers shared by the paper's analyses: input checks, group → gene set resolution, scoring, ranks and storage."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from ..._attribution_layer import attribution_layer, has_attributions
from ..._logging import logger
from ..._validation import looks_like_counts
from .._compare import _score_all, resolve_label_sets
from .._score_genes import match_gene_sets, scoring_data
from .._scorers import get_scorer
from .._scorers._data import DEFAULT_BATCH_SIZE, ScoringData

if TYPE_CHECKING:
    from anndata import AnnData

#: name of the shuffled-gene-label baseline in the ``kind`` column of the result tables
SHUFFLED = "shuffled"
OBSERVED = "gene_set"

doc_shuffles = """\
n_shuffles
    Number of random relabellings of the genes for the shuffled-gene-label baseline (``0``: no baseline). The labels
    are shuffled among the genes that have a non-zero value in the matrix read (the expressed genes; for an attribution
    layer, the genes the model scores), so each relabelled set is a random set of the same size from those genes.
    Relabelling ``r`` is the ``r``-th ``numpy.random.default_rng(random_state).permutation`` of that pool; the
    baseline is the mean over relabellings.
random_state
    Seed of the relabellings."""


def check_groupby(adata: AnnData, groupby: str, *, argument: str = "groupby") -> pd.Series:
    """``obs[groupby]`` as strings (missing values stay missing); a missing column is an error naming the fix."""
    if not isinstance(groupby, str) or groupby not in adata.obs:
        columns = ", ".join(map(str, adata.obs.columns)) or "none"
        raise KeyError(f"{argument}={groupby!r} is not an obs column; pass one of: {columns}.")
    values = adata.obs[groupby]
    return values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))


def group_sets(
    adata: AnnData,
    gene_sets: Mapping[str, Any],
    groups: pd.Series,
    groupby: str,
    gmt: str | os.PathLike | Mapping[str, Sequence[str]] | None,
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """``group → set name`` for the groups present, and ``set name → column positions``.

    Groups of ``gene_sets`` absent from ``obs[groupby]`` are dropped with a warning; none left is an error.
    """
    label_to_set, sets = resolve_label_sets(gene_sets, gmt)
    present = set(groups.dropna())
    kept = {label: name for label, name in label_to_set.items() if label in present}
    if not kept:
        raise ValueError(
            f"No group of gene_sets ({', '.join(list(label_to_set)[:8])}) is a value of obs[{groupby!r}] "
            f"(values: {', '.join(sorted(present)[:12])}); key gene_sets by those values, or pass the groupby column "
            "that holds the labels."
        )
    dropped = [label for label in label_to_set if label not in kept]
    if dropped:
        logger.warning("gene sets for %s have no cells in obs[%r] and are skipped", ", ".join(dropped), groupby)
    used = {name: sets[name] for name in dict.fromkeys(kept.values())}
    return kept, match_gene_sets(used, adata.var_names)


def check_shuffles(n_shuffles: Any) -> int:
    """``n_shuffles`` as an int; anything but a non-negative integer is an error."""
    if isinstance(n_shuffles, bool) or not isinstance(n_shuffles, int | np.integer) or n_shuffles < 0:
        raise ValueError(f"n_shuffles must be a non-negative integer, not {n_shuffles!r}.")
    return int(n_shuffles)


def permutations(detected: np.ndarray, n_shuffles: int, random_state: int) -> list[np.ndarray]:
    """The gene relabellings of the shuffled baseline (see ``doc_shuffles``): column ``j`` → ``perm[j]``.

    Genes outside the pool (``detected`` False) keep their label.
    """
    detected = np.asarray(detected, dtype=bool)
    pool = np.flatnonzero(detected)
    rng = np.random.default_rng(random_state)
    out = []
    for _ in range(check_shuffles(n_shuffles)):
        perm = np.arange(detected.size)
        perm[pool] = pool[rng.permutation(pool.size)]
        out.append(perm)
    return out


def detected_genes(data: ScoringData) -> np.ndarray:
    """Genes with a non-zero value in at least one cell of the matrix ``data`` reads (one streamed pass)."""
    seen = np.zeros(data.shape[1], dtype=bool)
    for _, _, chunk in data.chunks():
        seen[chunk.indices] = True
    return seen


def score_sets(
    adata: AnnData,
    method: str,
    columns: Sequence[np.ndarray],
    *,
    n_shuffles: int,
    random_state: int,
    layer: str | None,
    expression_layer: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, str, str]:
    """Scores of the sets and of their relabellings from a registered scorer: ``(scores, reads, matrix name)``.

    ``scores`` is cells × (sets + n_shuffles · sets): the sets, then relabelling 1 of every set, and so on.
    Attribution scorers read the attribution layer ``layer``; expression scorers read ``expression_layer``
    (``None``: ``X``), log-normalised on the fly when it holds counts. A set a method cannot score gets NaN.
    """
    scorer = get_scorer(method)
    where = layer if scorer.reads == "attribution" else expression_layer
    data = scoring_data(adata, scorer, layer=where, normalize="auto", target_sum=1e4, batch_size=batch_size)
    perms = permutations(detected_genes(data), n_shuffles, random_state) if n_shuffles else []
    every = [np.asarray(c) for c in columns] + [perm[np.asarray(c)] for perm in perms for c in columns]
    named = {str(k): c for k, c in enumerate(every)}
    scores, failures = _score_all(scorer, data, named, dict(options or {}))
    if failures:
        logger.warning("%s could not score %d set(s); they are NaN", method, len(failures))
    return scores, scorer.reads, data.layer if data.layer is not None else "X"


def resolve_methods(adata: AnnData, methods: Sequence[str] | str, layer: str | None) -> list[str]:
    """Registered methods; ``attribution`` needs an attribution layer (error naming the fix)."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise ValueError("methods is empty; pass at least one scorer, e.g. methods=('attribution', 'mean').")
    for method in methods:
        if get_scorer(method).reads == "attribution":
            if layer is None and not has_attributions(adata):
                raise KeyError(
                    "methods includes 'attribution' but adata has no attribution layer: run "
                    "ss.pp.attributions(adata, model) first, pass layer= naming it, or drop 'attribution' from methods."
                )
            attribution_layer(adata, layer)
    return methods


def counts_matrix(adata: AnnData, counts_layer: str | None) -> Any:
    """The raw counts (``counts_layer``, ``None``: ``X``); non-count values are an error naming the fix."""
    if counts_layer is not None and counts_layer not in adata.layers:
        raise KeyError(f"counts_layer={counts_layer!r} is not a layer; available: {list(adata.layers)}.")
    matrix = adata.X if counts_layer is None else adata.layers[counts_layer]
    where = "adata.X" if counts_layer is None else f"adata.layers[{counts_layer!r}]"
    if matrix is None or not looks_like_counts(matrix):
        raise ValueError(
            f"{where} does not hold raw counts (non-negative integers); pass counts_layer= naming the layer with the "
            "raw counts (e.g. counts_layer='counts')."
        )
    return matrix


def spearman_columns(scores: np.ndarray, metrics: np.ndarray) -> np.ndarray:
    """Spearman correlation of every score column with every metric column (sets × metrics), ties averaged.

    Equal to ``scipy.stats.spearmanr`` per pair; a constant column gives NaN.
    """
    a = stats.rankdata(np.asarray(scores, dtype=np.float64), axis=0)
    b = stats.rankdata(np.asarray(metrics, dtype=np.float64), axis=0)
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    na = np.sqrt((a * a).sum(axis=0))
    nb = np.sqrt((b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a.T @ b) / np.outer(na, nb)
    rho[~np.isfinite(rho)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def store(adata: AnnData, key_added: str, table: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Write the table to ``uns["sigscan"][key_added]`` and its parameters next to it; return the table."""
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, not {key_added!r}.")
    table = table.reset_index(drop=True)
    table.attrs["sigscan"] = dict(params)
    bucket = adata.uns.setdefault("sigscan", {})
    bucket[key_added] = table
    bucket[f"{key_added}_params"] = {k: v for k, v in params.items() if v is not None}
    return table


def group_indicator(groups: pd.Series, order: Sequence[str]) -> sparse.csr_matrix:
    """Groups × cells 0/1 matrix (cells without a listed group belong to none)."""
    codes = pd.Categorical(groups, categories=list(order)).codes
    cells = np.flatnonzero(codes >= 0)
    return sparse.csr_matrix(
        (np.ones(cells.size), (codes[cells], cells)), shape=(len(order), len(groups)), dtype=np.float64
    )
