"""The atlas gene index: the gene order sorted, so that a gene set is looked up without hashing every gene.

Matching a gene set against the gene order through pandas means reading the ~30,000 names of ``gene_order.txt``,
creating a Python string for each and building a hash table: 5-10 ms in every fresh process, more than a warm query
over 20,000 cells. So the atlas also stores ``gene_index.bin`` (a packed file, :mod:`._packed`): the genes' UTF-8
bytes, sorted, at a fixed width, and each one's column; a lookup is one binary search of the set's genes. It is written
with the gene order when the atlas is created, stamped with the manifest's gene order hash and a CRC-32 of its arrays.
An index that is missing (atlases created before it existed; ``atlas.verify(repair=True)`` adds it) or does not match is
not used: the gene order file serves, as before.
"""

from __future__ import annotations

import numpy as np

from .._logging import logger
from ._location import Location
from ._packed import Packed, PackedError, pack

#: file name at the atlas root
GENE_INDEX = "gene_index.bin"
_MAGIC = b"SIGSCANG"
_WHAT = "sigscan gene index"


def encode_gene_index(genes: list[str], gene_order_sha256: str) -> np.ndarray | None:
    """The index file for a unique gene order; ``None`` when a gene cannot be held (empty or with a NUL byte)."""
    encoded = [gene.encode() for gene in genes]
    if any(not key or b"\0" in key for key in encoded):  # fixed-width bytes drop trailing NULs
        return None
    keys = np.array(encoded)
    order = np.argsort(keys, kind="stable")
    arrays = {"genes": keys[order], "columns": order.astype(np.int32)}
    return pack(_MAGIC, {"gene_order_sha256": gene_order_sha256}, arrays, crc32=True)


def _read(location: Location, gene_order_sha256: str, n_genes: int) -> tuple[Packed | None, str | None]:
    """The atlas's gene index and why it cannot be used ("missing" when there is none), else ``(index, None)``."""
    try:
        packed = Packed.read(location, _MAGIC, _WHAT, GENE_INDEX)
    except PackedError as error:
        return None, str(error)
    if packed is None:
        return None, "missing"
    return packed, _problem(packed, gene_order_sha256, n_genes)


def index_problem(location: Location, gene_order_sha256: str, n_genes: int) -> str | None:
    """Why the atlas's gene index cannot be used ("missing" when there is none), else ``None``."""
    return _read(location, gene_order_sha256, n_genes)[1]


def _problem(packed: Packed, gene_order_sha256: str, n_genes: int) -> str | None:
    if packed.meta.get("gene_order_sha256") != gene_order_sha256:
        return f"{packed.where} was made for another gene order"
    if packed.damaged():
        return f"{packed.where} is damaged (CRC-32 mismatch)"
    if len(packed.array("genes")) != n_genes or len(packed.array("columns")) != n_genes:
        return f"{packed.where} does not hold {n_genes} genes"
    return None


class GeneIndex:
    """Looks up genes in the gene order through the atlas's gene index. Use :meth:`open`."""

    def __init__(self, packed: Packed):
        self._genes, self._columns = packed.array("genes"), packed.array("columns")

    @classmethod
    def open(cls, location: Location, gene_order_sha256: str, n_genes: int) -> GeneIndex | None:
        """The index of the atlas at ``location``; ``None`` when it has none that matches (logged)."""
        packed, problem = _read(location, gene_order_sha256, n_genes)
        if problem and problem != "missing":
            logger.warning("not using the gene index: %s; atlas.verify(repair=True) writes it again", problem)
        return None if problem else cls(packed)

    def columns(self, genes: list[str]) -> np.ndarray:
        """Each gene's column in the gene order, ``-1`` for genes it does not hold."""
        width = self._genes.dtype.itemsize
        encoded = [gene.encode() for gene in genes]
        usable = np.array([0 < len(key) <= width and b"\0" not in key for key in encoded], dtype=bool)
        keys = np.array([key if ok else b"" for key, ok in zip(encoded, usable, strict=True)], dtype=self._genes.dtype)
        position = np.minimum(np.searchsorted(self._genes, keys), len(self._genes) - 1)
        found = usable & (self._genes[position] == keys)
        return np.where(found, self._columns[position], -1).astype(np.int64)
