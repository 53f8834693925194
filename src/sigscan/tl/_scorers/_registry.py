"""The scorer registry: one entry per method, so callers loop over entries instead of chaining ``if``s."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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


def get_scorer(method: str) -> Scorer:
    """The registry entry for ``method``; a :class:`ValueError` lists the available ones."""
    if method not in SCORERS:
        raise ValueError(f"Unknown scoring method {method!r}; available: {', '.join(SCORERS)}.")
    return SCORERS[method]
