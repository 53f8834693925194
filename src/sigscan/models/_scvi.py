"""scVI (scvi-tools), including CELLxGENE Census scVI models: attribute the posterior mean of the encoder."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from scipy import sparse
from torch import nn

from ._base import AttributionModel, FirstLinear, preprocess_counts

if TYPE_CHECKING:
    import scvi


class _FCLayersRest(nn.Module):
    """scVI encoder after its first Linear: the rest of ``FCLayers`` (no covariates), then ``mean_encoder``."""

    def __init__(self, z_encoder: nn.Module):
        super().__init__()
        blocks = []
        for i, layer in enumerate(z_encoder.encoder.fc_layers):
            children = [child for child in layer if child is not None]
            blocks.extend(children[1:] if i == 0 else children)
        self.body = nn.Sequential(*blocks)
        self.mean_encoder = z_encoder.mean_encoder

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        return self.mean_encoder(self.body(pre))


class SCVI(AttributionModel):
    """A trained scVI model; the embedding is the posterior mean ``qz.loc`` of ``module.z_encoder``.

    Input: raw counts aligned to the model's genes (missing genes zero), then ``log1p`` when the module was
    trained with ``log_variational=True`` — the encoder's true input.

    Parameters
    ----------
    model
        A trained :class:`scvi.model.SCVI`, or the folder it was saved to (``model.pt``), e.g. a CELLxGENE Census
        scVI model. A folder is loaded without its training data.
    min_gene_overlap
        Fewer model genes than this in the data raise an error (default: 500, or half the genes of small models).
    name
        Name used in layer keys.

    Examples
    --------
    >>> import scvi
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:200, :300].copy()
    >>> scvi.model.SCVI.setup_anndata(adata)
    >>> vae = scvi.model.SCVI(adata, n_hidden=16, n_latent=4)
    >>> vae.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    >>> model = ss.models.SCVI(vae)
    >>> model.embedding_dim, model.n_genes
    (4, 300)
    """

    l2_normalized = False

    def __init__(self, model: scvi.model.SCVI | str | os.PathLike, *, min_gene_overlap: int = 500, name: str = "scvi"):
        var_names = None
        if isinstance(model, str | os.PathLike):
            model, var_names = _load_scvi(Path(model))
        module = model.module
        if getattr(module, "encode_covariates", False):
            raise ValueError(
                "This scVI model encodes covariates (encode_covariates=True), so its embedding depends on the batch "
                "as well as the genes; sigscan attributes gene-only encoders. Retrain with encode_covariates=False "
                "(the scvi-tools default, also used by the CELLxGENE Census models)."
            )
        self.scvi_model = model
        self.z_encoder = module.z_encoder.eval()
        self.log_variational = bool(getattr(module, "log_variational", True))
        self.gene_order = pd.Index(var_names if var_names is not None else _var_names(model)).astype(str)
        self.min_gene_overlap = min(min_gene_overlap, max(1, len(self.gene_order) // 2))
        self.name = name

    @property
    def module(self) -> nn.Module:
        return self.z_encoder

    @property
    def embedding_dim(self) -> int:
        return self.z_encoder.mean_encoder.out_features

    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        return preprocess_counts(counts, "log1p" if self.log_variational else "none")

    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        return self.z_encoder.mean_encoder(self.z_encoder.encoder(x))

    def first_linear(self) -> FirstLinear:
        linear = self.z_encoder.encoder.fc_layers[0][0]
        rest = _FCLayersRest(self.z_encoder)
        return FirstLinear(linear.weight, linear.bias, rest, (*rest.body, rest.mean_encoder))


def _var_names(model: Any) -> list[str]:
    if getattr(model, "adata", None) is None:
        raise ValueError(
            "Cannot tell the genes of this scVI model: it has no AnnData. Pass the folder it was saved to "
            "(ss.models.SCVI(path)), whose saved var_names sigscan reads."
        )
    return list(model.adata.var_names)


def _load_scvi(path: Path) -> tuple[Any, list[str]]:
    import scvi
    from scvi.model.base._save_load import _load_saved_files

    if not (path / "model.pt").exists():
        raise FileNotFoundError(f"{path} holds no model.pt: point to the folder an scVI model was saved to.")
    verbosity = scvi.settings.verbosity
    scvi.settings.verbosity = logging.WARNING  # scvi logs "already downloaded" for local files
    try:
        # scvi keeps no gene names on a model loaded without AnnData: read them from the saved file
        _, var_names, _, _ = _load_saved_files(str(path), load_adata=False, map_location="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = scvi.model.SCVI.load(str(path), adata=None, accelerator="cpu")
    finally:
        scvi.settings.verbosity = verbosity
    return model, list(var_names)
