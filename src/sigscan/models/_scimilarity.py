"""SCimilarity: the published model folder format and its MLP encoder."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ._base import AttributionModel, FirstLinear, preprocess_counts, read_checkpoint, read_model_file


class SCimilarityEncoder(nn.Module):
    """The SCimilarity encoder architecture, with the published parameter names (``network.<i>.<j>.*``).

    Per hidden layer: Dropout, Linear, BatchNorm1d, PReLU; then a Linear to the latent space; the output is
    L2-normalised by :meth:`forward`.

    Examples
    --------
    >>> import torch
    >>> import sigscan as ss
    >>> encoder = ss.models.SCimilarityEncoder(n_genes=50, hidden_dim=(16,), latent_dim=4).eval()
    >>> embedding = encoder(torch.rand(3, 50))
    >>> tuple(embedding.shape), bool(torch.allclose(embedding.norm(dim=1), torch.ones(3)))
    ((3, 4), True)
    """

    def __init__(
        self,
        n_genes: int,
        latent_dim: int = 128,
        hidden_dim: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
        input_dropout: float = 0.4,
        residual: bool = False,
    ):
        super().__init__()
        if residual and len(set(hidden_dim)) != 1:
            raise ValueError("residual connections need equal hidden sizes")
        self.residual = residual
        self.network = nn.ModuleList()
        sizes = [n_genes, *hidden_dim]
        for i in range(len(hidden_dim)):
            self.network.append(
                nn.Sequential(
                    nn.Dropout(p=input_dropout if i == 0 else dropout),
                    nn.Linear(sizes[i], sizes[i + 1]),
                    nn.BatchNorm1d(sizes[i + 1]),
                    nn.PReLU(),
                )
            )
        self.network.append(nn.Linear(sizes[-1], latent_dim))

    def forward_prenorm(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding before L2 normalisation."""
        last = len(self.network) - 1
        for i, layer in enumerate(self.network):
            x = layer(x) + x if self.residual and 0 < i < last else layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embedding, as SCimilarity returns it."""
        return F.normalize(self.forward_prenorm(x), p=2, dim=1)


class _SCimilarityRest(nn.Module):
    """Everything after the first Linear: maps first-layer pre-activations to the pre-normalisation embedding."""

    def __init__(self, encoder: SCimilarityEncoder):
        super().__init__()
        first = encoder.network[0]
        self.head = nn.Sequential(first[2], first[3])
        self.layers = nn.ModuleList(encoder.network[1:])
        self.residual = encoder.residual

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        x = self.head(pre)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) + x if self.residual and i < last else layer(x)
        return x


def _layer_index(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", key))


class SCimilarity(AttributionModel):
    """A SCimilarity model loaded from its published folder.

    The folder holds ``encoder.ckpt`` (``{"state_dict": ...}``), ``gene_order.tsv`` (one gene per line) and
    ``layer_sizes.json`` (parameter name → shape, from which hidden and latent sizes are inferred); other files
    (``label_ints.csv``, annotation indices, …) are optional and ignored.

    Input: counts aligned to :attr:`gene_order` (missing genes zero), scaled to 10,000 over those genes, then log1p.

    Parameters
    ----------
    path
        The model folder.
    residual
        Whether the encoder was trained with residual connections (not recorded in the folder).
    min_gene_overlap
        Fewer model genes than this in the data raise an error.
    name
        Name used in layer keys.

    Examples
    --------
    >>> import sigscan as ss
    >>> model = ss.models.SCimilarity.random(ss.datasets.pbmc3k().var_names[:2000], hidden_dim=(64,), latent_dim=16)
    >>> model.embedding_dim
    16
    """

    l2_normalized = True

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        residual: bool = False,
        min_gene_overlap: int = 500,
        name: str = "scimilarity",
    ):
        path = Path(path)
        missing = [f for f in ("encoder.ckpt", "gene_order.tsv", "layer_sizes.json") if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(
                f"{path} is not a SCimilarity model folder: missing {', '.join(missing)}. "
                "Point to the folder that holds encoder.ckpt, gene_order.tsv and layer_sizes.json."
            )
        fix = "re-download the SCimilarity model folder (or re-save it with SCimilarity.save)"
        lines = read_model_file(path / "gene_order.tsv", Path.read_text, what="text file", fix=fix).splitlines()
        gene_order = pd.Index([line.strip() for line in lines if line.strip()])
        layer_sizes = read_model_file(
            path / "layer_sizes.json", lambda p: json.loads(p.read_text()), what="JSON file", fix=fix
        )
        weights = sorted(
            ((key, shape) for key, shape in layer_sizes.items() if key.endswith("weight") and len(shape) > 1),
            key=lambda item: _layer_index(item[0]),
        )
        if not weights:
            raise ValueError(f"{path / 'layer_sizes.json'} lists no weight matrices.")
        if weights[0][1][1] != len(gene_order):
            raise ValueError(
                f"gene_order.tsv has {len(gene_order)} genes but the first layer expects {weights[0][1][1]} inputs."
            )
        encoder = SCimilarityEncoder(
            n_genes=len(gene_order),
            latent_dim=weights[-1][1][0],
            hidden_dim=[shape[0] for _, shape in weights[:-1]],
            residual=residual,
        )
        checkpoint = read_checkpoint(path / "encoder.ckpt", weights_only=False, fix=fix)
        state = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
        encoder.load_state_dict(state, strict=True)
        self._init(encoder, gene_order, min_gene_overlap=min_gene_overlap, name=name)
        self.path = path
        self._prepare_in_background()

    def _init(self, encoder: SCimilarityEncoder, gene_order: pd.Index, *, min_gene_overlap: int, name: str) -> None:
        self.encoder = encoder.eval()
        self.gene_order = pd.Index(gene_order)
        self.min_gene_overlap = min_gene_overlap
        self.name = name
        self.path = None

    @classmethod
    def from_module(
        cls,
        encoder: SCimilarityEncoder,
        gene_order: Sequence[str],
        *,
        min_gene_overlap: int = 500,
        name: str = "scimilarity",
    ) -> SCimilarity:
        """Wrap an in-memory :class:`SCimilarityEncoder`."""
        self = cls.__new__(cls)
        self._init(encoder, pd.Index(gene_order), min_gene_overlap=min_gene_overlap, name=name)
        return self

    @classmethod
    def random(
        cls,
        gene_order: Sequence[str],
        *,
        hidden_dim: Sequence[int] = (1024, 1024),
        latent_dim: int = 128,
        random_state: int = 0,
        **kwargs,
    ) -> SCimilarity:
        """An SCimilarity-architecture model with random weights (for tests, tutorials and benchmarks)."""
        generator = torch.Generator().manual_seed(random_state)
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            encoder = SCimilarityEncoder(len(gene_order), latent_dim=latent_dim, hidden_dim=hidden_dim)
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm1d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        return cls.from_module(encoder, gene_order, **kwargs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the published folder format (``encoder.ckpt``, ``gene_order.tsv``, ``layer_sizes.json``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self.encoder.state_dict()
        torch.save({"state_dict": state}, path / "encoder.ckpt")
        (path / "gene_order.tsv").write_text("\n".join(map(str, self.gene_order)) + "\n")
        (path / "layer_sizes.json").write_text(json.dumps({k: list(v.shape) for k, v in state.items()}, indent=1))
        return path

    @property
    def module(self) -> nn.Module:
        return self.encoder

    @property
    def embedding_dim(self) -> int:
        return self.encoder.network[-1].out_features

    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        return preprocess_counts(counts, "log1p_cp10k")

    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        return self.encoder(x) if normalize else self.encoder.forward_prenorm(x)

    def first_linear(self) -> FirstLinear:
        linear = self.encoder.network[0][1]
        rest = _SCimilarityRest(self.encoder)
        chain = None if self.encoder.residual else (*rest.head, *(m for layer in rest.layers for m in _leaves(layer)))
        return FirstLinear(linear.weight, linear.bias, rest, chain)


def _leaves(module: nn.Module) -> list[nn.Module]:
    return list(module) if isinstance(module, nn.Sequential) else [module]
