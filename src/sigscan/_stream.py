"""Stream row batches (CSR float32) from in-memory, backed h5ad, or zarr matrices without loading them whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scipy import sparse

from ._logging import logger
from ._utils import as_csr_float32


def iter_row_batches(matrix: Any, batch_size: int, *, start: int = 0) -> Iterator[tuple[int, int, sparse.csr_matrix]]:
    """Yield ``(start, stop, CSR float32 batch)`` over the rows of ``matrix``.

    Works for scipy sparse and numpy arrays in memory, anndata's backed sparse datasets (h5ad or zarr), h5py/zarr
    dense arrays, and dask arrays. CSC input in memory is converted to CSR once (row slicing a CSC matrix per
    batch is quadratic); only one batch is ever densified.
    """
    if sparse.issparse(matrix) and matrix.format != "csr":
        logger.info("converting the input matrix from %s to CSR once for row streaming", matrix.format)
        matrix = matrix.tocsr()
    total = int(matrix.shape[0])
    for lo in range(start, total, batch_size):
        hi = min(total, lo + batch_size)
        block = matrix[lo:hi]
        if hasattr(block, "compute"):  # dask
            block = block.compute()
        yield lo, hi, as_csr_float32(block)
