"""Gene identifiers: tell symbols from Ensembl IDs and align a dataset's genes to a model's gene order."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._logging import logger

IdentifierType = Literal["ensembl", "symbol"]

_ENSEMBL = re.compile(r"^ENS[A-Z]*[GT]\d{6,}(\.\d+)?$")
#: var columns that commonly hold the other identifier type, tried in order when the names do not match.
_CANDIDATE_COLUMNS: dict[IdentifierType, tuple[str, ...]] = {
    "ensembl": ("gene_ids", "gene_id", "ensembl_id", "ensembl_ids", "feature_id", "ensembl", "id"),
    "symbol": ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "gene_names", "symbol", "symbols", "name"),
}


def identifier_type(names: pd.Index | np.ndarray | list[str]) -> IdentifierType:
    """Guess whether ``names`` are Ensembl IDs or gene symbols (majority vote)."""
    values = pd.Index(names).astype(str)
    if len(values) == 0:
        return "symbol"
    sample = values[:: max(1, len(values) // 2000)]
    is_ensembl = np.fromiter((bool(_ENSEMBL.match(v)) for v in sample), dtype=bool, count=len(sample))
    return "ensembl" if is_ensembl.mean() > 0.5 else "symbol"


def _strings(index: pd.Index) -> pd.Index:
    """``index`` as strings: the same object when it holds strings already (keeping pandas' cached hash table)."""
    return index if index.inferred_type == "string" else pd.Index(index.astype(str))


def _strip_version(names: pd.Index) -> pd.Index:
    return pd.Index([n.split(".")[0] if _ENSEMBL.match(n) else n for n in names.astype(str)])


@dataclass(frozen=True)
class GeneAlignment:
    """How the columns of a dataset map onto a model's gene order.

    Attributes
    ----------
    data_to_model
        For every dataset column, the model gene position it feeds, or -1.
    n_model_genes
        Size of the model's gene space.
    source
        Which dataset identifiers were used (``"var_names"`` or a ``var`` column).
    """

    data_to_model: np.ndarray
    n_model_genes: int
    source: str

    @property
    def n_overlap(self) -> int:
        """Number of model genes found in the dataset."""
        return int((self.data_to_model >= 0).sum())

    @property
    def in_model(self) -> np.ndarray:
        """Boolean mask over dataset columns: does the column feed a model gene."""
        return self.data_to_model >= 0

    def to_model(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Reorder the columns of a dataset batch into the model's gene space (missing genes are zero).

        Indices within a row are left in the data's order (no sort): the engine does not need sorted rows.
        """
        return _remap_columns(counts, self.data_to_model, self.n_model_genes, sort=False)

    def to_data(self, values: sparse.csr_matrix) -> sparse.csr_matrix:
        """Map a batch in model gene space back to the dataset's columns (model genes absent from the data drop)."""
        return _remap_columns(values, self.model_to_data, len(self.data_to_model), sort=True)

    @property
    def model_to_data(self) -> np.ndarray:
        """For every model gene, the dataset column feeding it, or -1."""
        mapping = np.full(self.n_model_genes, -1, dtype=np.int64)
        present = np.flatnonzero(self.data_to_model >= 0)
        mapping[self.data_to_model[present]] = present
        return mapping


def _remap_columns(matrix: sparse.csr_matrix, mapping: np.ndarray, n_columns: int, *, sort: bool) -> sparse.csr_matrix:
    """Move every stored entry of column ``j`` to column ``mapping[j]``, dropping those mapped to -1 (O(nnz)).

    ``mapping`` is injective on kept columns, so no duplicates arise.
    """
    columns = mapping.astype(np.int32, copy=False)[matrix.indices]
    if columns.size == 0 or columns.min() >= 0:  # nothing to drop (always so on the way back to the data)
        out = sparse.csr_matrix((matrix.data.copy(), columns, matrix.indptr.copy()), shape=(matrix.shape[0], n_columns))
    else:
        keep = columns >= 0
        kept_before = np.zeros(matrix.nnz + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        indptr = kept_before[matrix.indptr]
        out = sparse.csr_matrix((matrix.data[keep], columns[keep], indptr), shape=(matrix.shape[0], n_columns))
    if sort:
        out.sort_indices()
    else:
        out.has_sorted_indices = False
    return out


def align_genes(
    var: pd.DataFrame,
    gene_order: pd.Index,
    *,
    gene_symbols: str | None = None,
    gene_ids: str | None = None,
    min_overlap: int = 1,
    model_name: str = "model",
) -> GeneAlignment:
    """Align a dataset's genes (``var``) to a model's ``gene_order``.

    The model's identifier type is detected from ``gene_order``. The dataset's identifiers are, in order:
    the column named by ``gene_symbols``/``gene_ids`` (whichever matches the model's type), ``var_names`` when they
    are of the model's type, or the first well-known ``var`` column holding that type. Ensembl version suffixes
    are ignored. Raises :class:`ValueError` when fewer than ``min_overlap`` model genes are found.
    """
    model_type = identifier_type(gene_order)
    requested = gene_ids if model_type == "ensembl" else gene_symbols
    if requested is not None:
        if requested not in var.columns:
            raise ValueError(f"adata.var has no column {requested!r}; available columns: {list(var.columns)}.")
        names, source = pd.Index(var[requested].astype(str)), f"var[{requested!r}]"
    elif identifier_type(var.index) == model_type:
        names, source = _strings(var.index), "var_names"
    else:
        names, source = None, "var_names"
        for column in _CANDIDATE_COLUMNS[model_type]:
            if column in var.columns and identifier_type(var[column].astype(str)) == model_type:
                names, source = pd.Index(var[column].astype(str)), f"var[{column!r}]"
                break
        if names is None:
            names = pd.Index(var.index.astype(str))
    if model_type == "ensembl":
        names = _strip_version(names)
        model_genes = _strip_version(pd.Index(gene_order))
    else:
        model_genes = _strings(gene_order if isinstance(gene_order, pd.Index) else pd.Index(gene_order))

    if model_genes.is_unique:  # one lookup in the model's own (cached) hash table
        data_to_model = model_genes.get_indexer(names).astype(np.int64)
    else:  # the first of a repeated model gene
        position = pd.Series(np.arange(len(model_genes)), index=model_genes)
        position = position[~position.index.duplicated()]
        data_to_model = position.reindex(names).to_numpy()
        data_to_model = np.where(np.isnan(data_to_model), -1, data_to_model).astype(np.int64)
    # a model gene is fed by one column only: the first occurrence wins
    used = data_to_model >= 0
    duplicated = np.zeros(len(names), dtype=bool) if names.is_unique else pd.Index(data_to_model).duplicated() & used
    data_to_model[duplicated] = -1
    if duplicated.any():
        warnings.warn(
            f"{int(duplicated.sum())} model genes appear more than once in the data's {source} (e.g. "
            f"{names[np.flatnonzero(duplicated)[0]]!r}): only the first column of each feeds the model, the other "
            "copies get attribution 0. Sum or drop the duplicated columns first so each gene is one column.",
            UserWarning,
            stacklevel=3,
        )
    alignment = GeneAlignment(data_to_model, len(gene_order), source)

    expected = "Ensembl gene IDs (e.g. ENSG00000141510)" if model_type == "ensembl" else "gene symbols (e.g. TP53)"
    logger.info(
        "%s: %d of %d model genes found in the data (%s)", model_name, alignment.n_overlap, len(gene_order), source
    )
    if alignment.n_overlap < min_overlap:
        found = identifier_type(names)
        other = "gene_ids" if model_type == "ensembl" else "gene_symbols"
        if found == model_type:
            missing = [g for g in model_genes[:200] if g not in set(names)][:3]
            raise ValueError(
                f"Only {alignment.n_overlap} of the {len(gene_order)} genes of {model_name} were found in the data "
                f"(minimum {min_overlap}), although both use {expected.split(' (')[0]}: the data measure a different "
                f"gene panel than the model was trained on (model genes missing from the data's {source}, e.g. "
                f"{', '.join(missing)}). Use data with the model's genes (the full transcriptome, or the same "
                "organism and annotation), or lower min_gene_overlap if this is intended."
            )
        raise ValueError(
            f"Only {alignment.n_overlap} of the {len(gene_order)} genes of {model_name} were found in the data "
            f"(minimum {min_overlap}). The model expects {expected}; the data's {source} look like "
            f"{'Ensembl IDs' if found == 'ensembl' else 'gene symbols'}. Pass {other}='<var column>' naming the "
            f"adata.var column that holds {expected.split(' (')[0]}, or lower min_gene_overlap if this is intended."
        )
    return alignment
