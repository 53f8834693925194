"""``ss.tl.score_genes``: score gene sets per cell with any registered method."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._attribution_layer import attribution_layer
from .._docs import doc_adata, doc_copy, doc_params
from .._gene_sets import match_genes, read_gene_sets
from .._logging import logger, timed
from .._validation import looks_like_counts
from ._scorers import Scorer, ScoringData, get_scorer
from ._scorers._data import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from anndata import AnnData

GeneSetsInput = Iterable[str] | Mapping[str, Iterable[str]] | str | os.PathLike

doc_normalize = """\
normalize
    Expression scorers read log-normalised expression. ``False``: the matrix already is (e.g. after
    ``sc.pp.normalize_total`` and ``sc.pp.log1p``). ``True``: it holds raw counts, and each chunk of cells is
    normalised on the fly (``normalize_total(target_sum)`` then ``log1p``) without changing or copying the stored
    matrix. ``"auto"`` (default): ``True`` when the matrix holds non-negative integers only (raw counts), else
    ``False``. Ignored by ``attribution``, which reads attributions as they are."""

doc_methods = """\
Methods (``method=``; options are passed as keyword arguments):

- ``"attribution"``: mean attribution over the set (SIGnature; ``agg="mean"|"sum"``); reads the attribution layer
  (``layer=None``: the single one present).
- ``"mean"``: mean log-normalised expression over the set.
- ``"scanpy"``: :func:`scanpy.tl.score_genes` itself (``ctrl_size=50``, ``n_bins=25``, ``random_state=0``).
- ``"ans"``: Adjusted Neighborhood Scoring (``ctrl_size=100``).
- ``"jasmine"``: JASMINE (``mode="likelihood"|"oddsratio"``).
- ``"ucell"``: UCell (``max_rank=1500``).
- ``"aucell"``: AUCell (``n_up=None``: 5% of the genes)."""


def resolve_gene_sets(genes: GeneSetsInput) -> tuple[dict[str, list[str]], bool]:
    """Gene sets (see :func:`sigscan.read_gene_sets`), and whether one set was given (a mapping counts as several)."""
    sets = read_gene_sets(genes)
    if isinstance(genes, Mapping):
        if not sets:
            raise ValueError("The mapping of gene sets is empty; pass at least one set.")
        return sets, False
    return sets, len(sets) == 1


def match_gene_sets(sets: Mapping[str, list[str]], var_names: Any) -> dict[str, np.ndarray]:
    """Column positions of every set (absent genes dropped with one warning per set; empty sets rejected)."""
    return {name: match_genes(genes, var_names, set_name=f"gene set {name!r}") for name, genes in sets.items()}


def resolve_normalize(normalize: bool | Literal["auto"], data_matrix: Any, where: str) -> bool:
    """The ``normalize`` switch, with ``"auto"`` resolved by looking at the matrix."""
    if normalize == "auto":
        detected = looks_like_counts(data_matrix)
        if detected:
            logger.info("%s holds integer counts: log-normalising each chunk on the fly (normalize=True)", where)
        return detected
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True, False or 'auto', not {normalize!r}.")
    return normalize


def scoring_data(
    adata: AnnData,
    scorer: Scorer,
    *,
    layer: str | None,
    normalize: bool | Literal["auto"],
    target_sum: float,
    batch_size: int,
    argument: str = "layer",
) -> ScoringData:
    """The matrix a scorer reads: the attribution layer, or (log-normalised) expression.

    ``argument``: the caller's name for ``layer``, which errors name.
    """
    if scorer.reads == "attribution":
        if normalize is True:
            raise ValueError("normalize=True does not apply to method='attribution' (attributions are not counts).")
        return ScoringData(adata, attribution_layer(adata, layer, argument=argument), batch_size=batch_size)
    data = ScoringData(adata, layer, target_sum=target_sum, batch_size=batch_size)
    data.normalize = resolve_normalize(normalize, data.matrix, data.where)
    return data


def _provenance(method: str, data: ScoringData, n_genes: int, options: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "method": method,
        "layer": data.layer if data.layer is not None else "X",
        "normalized_on_the_fly": bool(data.normalize),
        "n_genes": int(n_genes),
    }
    record.update({k: v for k, v in options.items() if isinstance(v, str | int | float | bool)})
    return record


@doc_params(adata=doc_adata, copy=doc_copy, normalize=doc_normalize, methods=doc_methods)
def score_genes(
    adata: AnnData,
    genes: GeneSetsInput,
    *,
    method: str,
    layer: str | None = None,
    normalize: bool | Literal["auto"] = "auto",
    target_sum: float = 1e4,
    key_added: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    copy: bool = False,
    **options: Any,
) -> AnnData | None:
    """Score gene sets per cell with one of sigscan's scorers.

    Every method streams the matrix in chunks of cells (sparse in, never densified whole) and never modifies
    ``X`` or the layers.

    {methods}

    Parameters
    ----------
    {adata}
    genes
        One gene set (a list of identifiers, or ``"file.gmt:SET"``), several (a mapping of set name → genes), or a
        GMT file (all its sets). Genes absent from the data are dropped with one warning per set; empty sets raise.
    method
        The scoring method (see above).
    layer
        The matrix to read: for expression scorers the layer with log-normalised expression (or counts, see
        ``normalize``), ``None`` = ``adata.X``; for ``attribution`` the attribution layer (``None``: the single one
        present).
    {normalize}
    target_sum
        Total per cell when normalising on the fly.
    key_added
        ``obs`` column for a single set (default ``f"{{method}}_score"``); for several sets the prefix of one column
        per set, ``f"{{key_added}}_{{set}}"`` (default ``f"{{set}}_{{method}}"``).
    batch_size
        Cells per chunk; bounds memory.
    {copy}
    **options
        Method options (e.g. ``ctrl_size=50`` for ``ans``, ``mode="oddsratio"`` for ``jasmine``).

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes the score column(s) to ``adata.obs`` and their provenance to
    ``adata.uns["sigscan"]["score_genes"]``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> ss.tl.score_genes(adata, ["CD79A", "MS4A1", "CD79B"], method="ucell")
    >>> bool(adata.obs["ucell_score"].between(0, 1).all())
    True
    """
    scorer = get_scorer(method)
    sets, single = resolve_gene_sets(genes)
    adata = adata.copy() if copy else adata
    columns = match_gene_sets(sets, adata.var_names)
    data = scoring_data(adata, scorer, layer=layer, normalize=normalize, target_sum=target_sum, batch_size=batch_size)
    with timed(f"scoring {len(columns)} gene set(s) with {method} on {data.where}"):
        scores = scorer(data, list(columns.values()), **options)
    if single:
        keys = [key_added or f"{method}_score"]
    else:
        keys = [f"{key_added}_{name}" if key_added else f"{name}_{method}" for name in columns]
    record = adata.uns.setdefault("sigscan", {}).setdefault("score_genes", {})
    for k, (key, cols) in enumerate(zip(keys, columns.values(), strict=True)):
        adata.obs[key] = scores[:, k]
        record[key] = _provenance(method, data, len(cols), {**scorer.options, **options})
    return adata if copy else None


__all__ = ["score_genes"]
