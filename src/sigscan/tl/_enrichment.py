"""``ss.tl.concept_enrichment``: gene-set enrichment of each concept's genes (ORA and a preranked test)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._docs import doc_adata, doc_params
from .._gene_sets import read_gene_sets

if TYPE_CHECKING:
    from anndata import AnnData

METHODS = ("ora", "prerank")
COLUMNS = ["concept", "gene_set", "overlap", "set_size", "effect", "p", "fdr", "method", "genes"]


def rank_sum_test(scores: np.ndarray, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Mann–Whitney U test (set genes score higher than the others) for several sets at once.

    Equals :func:`scipy.stats.mannwhitneyu` with ``alternative="greater"``, ``method="asymptotic"`` (normal
    approximation with tie and continuity corrections). Returns (AUROC ``U / (n₁ n₂)``, p-values).
    """
    n = len(scores)
    ranks = stats.rankdata(scores)
    _, ties = np.unique(scores, return_counts=True)
    tie_term = float((ties.astype(np.float64) ** 3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    auc = np.full(len(members), np.nan)
    p = np.ones(len(members))
    for i, positions in enumerate(members):
        n1 = len(positions)
        n2 = n - n1
        if n1 == 0 or n2 == 0:
            continue
        u = ranks[positions].sum() - n1 * (n1 + 1) / 2
        auc[i] = u / (n1 * n2)
        sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
        if sigma == 0:
            continue
        p[i] = stats.norm.sf((u - n1 * n2 / 2 - 0.5) / sigma)
    return auc, p


def _gene_positions(
    gene_sets: Mapping[str, Sequence[str]], names: pd.Index, background: np.ndarray, min_size: int
) -> dict[str, np.ndarray]:
    """Each set as positions into the background genes; sets with fewer than ``min_size`` background genes drop."""
    lookup = pd.Series(np.arange(int(background.sum())), index=names[background])
    lookup = lookup[~lookup.index.duplicated()]
    sets = {}
    for name, genes in gene_sets.items():
        positions = lookup.reindex(list(genes)).dropna().to_numpy(dtype=np.int64)
        positions = np.unique(positions)
        if len(positions) >= min_size:
            sets[name] = positions
    return sets


def _ora(scores: np.ndarray, sets: dict[str, np.ndarray], names: np.ndarray, n_top: int) -> pd.DataFrame:
    n = len(scores)
    order = np.lexsort((np.arange(n), -scores))
    top = order[scores[order] > 0][:n_top]
    in_top = np.zeros(n, dtype=bool)
    in_top[top] = True
    rows = []
    for name, positions in sets.items():
        hits = positions[in_top[positions]]
        overlap, size = len(hits), len(positions)
        p = float(stats.hypergeom.sf(overlap - 1, n, size, len(top))) if overlap else 1.0
        expected = size * len(top) / n
        ranked = hits[np.argsort(-scores[hits], kind="stable")]
        rows.append((name, overlap, size, overlap / expected if expected else np.nan, p, ";".join(names[ranked])))
    return pd.DataFrame(rows, columns=["gene_set", "overlap", "set_size", "effect", "p", "genes"])


def _prerank(scores: np.ndarray, sets: dict[str, np.ndarray], names: np.ndarray, n_top: int) -> pd.DataFrame:
    auc, p = rank_sum_test(scores, list(sets.values()))
    n = len(scores)
    order = np.lexsort((np.arange(n), -scores))
    in_top = np.zeros(n, dtype=bool)
    in_top[order[scores[order] > 0][:n_top]] = True
    rows = []
    for i, (name, positions) in enumerate(sets.items()):
        hits = positions[in_top[positions]]
        ranked = hits[np.argsort(-scores[hits], kind="stable")]
        rows.append((name, len(hits), len(positions), auc[i], p[i], ";".join(names[ranked])))
    return pd.DataFrame(rows, columns=["gene_set", "overlap", "set_size", "effect", "p", "genes"])


@doc_params(adata=doc_adata)
def concept_enrichment(
    adata: AnnData,
    gene_sets: str | os.PathLike | Mapping[str, Sequence[str]],
    *,
    key: str = "concepts",
    n_top: int = 50,
    method: Literal["ora", "prerank"] = "ora",
    min_size: int = 5,
    gene_symbols: str | None = None,
) -> pd.DataFrame:
    """Gene sets enriched among the genes that drive each concept (after :func:`sigscan.tl.concept_genes`).

    The background is the genes of the data that the model reads (``adata.var[f"{key}_in_model"]``); a set counts
    only its background genes and needs at least ``min_size`` of them.

    - ``"ora"``: over-representation of the concept's ``n_top`` best genes (positive scores only) in each set, a
      one-sided hypergeometric test (:data:`scipy.stats.hypergeom`); ``effect`` is the fold enrichment
      (observed ÷ expected overlap).
    - ``"prerank"``: a one-sided Mann–Whitney U test on the full gene-score vector (do the set's genes score higher
      than the other background genes?); ``effect`` is the AUROC of the set's genes.

    FDR: Benjamini–Hochberg over the sets of each concept (:func:`scipy.stats.false_discovery_control`).

    Parameters
    ----------
    {adata}
    gene_sets
        Gene sets in any form :func:`sigscan.read_gene_sets` reads: a GMT path, a mapping of name → genes, ….
    key
        The ``key`` of :func:`sigscan.tl.concept_genes` (its scores are ``adata.varm[f"{{key}}_genes"]``).
    n_top
        Top genes per concept for ORA (and for the ``genes`` column of both methods).
    method
        ``"ora"`` or ``"prerank"``.
    min_size
        Sets with fewer background genes are skipped.
    gene_symbols
        ``adata.var`` column with the identifiers the gene sets use, when ``var_names`` are of another type.

    Returns
    -------
    Tidy :class:`~pandas.DataFrame` with one row per concept and set: ``concept``, ``gene_set``, ``overlap`` (set
    genes among the concept's ``n_top``), ``set_size`` (set genes in the background), ``effect``, ``p``, ``fdr``,
    ``method`` and ``genes`` (the overlapping genes, best first, ``;``-separated), sorted by concept and p-value.
    Also stored in ``adata.uns["sigscan"][f"{{key}}_enrichment"]``.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=16)
    >>> ss.tl.concepts(adata, model, n_concepts=16, k=2, n_epochs=5)
    >>> ss.tl.concept_genes(adata, model, concepts=[0, 1], n_cells=10, progress=False)
    >>> table = ss.tl.concept_enrichment(adata, ss.datasets.gene_sets("hallmark"))
    >>> list(table.columns[:4])
    ['concept', 'gene_set', 'overlap', 'set_size']
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use 'ora' or 'prerank'.")
    for name, value in (("n_top", n_top), ("min_size", min_size)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}.")
    varm_key = f"{key}_genes"
    if varm_key not in adata.varm:
        raise KeyError(f"adata.varm has no {varm_key!r}; run ss.tl.concept_genes(adata, model, key={key!r}) first.")
    scores_all = np.asarray(adata.varm[varm_key], dtype=np.float64)
    in_model = adata.var.get(f"{key}_in_model")
    background = np.asarray(in_model, dtype=bool) if in_model is not None else np.ones(adata.n_vars, dtype=bool)
    if not background.any():
        raise ValueError("No gene of the data is in the model; the enrichment has no background.")
    if gene_symbols is not None and gene_symbols not in adata.var:
        raise KeyError(f"adata.var has no column {gene_symbols!r}; pass the column with the gene sets' identifiers.")
    names = pd.Index(adata.var[gene_symbols].astype(str) if gene_symbols else adata.var_names.astype(str))
    sets = _gene_positions(read_gene_sets(gene_sets), names, background, min_size)
    if not sets:
        raise ValueError(
            f"No gene set has {min_size} or more genes among the {int(background.sum())} model genes of the data; "
            "check the identifier type (symbols vs Ensembl IDs; gene_symbols= names a var column) or lower min_size."
        )
    explained = np.flatnonzero(~np.isnan(scores_all).all(axis=0))
    if explained.size == 0:
        raise ValueError(f"adata.varm[{varm_key!r}] holds no scores yet; run ss.tl.concept_genes first.")
    test = _ora if method == "ora" else _prerank
    background_names = names[background].to_numpy().astype(str)
    frames = []
    for concept in explained:
        frame = test(scores_all[background, concept], sets, background_names, n_top)
        frame["fdr"] = stats.false_discovery_control(frame["p"].to_numpy(), method="bh")
        frame.insert(0, "concept", int(concept))
        frame["method"] = method
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table = table.sort_values(["concept", "p", "gene_set"], kind="stable").reset_index(drop=True)
    table["concept"] = table["concept"].astype(np.int64)
    table["overlap"] = table["overlap"].astype(np.int64)
    table["set_size"] = table["set_size"].astype(np.int64)
    adata.uns.setdefault("sigscan", {})[f"{key}_enrichment"] = table
    return table
