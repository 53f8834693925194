"""Gene sets: reading them (lists, mappings, GMT and text files, gene names) and matching them to a dataset's genes."""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GeneSets = Mapping[str, Sequence[str]]
#: anything :func:`read_gene_sets` accepts
GeneSetSpec = str | os.PathLike | Iterable[str] | Mapping[str, Any]


def _read_text(path: Path) -> str:
    """The file's text; a binary or non-UTF-8 file is an error naming the file and the problem."""
    if not path.exists():
        raise FileNotFoundError(f"Gene set file {path} does not exist.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a GMT file or a text file with one gene per line.")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise ValueError(f"{path} is gzip-compressed; decompress it first (gunzip) and pass the .gmt / .txt file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not a UTF-8 text file (undecodable byte at position {error.start}); gene sets must be a GMT "
            "file or a text file with one gene per line."
        ) from None
    if "\0" in text:
        raise ValueError(f"{path} is a binary file (it holds NUL bytes), not a GMT or text gene list.")
    return text


def _parse_gmt(text: str, path: Path) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 2:
            raise ValueError(
                f"{path}:{number} is not a GMT line (expected name<TAB>description<TAB>genes…); "
                "check that the file is tab-separated."
            )
        genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
        if not genes:
            raise ValueError(
                f"{path}:{number} is not a GMT line with genes: gene set {fields[0]!r} lists no genes after its "
                "description. Add its genes (name<TAB>description<TAB>gene1<TAB>gene2…) or remove the line."
            )
        if fields[0] in sets:
            raise ValueError(f"{path}:{number}: gene set {fields[0]!r} appears twice.")
        sets[fields[0]] = genes
    if not sets:
        raise ValueError(f"{path} holds no gene sets.")
    return sets


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
    return _parse_gmt(_read_text(path), path)


def _read_file(path: Path) -> dict[str, list[str]]:
    """A GMT file (``.gmt``, or tab-separated lines) or a plain list named after the file (one gene per line)."""
    text = _read_text(path)
    if path.suffix.lower() == ".gmt" or "\t" in text:
        return _parse_gmt(text, path)
    genes = [
        gene.strip()
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for gene in line.replace(",", " ").split()
        if gene.strip()
    ]
    if not genes:
        raise ValueError(f"{path} lists no genes; write one gene per line (or a GMT file).")
    return {path.stem: list(dict.fromkeys(genes))}


_PATH_SUFFIXES = (".gmt", ".txt", ".tsv", ".csv", ".grp", ".gz")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(_PATH_SUFFIXES)


def _pick(sets: dict[str, list[str]], name: str, source: str) -> list[str]:
    if name in sets:
        return sets[name]
    near = difflib.get_close_matches(name, list(sets), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}?" if near else f"available: {', '.join(list(sets)[:10])}…"
    raise KeyError(f"No set {name!r} in {source}; {hint}")


def read_gene_sets(spec: GeneSetSpec, *, name: str = "genes") -> dict[str, list[str]]:
    """Gene sets from any of the ways a user gives them, with one set of rules everywhere (tl, atlas, CLI).

    Parameters
    ----------
    spec
        - a list of genes (one set, called ``name``);
        - a mapping of set name → genes (each value itself any one-set spec);
        - a GMT file path (all its sets), or ``"file.gmt:SET"`` (that set);
        - a text file with one gene per line (one set named after the file; ``#`` starts a comment);
        - a comma-separated string ``"CD3E,CD4"`` or a single gene name ``"CD3E"`` (one set called ``name``).
    name
        Name of the set when ``spec`` gives one unnamed set.

    Returns
    -------
    Ordered mapping of set name → genes (duplicates collapsed, order kept).

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.read_gene_sets(["CD3E", "CD4", "CD3E"])
    {'genes': ['CD3E', 'CD4']}
    >>> ss.read_gene_sets("CD3E")
    {'genes': ['CD3E']}
    """
    if isinstance(spec, Mapping):
        return {str(key): read_gene_set(value, name=str(key)) for key, value in spec.items()}
    if isinstance(spec, os.PathLike):
        return _read_file(Path(spec))
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError("The gene set is an empty string; pass gene names, a GMT path or a mapping of sets.")
        if os.path.isfile(text):
            return _read_file(Path(text))
        if ":" in text:
            file, _, set_name = text.rpartition(":")
            if os.path.isfile(file):
                return {set_name: _pick(_read_file(Path(file)), set_name, file)}
        if _looks_like_path(text):
            raise FileNotFoundError(
                f"Gene set file {text} does not exist (a GMT path, 'file.gmt:SET', or a text file with one gene per "
                "line); check the path."
            )
        return {name: list(dict.fromkeys(g.strip() for g in text.split(",") if g.strip()))}
    if isinstance(spec, bytes) or not isinstance(spec, Iterable):
        raise TypeError(
            f"Gene sets must be a list of genes, a mapping of set name → genes, a GMT path or a gene name, not "
            f"{type(spec).__name__}."
        )
    return {name: list(dict.fromkeys(str(g) for g in spec))}


def read_gene_set(spec: GeneSetSpec, *, name: str = "genes") -> list[str]:
    """One gene set (any spec of :func:`read_gene_sets` that gives exactly one set, e.g. ``"file.gmt:SET"``)."""
    sets = read_gene_sets(spec, name=name)
    if len(sets) != 1:
        raise ValueError(f"{spec} holds {len(sets)} sets; pick one with '{spec}:SET_NAME'.")
    return next(iter(sets.values()))


def as_gene_list(genes: GeneSetSpec) -> list[str]:
    """A gene set given as a list, a gene name, or a file holding exactly one set (``path:SET`` picks one)."""
    return read_gene_set(genes)


def as_gene_sets(gene_sets: GeneSets | str | os.PathLike) -> dict[str, list[str]]:
    """Gene sets given as a mapping or a GMT path."""
    if not isinstance(gene_sets, str | os.PathLike | Mapping):
        raise TypeError("gene_sets must be a mapping of name → genes or the path to a GMT file.")
    return read_gene_sets(gene_sets)


def match_genes(
    genes: str | os.PathLike | Iterable[str], var_names: pd.Index, *, set_name: str = "gene set"
) -> np.ndarray:
    """Column positions of the set's genes in ``var_names``; absent genes are dropped with one warning.

    Raises :class:`ValueError` for an empty set or when none of its genes are present.
    """
    wanted = as_gene_list(genes)
    if not wanted:
        raise ValueError(f"The {set_name} is empty.")
    var_names = var_names if isinstance(var_names, pd.Index) else pd.Index(var_names)  # keep its cached hash table
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
    if var_names.is_unique:  # (cached on the Index) one lookup in the hash table the membership tests built
        return var_names.get_indexer(present).astype(np.int64)
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
    return columns, set_weights(gene_list, weights, pd.Index(var_names)[columns])


def set_weights(gene_list: list[str], weights: Iterable[float], kept: Iterable[str]) -> np.ndarray:
    """The weights (aligned with ``gene_list``) of the genes ``kept``, checked finite and not summing to zero."""
    weights = np.asarray(list(weights), dtype=np.float64)
    if len(weights) != len(gene_list):
        raise ValueError(f"weights has {len(weights)} entries but the gene set has {len(gene_list)} genes.")
    by_gene = dict(zip(gene_list, weights, strict=True))
    values = np.array([by_gene[g] for g in kept])
    if not np.isfinite(values).all() or values.sum() == 0:
        raise ValueError("weights must be finite and must not sum to zero.")
    return values
