"""What a scorer reads: the cells × genes matrix of an AnnData, streamed in chunks of cells (never densified whole)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from ..._stream import iter_row_batches
from ..._utils import row_factors

if TYPE_CHECKING:
    from anndata import AnnData

#: cells per chunk: bounds memory (2,000 PBMC-like cells are ~14 MB as CSR) and keeps the rank searches in cache
DEFAULT_BATCH_SIZE = 2_000


def log_normalize(chunk: sparse.csr_matrix, target_sum: float) -> sparse.csr_matrix:
    """``log1p(normalize_total(chunk, target_sum))`` on a CSR chunk, as a new matrix (the input is not modified)."""
    data = chunk.data * np.repeat(row_factors(chunk, target_sum), np.diff(chunk.indptr))
    out = sparse.csr_matrix((np.log1p(data).astype(np.float32), chunk.indices.copy(), chunk.indptr.copy()), chunk.shape)
    return out


@dataclass
class ScoringData:
    """A matrix to score, read in chunks of cells.

    Parameters
    ----------
    adata
        The data.
    layer
        Layer to read (``None`` = ``X``).
    normalize
        When ``True`` the layer holds raw counts and each chunk is normalised on the fly
        (``normalize_total(target_sum)`` then ``log1p``); the stored matrix is never changed.
    target_sum
        Total per cell for the on-the-fly normalisation.
    batch_size
        Cells per chunk.

    Examples
    --------
    >>> import sigscan as ss
    >>> data = ss.tl.ScoringData(ss.datasets.toy(n_cells=50), normalize=True, batch_size=20)
    >>> [(start, stop) for start, stop, _ in data.chunks()]
    [(0, 20), (20, 40), (40, 50)]
    """

    adata: AnnData
    layer: str | None = None
    normalize: bool = False
    target_sum: float = 1e4
    batch_size: int = DEFAULT_BATCH_SIZE
    _gene_means: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.layer is not None and self.layer not in self.adata.layers:
            raise KeyError(f"Layer {self.layer!r} not found; available layers: {list(self.adata.layers)}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {self.batch_size}.")

    @property
    def matrix(self) -> Any:
        """The stored matrix (``X`` or the layer)."""
        return self.adata.X if self.layer is None else self.adata.layers[self.layer]

    @property
    def where(self) -> str:
        """The matrix, as a user would name it."""
        return "adata.X" if self.layer is None else f"adata.layers[{self.layer!r}]"

    @property
    def shape(self) -> tuple[int, int]:
        """Cells × genes."""
        return int(self.adata.n_obs), int(self.adata.n_vars)

    def chunks(self) -> Iterator[tuple[int, int, sparse.csr_matrix]]:
        """``(start, stop, CSR float32 chunk)``: sorted indices, no stored zeros or NaN; normalised if asked."""
        if self.matrix is None:
            raise ValueError(f"{self.where} is empty; pass layer= naming the matrix to score.")
        for lo, hi, chunk in iter_row_batches(self.matrix, self.batch_size):
            if self.normalize:
                chunk = log_normalize(chunk, self.target_sum)
            unclean = (chunk.data == 0) | np.isnan(chunk.data)
            if not chunk.has_sorted_indices or unclean.any():
                chunk = chunk.copy()  # never touch the stored matrix
                chunk.data[unclean] = 0  # missing values count as unexpressed; stored zeros are dropped
                chunk.eliminate_zeros()
                chunk.sort_indices()
            yield lo, hi, chunk

    def gene_means(self) -> np.ndarray:
        """Mean of every gene over all cells (float64), computed once in one pass over the chunks."""
        if self._gene_means is None:
            totals = np.zeros(self.shape[1], dtype=np.float64)
            for _, _, chunk in self.chunks():
                totals += np.bincount(chunk.indices, weights=chunk.data, minlength=self.shape[1])
            self._gene_means = totals / max(self.shape[0], 1)
        return self._gene_means

    def to_memory(self) -> sparse.csr_matrix:
        """The whole (normalised) matrix as CSR float32; for scorers that need it at once (``scanpy``)."""
        blocks = [chunk for _, _, chunk in self.chunks()]
        if not blocks:
            return sparse.csr_matrix(self.shape, dtype=np.float32)
        return sparse.vstack(blocks, format="csr")
