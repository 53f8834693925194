"""Binomial thinning of counts: each count kept with probability ``1 − fraction`` (CSR in, CSR out).

Used by ``ss.pp.downsample_counts`` and by the downsampling analysis of ``ss.tl``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._validation import check_counts


def check_fraction(fraction: float, *, name: str = "fraction") -> float:
    """``fraction`` as a float in [0, 1), or an error naming the fix."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={fraction!r} is not a number; pass the share of counts to remove, e.g. 0.5.") from None
    if not 0 <= value < 1:
        raise ValueError(
            f"{name}={fraction!r} is outside [0, 1): it is the share of counts removed (0 keeps all counts, 0.9 keeps "
            "10%); pass a value from 0 up to but not including 1."
        )
    return value


def thin_counts(
    matrix: sparse.spmatrix | np.ndarray, fraction: float, rng: np.random.Generator, *, where: str = "counts"
) -> sparse.csr_matrix:
    """A new CSR matrix with each count of ``matrix`` kept with probability ``1 − fraction`` (input untouched)."""
    fraction = check_fraction(fraction)
    out = sparse.csr_matrix(matrix, copy=True)  # a new matrix: eliminate_zeros below must not touch the input
    check_counts(out, where=where)
    if fraction > 0 and out.nnz:
        kept = rng.binomial(out.data.astype(np.int64), 1.0 - fraction)
        out.data = kept.astype(out.data.dtype, copy=False)
        out.eliminate_zeros()
    return out
