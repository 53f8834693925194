"""Small helpers shared across modules (no scientific logic lives here)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse


def cache_dir() -> Path:
    """Folder where sigscan caches trained demo models (``$SIGSCAN_CACHE`` or the XDG cache)."""
    root = os.environ.get("SIGSCAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sigscan"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_arrays(arrays: list[np.ndarray]) -> str:
    """Checksum of a list of arrays (dtype, shape and bytes), used for model and shard provenance."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def sha256_strings(values: list[str]) -> str:
    """Checksum of an ordered list of strings (gene orders)."""
    # one update of the joined bytes: the same digest as one update per string and separator, several times faster
    return hashlib.sha256("".join(f"{value}\0" for value in values).encode()).hexdigest()


def as_csr_float32(matrix: Any) -> sparse.csr_matrix:
    """Return a CSR float32 copy-free view where possible (dense input is sparsified)."""
    if sparse.issparse(matrix):
        matrix = matrix.tocsr()
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        return matrix
    return sparse.csr_matrix(np.asarray(matrix, dtype=np.float32))


def row_factors(matrix: sparse.csr_matrix, target_sum: float) -> np.ndarray:
    """Per-row factors (float64) that scale each row of a non-negative matrix to sum to ``target_sum``.

    All-zero rows get factor 0 (they stay zero). The one place where "scale each cell to a total" is decided.
    """
    row_sums = np.asarray(matrix.sum(axis=1, dtype=np.float64)).ravel()
    return np.divide(target_sum, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0)


def scale_rows(matrix: sparse.csr_matrix, target_sum: float) -> sparse.csr_matrix:
    """Scale each row of a non-negative CSR matrix to sum to ``target_sum`` in place; all-zero rows stay zero."""
    factors = row_factors(matrix, target_sum)
    matrix.data *= np.repeat(factors, np.diff(matrix.indptr)).astype(matrix.data.dtype)
    return matrix
