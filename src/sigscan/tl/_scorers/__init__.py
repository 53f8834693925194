"""Gene-set scorers, one module per method, listed in :data:`SCORERS` (decoupler's layout)."""

from ._data import ScoringData, log_normalize
from ._registry import SCORERS, Scorer, get_scorer, register_scorer, scorers

__all__ = ["SCORERS", "Scorer", "ScoringData", "get_scorer", "log_normalize", "register_scorer", "scorers"]
