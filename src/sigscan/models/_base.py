"""What every model wrapper provides to the attribution engine."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import nn

from .._genes import GeneAlignment, align_genes
from .._logging import logger
from .._utils import as_csr_float32, scale_rows, sha256_arrays

if TYPE_CHECKING:
    from anndata import AnnData

Preprocess = Literal["log1p_cp10k", "log1p", "none"]


@dataclass(frozen=True)
class FirstLinear:
    """Decomposition ``embedding(x) = rest(x @ weight.T + bias)`` used by the exact fast path.

    ``rest`` maps the first layer's pre-activations to the embedding *before* any L2 normalisation. ``modules``, when
    given, lists the leaf modules ``rest`` applies one after the other (no skips or branches), which lets the
    engine fold affine maps and use hand-derived gradients.

    Examples
    --------
    >>> import sigscan as ss
    >>> model = ss.models.SCimilarity.random(["CD3E", "LYZ", "MS4A1"], hidden_dim=(8,), latent_dim=4)
    >>> first = model.first_linear()
    >>> isinstance(first, ss.models.FirstLinear), tuple(first.weight.shape)
    (True, (8, 3))
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    rest: nn.Module
    modules: tuple[nn.Module, ...] | None = None


@dataclass
class AttributionInputs:
    """What the captum path attributes: the tensor, extra forward arguments, and the map back to genes.

    ``internal_batch_size`` (optional) caps the rows per forward pass along the IG path (captum's
    ``internal_batch_size``; never below the number of input rows).
    """

    inputs: torch.Tensor
    extra: tuple
    to_genes: Callable[[torch.Tensor], sparse.csr_matrix]
    internal_batch_size: int | None = None


def preprocess_counts(counts: sparse.csr_matrix, how: Preprocess, *, target_sum: float = 1e4) -> sparse.csr_matrix:
    """Turn counts (cells × model genes, CSR) into model input without densifying.

    ``"log1p_cp10k"`` scales each cell to ``target_sum`` over the model's genes, then log1p;
    ``"log1p"`` applies log1p only; ``"none"`` passes values through.
    """
    x = counts.astype(np.float32, copy=True)
    if how == "log1p_cp10k":
        scale_rows(x, target_sum)
        np.log1p(x.data, out=x.data)
    elif how == "log1p":
        np.log1p(x.data, out=x.data)
    elif how != "none":
        raise ValueError(f"Unknown preprocessing {how!r}; use 'log1p_cp10k', 'log1p' or 'none'.")
    return x


