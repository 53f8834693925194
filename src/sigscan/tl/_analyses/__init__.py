"""The SIGnature paper's evidence as one-call analyses (SPEC 5.1), one module per analysis."""

from ._cell_cycle import cell_cycle_contrast
from ._factors import factor_specificity
from ._qc import qc_correlation
from ._ranks import rank_percentiles

__all__ = ["cell_cycle_contrast", "factor_specificity", "qc_correlation", "rank_percentiles"]
