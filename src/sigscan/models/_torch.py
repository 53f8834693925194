"""Any PyTorch encoder over genes."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ._base import AttributionModel, FirstLinear, Preprocess, preprocess_counts

_TRANSPARENT = (nn.Dropout, nn.Identity)


class TorchEncoder(AttributionModel):
    """Wrap any :class:`torch.nn.Module` that maps a cells × genes tensor to an embedding.

    When the module is an :class:`torch.nn.Sequential` whose first operation (after Dropout/Identity) is a
    :class:`torch.nn.Linear`, the exact fast path is used; otherwise attributions go through captum.

    Parameters
    ----------
    module
        The encoder; it is put in eval mode.
    gene_order
        The genes the module's input columns stand for.
    preprocess
        ``"log1p_cp10k"`` (scale each cell to 10,000 over the model genes, then log1p), ``"log1p"`` or ``"none"``.
    l2_normalize
        L2-normalise the module's output to form the embedding (the module output is then the pre-normalisation
        embedding used by ``head="prenorm"``).
    name
        Name used in layer keys.
    min_gene_overlap
        Fewer model genes than this in the data raise an error (default: 500, or half the genes of small models).

    Examples
    --------
    >>> import torch, sigscan as ss
    >>> encoder = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> model = ss.models.TorchEncoder(encoder, ["CD3E", "MS4A1", "LYZ"], preprocess="log1p")
    >>> model.embedding_dim
    2
    """

    def __init__(
        self,
        module: nn.Module,
        gene_order: Sequence[str],
        *,
        preprocess: Preprocess = "log1p_cp10k",
        l2_normalize: bool = False,
        name: str = "encoder",
        min_gene_overlap: int = 500,
    ):
        if preprocess not in ("log1p_cp10k", "log1p", "none"):
            raise ValueError(f"Unknown preprocess {preprocess!r}; use 'log1p_cp10k', 'log1p' or 'none'.")
        self._module = module.eval()
        self.gene_order = pd.Index(gene_order).astype(str)
        self.preprocessing = preprocess
        self.requires_counts = preprocess != "none"
        self.l2_normalized = l2_normalize
        self.name = name
        self.min_gene_overlap = min(min_gene_overlap, max(1, len(self.gene_order) // 2))
        with torch.no_grad():
            parameter = next(module.parameters(), None)
            probe = torch.zeros(2, len(self.gene_order), dtype=parameter.dtype if parameter is not None else None)
            self._embedding_dim = int(module(probe).shape[-1])

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def embedding_dim(self) -> int:
        return self._embedding_dim

    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        return preprocess_counts(counts, self.preprocessing)

    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        out = self._module(x)
        return F.normalize(out, p=2, dim=1) if normalize and self.l2_normalized else out

    def first_linear(self) -> FirstLinear | None:
        if not isinstance(self._module, nn.Sequential):
            return None
        children = list(self._module)
        for i, child in enumerate(children):
            if isinstance(child, _TRANSPARENT):
                continue
            if isinstance(child, nn.Linear):
                rest = nn.Sequential(*children[i + 1 :])
                return FirstLinear(child.weight, child.bias, rest, _flatten(rest))
            return None
        return None


def _flatten(module: nn.Sequential) -> tuple[nn.Module, ...] | None:
    """Leaf modules of nested Sequentials, or None when another container could branch."""
    leaves: list[nn.Module] = []
    for child in module:
        if isinstance(child, nn.Sequential):
            inner = _flatten(child)
            if inner is None:
                return None
            leaves.extend(inner)
        elif len(list(child.children())) == 0:
            leaves.append(child)
        else:
            return None
    return tuple(leaves)