class AttributionModel(ABC):
    """A single-cell encoder that sigscan can attribute.

    Subclasses set :attr:`name`, :attr:`gene_order`, :attr:`embedding_dim`, :attr:`l2_normalized`, and implement
    :meth:`preprocess` (counts → model input) and :meth:`embed` (differentiable input → embedding).

    Examples
    --------
    >>> import sigscan as ss
    >>> model = ss.models.SCimilarity.random(["CD3E", "LYZ", "MS4A1"], hidden_dim=(8,), latent_dim=4)
    >>> isinstance(model, ss.models.AttributionModel), model.name, model.embedding_dim
    (True, 'scimilarity', 4)
    """

    #: short model name used in layer keys (``attr_<name>_<method>``)
    name: str
    #: the model's genes, in input order (symbols or Ensembl IDs)
    gene_order: pd.Index
    #: whether :meth:`embed` L2-normalises its output
    l2_normalized: bool = False
    #: whether the input must be raw counts (non-negative integers)
    requires_counts: bool = True
    #: fewer model genes than this in the data is an error
    min_gene_overlap: int = 500

    @property
    @abstractmethod
    def module(self) -> nn.Module:
        """The underlying :class:`torch.nn.Module` (all parameters that define the embedding)."""

    @property
    @abstractmethod
    def embedding_dim(self) -> int:
        """Size of the embedding."""

    @abstractmethod
    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Counts aligned to :attr:`gene_order` (CSR float32) → the model's input (CSR float32)."""

    @abstractmethod
    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """Differentiable embedding of dense model input ``x``; ``normalize=False`` skips any L2 normalisation."""

    def first_linear(self) -> FirstLinear | None:
        """Decompose the encoder for the exact fast path, or ``None`` if its first operation is not linear."""
        return None

    def check_method(self, method: str) -> None:
        """Raise :class:`ValueError` (naming the reason and an alternative) if ``method`` does not apply."""
        return None

    def default_batch_size(self, device: torch.device, method: str) -> int | None:
        """Cells per batch when the user gives none (``None``: the engine's default).

        ``method`` is an attribution method or ``"embed"`` (:func:`sigscan.pp.embeddings`).
        """
        return None

    def provenance(self) -> dict[str, Any]:
        """Model settings that shape the results, recorded with them.

        Merged into the provenance that :func:`sigscan.pp.attributions` and :func:`sigscan.pp.embeddings` write to
        ``uns``.
        """
        return {}

    # --- shared behaviour -------------------------------------------------------------------------------------

    @property
    def n_genes(self) -> int:
        """Size of the model's gene space."""
        return len(self.gene_order)

    @property
    def checksum(self) -> str:
        """SHA-256 of the module's state (parameter names, dtypes, shapes and values).

        Computed once and kept until a weight changes (a new tensor, or an in-place update such as training or
        ``load_state_dict``); loaders start computing it in the background (:meth:`_prepare_in_background`).
        """
        preparing = self.__dict__.get("_preparing")
        if preparing is not None and preparing is not threading.current_thread():
            preparing.join()
        state = self.module.state_dict()
        key = tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in state.items())
        cached = self.__dict__.get("_checksum")
        if cached is not None and cached[0] == key:
            return cached[1]
        arrays = [np.frombuffer(name.encode(), dtype=np.uint8) for name in state]
        arrays += [tensor.detach().cpu().numpy() for tensor in state.values()]
        value = sha256_arrays(arrays)
        self.__dict__["_checksum"] = (key, value)
        return value

    def _prepare_in_background(self) -> None:
        """Compute :attr:`checksum` and the fast path's transposed first-layer weight in a daemon thread.

        Loaders of published checkpoints call it once the weights are read, so that a fresh process's first
        attribution call does not spend ~0.2 s hashing and transposing a SCimilarity-sized first layer while the user
        loads data meanwhile. Whatever needs either waits for the thread (:attr:`checksum`, the engine's entry).
        """
        from .._engine import _warmup

        self.__dict__["_preparing"] = _warmup.run_in_background(self._prepare, name=f"sigscan-prepare-{self.name}")

    def _prepare(self) -> None:
        from .._engine import transposed_weight

        with torch.no_grad():
            self.checksum  # noqa: B018 - computed for its cache
            split = self.first_linear()
            if split is not None:
                transposed_weight(split.weight)

    def align(
        self, var: pd.DataFrame, *, gene_symbols: str | None = None, gene_ids: str | None = None
    ) -> GeneAlignment:
        """Map the columns of ``var`` onto :attr:`gene_order` (see :func:`sigscan._genes.align_genes`)."""
        return align_genes(
            var,
            self.gene_order,
            gene_symbols=gene_symbols,
            gene_ids=gene_ids,
            min_overlap=min(self.min_gene_overlap, self.n_genes),
            model_name=self.name,
        )

    def prepare(
        self,
        adata: AnnData,
        *,
        layer: str | None = None,
        gene_symbols: str | None = None,
        gene_ids: str | None = None,
    ) -> sparse.csr_matrix:
        """AnnData → model input: CSR float32, cells × :attr:`gene_order`, zero-filled for genes the data lacks.

        The same path as :func:`sigscan.pp.attributions` (which calls :meth:`to_input` batch by batch).
        """
        alignment = self.align(adata.var, gene_symbols=gene_symbols, gene_ids=gene_ids)
        counts = adata.layers[layer] if layer is not None else adata.X
        return self.to_input(counts, alignment)

    def to_input(self, counts: Any, alignment: GeneAlignment) -> sparse.csr_matrix:
        """Counts in the data's genes (any matrix) → the model's input: aligned to :attr:`gene_order`, preprocessed."""
        return self.preprocess(alignment.to_model(as_csr_float32(counts)))

    def attribution_inputs(self, x: sparse.csr_matrix, device: torch.device) -> AttributionInputs:
        """Dense input tensor for the captum path; attributions map back through the input's sparsity pattern."""
        dense = torch.as_tensor(x.toarray(), device=device)

        def to_genes(attr: torch.Tensor) -> sparse.csr_matrix:
            values = attr.detach().cpu().numpy()
            rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
            return sparse.csr_matrix((values[rows, x.indices], x.indices, x.indptr), shape=x.shape)

        return AttributionInputs(dense, (), to_genes)

    def forward_inputs(self, inputs: torch.Tensor, *extra: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embedding of what :meth:`attribution_inputs` returns (dense-gene models: :meth:`embed`)."""
        return self.embed(inputs, normalize=normalize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n_genes={self.n_genes}, embedding_dim={self.embedding_dim})"


def load_matching_state(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    label: str,
    missing_hint: str,
    config: str = "the config",
) -> list[str]:
    """Load the parameters ``module`` needs from a checkpoint's ``state`` with strict key and shape matching.

    A missing key is a :class:`KeyError` naming it (and ``missing_hint``), a shape that differs a :class:`ValueError`
    naming the tensor and the ``config`` that implied the module's shape. Keys the module does not use (decoders,
    heads) are logged at INFO, per top-level module, and returned sorted.
    """
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        shown = ", ".join(missing[:6]) + (f" … ({len(missing)} in all)" if len(missing) > 6 else "")
        raise KeyError(f"{source} lacks {label} encoder parameters: {shown}. {missing_hint}")
    mismatched = [
        f"{key} {tuple(state[key].shape)} ({config} implies {tuple(value.shape)})"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if mismatched:
        raise ValueError(
            f"{source} does not match {config}: {'; '.join(mismatched[:4])}. Use the {config} saved with these weights."
        )
    module.load_state_dict({key: state[key] for key in expected}, strict=True)
    others = sorted(set(state) - set(expected))
    if others:
        modules = Counter(key.split(".")[0] for key in others)
        logger.info(
            "%s: ignored %d tensors not used for the cell embedding (%s)",
            label,
            len(others),
            ", ".join(f"{name}: {n}" for name, n in sorted(modules.items())),
        )
    return others


class ModelFileError(OSError, ValueError):
    """A model file that cannot be used: truncated, not what the loader reads, or in another format.

    Its message is one line: ``cannot read PATH: CAUSE; FIX``. An :class:`OSError` (the command line exits with 1, as
    for any unreadable input) and a :class:`ValueError` (what the loaders raised for a wrong format before).
    """


def model_file_error(path: str | os.PathLike, cause: str, fix: str) -> ModelFileError:
    """The one-line error for an unusable model file: ``cannot read PATH: CAUSE; FIX``."""
    return ModelFileError(f"cannot read {path}: {cause}; {fix}")


def _first_line(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return (text.strip().splitlines() or [type(error).__name__])[0].strip()


def _damage(path: Path, error: BaseException, what: str) -> str:
    """Why ``path`` could not be read, from the file itself (size, first bytes) rather than the reader's words."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return _first_line(error)
    if size == 0:
        return "the file is empty (truncated, e.g. by an interrupted download or copy)"
    if what != "checkpoint":
        return f"not a readable {what} (truncated or corrupt: {_first_line(error)})"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format: its directory is at the end of the file
        with open(path, "rb") as handle:  # the end-of-directory record lies in the last 64 KiB + 22 bytes
            handle.seek(max(0, size - 65_557))
            complete = b"PK\x05\x06" in handle.read()
        if not complete:
            return f"the checkpoint is truncated ({size:,} bytes; the end of its zip archive is missing)"
        return f"the checkpoint is corrupt ({_first_line(error)})"
    if head[:1] == b"\x80":  # the legacy (pickle) torch.save format
        return f"the checkpoint is truncated or corrupt ({_first_line(error)})"
    return f"not a PyTorch checkpoint (the file starts with {head[:12]!r})"


