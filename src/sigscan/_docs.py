"""Shared parameter descriptions, filled into docstrings with :func:`doc_params` (scanpy's ``_doc_params`` idea)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

doc_adata = """\
adata
    Annotated data matrix (cells × genes)."""

doc_layer_counts = """\
layer
    Layer holding raw counts; ``None`` uses ``adata.X``."""

doc_copy = """\
copy
    Return a modified copy instead of writing into ``adata``."""

doc_gene_set = """\
genes
    The gene set: a list of identifiers, or the path to a GMT file holding one set. Genes absent from the data are
    dropped with one warning; duplicates are collapsed."""


def doc_params(**kwargs: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders in a docstring with shared parameter text."""

    def decorator(func: F) -> F:
        if func.__doc__:
            func.__doc__ = func.__doc__.format_map(kwargs)
        return func

    return decorator
