"""Shared parameter descriptions, filled into docstrings with :func:`doc_params` (scanpy's ``_doc_params`` idea)."""

from __future__ import annotations

import re
import textwrap
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


doc_show_save_ax = """\
ax
    Axes to draw into: one Axes, or a sequence with one Axes per panel (default: a new figure).
figsize
    Size of a new figure (ignored when ``ax`` is given).
show
    Show the figure (returns ``None`` then).
save
    Path to save the figure to.
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of the Axes."""


def doc_params(**kwargs: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholder lines of a docstring with shared text, indented like the placeholder.

    A placeholder stands alone on its line; ``{{`` and ``}}`` elsewhere in the docstring give literal braces.
    """

    def indent(match: re.Match) -> str:
        return textwrap.indent(kwargs[match.group(2)], match.group(1))

    def decorator(func: F) -> F:
        if func.__doc__:
            doc = re.sub(r"^([ \t]*)\{(\w+)\}[ \t]*$", indent, func.__doc__, flags=re.MULTILINE)
            func.__doc__ = doc.replace("{{", "{").replace("}}", "}")
        return func

    return decorator