def _is_pytorch_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_checkpoint(path: str | os.PathLike, *, fix: str, weights_only: bool = True, **kwargs: Any) -> Any:
    """``torch.load(path, map_location="cpu")``, with an unreadable file reported in one line naming it.

    torch's own errors (``PytorchStreamReader failed reading zip archive``, ``invalid load key``, ``Invalid
    argument``) do not say which file; this raises :class:`ModelFileError` ``cannot read PATH: CAUSE; FIX`` instead,
    the cause read from the file (empty, truncated zip, not a PyTorch checkpoint, corrupt). A ``weights_only``
    refusal of a well-formed checkpoint is re-raised for the caller, which knows how to read it otherwise.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "model.ckpt"
    >>> _ = bad.write_text("<html>Not Found</html>")
    >>> read_checkpoint(bad, fix="re-download it")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sigscan.models._base.ModelFileError: cannot read .../model.ckpt: not a PyTorch checkpoint (the file starts with b'<html>Not Fo'); re-download it
    """
    import pickle

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, **kwargs)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:
        refused = "weights_only" in str(error) or "Weights only load failed" in str(error)
        damaged = any(word in str(error) for word in ("invalid load key", "truncated", "EOF"))
        if refused and _is_pytorch_file(path) and not damaged:
            raise
        raise model_file_error(path, _damage(path, error, "checkpoint"), fix) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise model_file_error(path, _damage(path, error, "checkpoint"), fix) from error


def read_model_file(path: str | os.PathLike, read: Callable[[Path], Any], *, what: str, fix: str) -> Any:
    """``read(path)`` for a model's side file (JSON, gene table, Parquet), with damage reported like a checkpoint's.

    ``what`` names the format in the message (``"JSON file"``, ``"tab-separated table"``, ``"Parquet table"``).
    """
    path = Path(path)
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, EOFError, RuntimeError) as error:
        raise model_file_error(path, _damage(path, error, what), fix) from error
