"""The scorer registry: one entry per method, so callers loop over entries instead of chaining ``if``s."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._ans import ans
from ._attribution import attribution
from ._aucell import aucell
from ._data import ScoringData
from ._jasmine import jasmine
from ._mean import mean
from ._scanpy import scanpy_score
from ._ucell import ucell


@dataclass(frozen=True)
class Scorer:
    """A gene-set scoring method.

    ``func(data, gene_sets, **options)`` returns a cells × sets float64 array; ``reads`` says whether it scores
    log-normalised expression or an attribution layer.

    Examples
    --------
    >>> import numpy as np
    >>> import sigscan as ss
    >>> def top_gene(data, gene_sets):
    ...     matrix = data.to_memory()
    ...     return np.column_stack([matrix[:, genes].max(axis=1).toarray().ravel() for genes in gene_sets])
    >>> scorer = ss.tl.Scorer("top_gene", top_gene, "expression", "highest expression in the set")
    >>> scorer.reads, scorer.options
    ('expression', {})
    """

    name: str
    func: Callable[..., np.ndarray]
    reads: Literal["expression", "attribution"]
    summary: str

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options and their defaults."""
        parameters = inspect.signature(self.func).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def __call__(self, data: ScoringData, gene_sets: Sequence[np.ndarray], **options: Any) -> np.ndarray:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "none"
            raise ValueError(
                f"Unknown option(s) {', '.join(unknown)} for method {self.name!r}; valid options: {valid}."
            )
        return self.func(data, list(gene_sets), **options)


SCORERS: dict[str, Scorer] = {
    scorer.name: scorer
    for scorer in (
        Scorer("attribution", attribution, "attribution", "mean attribution over the set (SIGnature)"),
        Scorer("mean", mean, "expression", "mean log-normalised expression over the set"),
        Scorer("scanpy", scanpy_score, "expression", "scanpy.tl.score_genes (Tirosh 2016)"),
        Scorer("ans", ans, "expression", "Adjusted Neighborhood Scoring (Ciernik 2024)"),
        Scorer("jasmine", jasmine, "expression", "JASMINE rank + enrichment (Noureen 2022)"),
        Scorer("ucell", ucell, "expression", "UCell Mann-Whitney U (Andreatta 2021)"),
        Scorer("aucell", aucell, "expression", "AUCell recovery-curve AUC (Aibar 2017)"),
    )
}


def register_scorer(
    name: str,
    func: Callable[..., np.ndarray],
    *,
    reads: Literal["expression", "attribution"] = "expression",
    summary: str = "",
    overwrite: bool = False,
) -> Scorer:
    """Add a gene-set scoring method, usable as ``ss.tl.score_genes(..., method=name)`` and in ``compare_scorers``.

    Parameters
    ----------
    name
        The method name.
    func
        ``func(data, gene_sets, *, option=default, ...)``: ``data`` is a :class:`~sigscan.tl.ScoringData` (read it
        with ``data.chunks()``), ``gene_sets`` a list of column-position arrays; returns a cells × sets array.
        Keyword-only parameters become the method's options.
    reads
        ``"expression"`` (log-normalised expression; counts are normalised on the fly) or ``"attribution"``.
    summary
        One line shown by :func:`sigscan.tl.scorers`.
    overwrite
        Replace an existing method of the same name.

    Returns
    -------
    The registry entry.

    Examples
    --------
    >>> import numpy as np
    >>> import sigscan as ss
    >>> def maximum(data, gene_sets):
    ...     out = np.zeros((data.shape[0], len(gene_sets)))
    ...     for lo, hi, chunk in data.chunks():
    ...         for k, columns in enumerate(gene_sets):
    ...             out[lo:hi, k] = chunk[:, columns].max(axis=1).toarray().ravel()
    ...     return out
    >>> _ = ss.tl.register_scorer("max", maximum, summary="largest expression in the set", overwrite=True)
    >>> "max" in ss.tl.scorers().index
    True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, not {name!r}.")
    if name in SCORERS and not overwrite:
        raise ValueError(f"A scorer named {name!r} exists already; pass overwrite=True to replace it.")
    if reads not in ("expression", "attribution"):
        raise ValueError(f"reads must be 'expression' or 'attribution', not {reads!r}.")
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}.")
    positional = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) != 2:
        raise TypeError(
            f"func must take (data, gene_sets) positionally and its options as keyword-only parameters; "
            f"{getattr(func, '__name__', func)!r} takes {len(positional)} positional parameters."
        )
    scorer = Scorer(name, func, reads, summary)
    SCORERS[name] = scorer
    return scorer


def scorers() -> pd.DataFrame:
    """The available gene-set scoring methods: what each reads, a summary and its options with defaults.

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.tl.scorers().loc["ucell", "options"]
    {'max_rank': 1500}
    """
    return pd.DataFrame(
        [{"method": s.name, "reads": s.reads, "summary": s.summary, "options": s.options} for s in SCORERS.values()]
    ).set_index("method")


def get_scorer(method: str) -> Scorer:
    """The registry entry for ``method``; a :class:`ValueError` lists the available ones."""
    if method not in SCORERS:
        raise ValueError(f"Unknown scoring method {method!r}; available: {', '.join(SCORERS)}.")
    return SCORERS[method]
