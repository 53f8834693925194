"""Gene sets: GMT files and matching a set against a dataset's genes."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

GeneSets = Mapping[str, Sequence[str]]


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a GMT file: one set per line, ``name<TAB>description<TAB>gene1<TAB>gene2…``.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    Ordered mapping of set name → genes (duplicates within a set collapsed, order kept).

    Examples
    --------
    >>> import sigscan as ss
    >>> sets = ss.datasets.gene_sets("tirosh_cell_cycle")
    >>> sorted(sets)
    ['TIROSH2016_G2M_PHASE', 'TIROSH2016_S_PHASE']
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"GMT file {path} does not exist.")
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise ValueError(
                f"{path}:{number} is not a GMT line (expected name<TAB>description<TAB>genes…); "
                "check that the file is tab-separated."
            )
        genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
        if fields[0] in sets:
            raise ValueError(f"{path}:{number}: gene set {fields[0]!r} appears twice.")
        sets[fields[0]] = genes
    if not sets:
        raise ValueError(f"{path} holds no gene sets.")
    return sets


def as_gene_list(genes: str | os.PathLike | Iterable[str]) -> list[str]:
    """A gene set given as a list, or as a GMT file (holding exactly one set, or ``path:SET``)."""
    if isinstance(genes, str | os.PathLike):
        text = str(genes)
        name = None
        if not os.path.exists(text) and ":" in text:
            text, name = text.rsplit(":", 1)
        if not os.path.exists(text):
            raise FileNotFoundError(
                f"{genes!r} is neither a GMT file nor a list of genes; pass a list of gene identifiers."
            )
        sets = read_gmt(text)
        if name is None:
            if len(sets) != 1:
                raise ValueError(f"{text} holds {len(sets)} sets; pick one with '{text}:SET_NAME'.")
            return next(iter(sets.values()))
        if name not in sets:
            raise KeyError(f"No set {name!r} in {text}; available: {', '.join(list(sets)[:10])}…")
        return sets[name]
    genes = [str(g) for g in genes]
    return list(dict.fromkeys(genes))


def as_gene_sets(gene_sets: GeneSets | str | os.PathLike) -> dict[str, list[str]]:
    """Gene sets given as a mapping or a GMT path."""
    if isinstance(gene_sets, str | os.PathLike):
        return read_gmt(gene_sets)
    if not isinstance(gene_sets, Mapping):
        raise TypeError("gene_sets must be a mapping of name → genes or the path to a GMT file.")
    return {str(k): as_gene_list(v) for k, v in gene_sets.items()}


def match_genes(
    genes: str | os.PathLike | Iterable[str], var_names: pd.Index, *, set_name: str = "gene set"
) -> np.ndarray:
    """Column positions of the set's genes in ``var_names``; absent genes are dropped with one warning.

    Raises :class:`ValueError` for an empty set or when none of its genes are present.
    """
    wanted = as_gene_list(genes)
    if not wanted:
        raise ValueError(f"The {set_name} is empty.")
    var_names = pd.Index(var_names)
    present = [g for g in wanted if g in var_names]
    missing = [g for g in wanted if g not in var_names]
    if not present:
        example = ", ".join(map(str, var_names[:3]))
        raise ValueError(
            f"None of the {len(wanted)} genes of the {set_name} are in the data (e.g. {', '.join(wanted[:3])}; "
            f"the data's genes look like {example}). Check the identifier type (symbols vs Ensembl IDs) or pass the "
            "var column that matches."
        )
    if missing:
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        warnings.warn(
            f"{len(missing)} of {len(wanted)} genes of the {set_name} are not in the data and were dropped: {shown}",
            UserWarning,
            stacklevel=3,
        )
    first = pd.Series(np.arange(len(var_names)), index=var_names)
    first = first[~first.index.duplicated()]
    return first.loc[present].to_numpy(dtype=np.int64)


def match_weighted_genes(
    genes: str | os.PathLike | Iterable[str],
    var_names: pd.Index,
    weights: Iterable[float] | None = None,
    *,
    set_name: str = "gene set",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Column positions of a gene set (as :func:`match_genes`) and, if given, the weights of the genes kept.

    ``weights`` align with the set's genes (after duplicates are collapsed); they must be finite and must not sum
    to zero.
    """
    gene_list = as_gene_list(genes)
    columns = match_genes(gene_list, var_names, set_name=set_name)
    if weights is None:
        return columns, None
    weights = np.asarray(list(weights), dtype=np.float64)
    if len(weights) != len(gene_list):
        raise ValueError(f"weights has {len(weights)} entries but the gene set has {len(gene_list)} genes.")
    by_gene = dict(zip(gene_list, weights, strict=True))
    kept = np.array([by_gene[g] for g in pd.Index(var_names)[columns]])
    if not np.isfinite(kept).all() or kept.sum() == 0:
        raise ValueError("weights must be finite and must not sum to zero.")
    return columns, kept
