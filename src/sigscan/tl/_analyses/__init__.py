"""The SIGnature paper's evidence as one-call analyses (SPEC 5.1), one module per analysis."""

from ._qc import qc_correlation
from ._ranks import rank_percentiles

__all__ = ["qc_correlation", "rank_percentiles"]
