"""The attribution engine: captum reference path and the exact first-layer fast path (SPEC 1.1, 1.3).

Both explain the summation head ``s(x') = Σ_k |f_k(x') w_k|`` with ``w = f(x)`` detached, against a zero baseline.
The fast path uses that the first operation on genes is a Linear: with ``u = x Wᵀ`` (computed once, sparse),
the path ``α·x`` maps to pre-activations ``α·u + b``, and the gene gradient is ``Wᵀ ∂s/∂pre``, which is only
needed at the cell's non-zero genes. On CPU the sparse steps are numba kernels (:mod:`._kernels`); on a GPU they are
torch kernels on the device (:mod:`._torch_kernels`), fed by prefetching copies (:mod:`._transfer`).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._device import resolve_device
from .._genes import GeneAlignment
from .._threads import limit_threads
from .._utils import scale_rows, sha256_strings
from .._validation import check_counts
from ..models import AttributionModel, FirstLinear
from ..models._transformer import autocast
from . import _warmup
from ._kernels import GeneMajor, dense_weights, sampled_rowdot, sparse_dense_mm
from ._mlp import chain_embedding, chain_hidden_gradient, compile_chain
from ._torch_kernels import DeviceBatch, attribution_values, device_batch, first_layer
from ._transfer import IN_FLIGHT, PendingValues, PinnedBuffers, Stager, prefetch

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import pandas as pd

Method = Literal["ig", "dl", "ixg"]
METHODS: tuple[str, ...] = ("ig", "dl", "ixg")
HEADS: tuple[str, ...] = ("auto", "prenorm", "reference")
ENGINES: tuple[str, ...] = ("auto", "fast", "captum")
#: ``precision=`` of the engine: autocast of the dense network (the fast path's sparse steps stay float32)
PRECISIONS: tuple[str, ...] = ("float32", "bf16")

#: rows (cells × steps) processed per autograd call on the fast path; bounds memory independently of n_steps
_FAST_ROWS = 2048


@lru_cache(maxsize=16)
def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (captum's ``gausslegendre`` rule)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


class SummationHead(nn.Module):
    """``s(inputs) = Σ_k |f_k(inputs) · w_k|`` where ``f`` is ``forward`` and ``w`` is passed along."""

    def __init__(self, module: nn.Module, forward: Callable[..., torch.Tensor]):
        super().__init__()
        self.module = module  # registered so captum's DeepLift hooks reach its non-linearities
        self._forward = forward

    def forward(self, inputs: torch.Tensor, weights: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return (self._forward(inputs, *extra) * weights).abs().sum(dim=1)


@contextmanager
def inference_mode(module: nn.Module, device: torch.device):
    """Eval mode, frozen parameters, on ``device``; restores the module's previous state afterwards."""
    was_training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    original = next(module.parameters(), torch.empty(0)).device
    module.eval().to(device)
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        module.to(original).train(was_training)


def _rest_head(split: FirstLinear, normalize: bool) -> SummationHead:
    """Summation head over the rest of the network, taking ``u = x Wᵀ`` (no bias) as input."""
    bias = split.bias

    def forward(u: torch.Tensor) -> torch.Tensor:
        out = split.rest(u if bias is None else u + bias)
        return torch.nn.functional.normalize(out, p=2, dim=1) if normalize else out

    return SummationHead(split.rest, forward)


@contextmanager
def quiet_captum():
    """Silence captum's per-call advice (gradient requirements, DeepLift hook notes); errors still surface."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")
        warnings.filterwarnings("ignore", message=r".*(sparse_csr_tensor|Setting forward, backward hooks).*")
        yield


def hidden_gradient(head: SummationHead, u: torch.Tensor, w: torch.Tensor, method: str, n_steps: int) -> torch.Tensor:
    """``ḡ`` in hidden space such that the gene attribution is ``x ⊙ (ḡ W)``."""
    n = u.shape[0]
    if method == "ixg":
        inputs = u.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(head(inputs, w).sum(), inputs)
        return grad
    if method == "dl":
        from captum.attr import DeepLift

        deeplift = DeepLift(head, multiply_by_inputs=False)
        with quiet_captum():
            return deeplift.attribute(u, baselines=torch.zeros_like(u), additional_forward_args=(w,))
    alphas, step_sizes = gauss_legendre(n_steps)
    alphas_t = torch.as_tensor(alphas, dtype=u.dtype, device=u.device)
    sizes_t = torch.as_tensor(step_sizes, dtype=u.dtype, device=u.device)
    total = torch.zeros_like(u)
    per_call = max(1, _FAST_ROWS // max(n, 1))
    for start in range(0, n_steps, per_call):
        stop = min(n_steps, start + per_call)
        k = stop - start
        scaled = (alphas_t[start:stop, None, None] * u[None]).reshape(k * n, -1).requires_grad_(True)
        out = head(scaled, w.repeat(k, 1))
        weights = sizes_t[start:stop].repeat_interleave(n)
        (grad,) = torch.autograd.grad(out, scaled, grad_outputs=weights)
        total += grad.view(k, n, -1).sum(dim=0)
    return total


#: ``id(weight)`` → (weak reference to the weight, state key, ``weight.T``): a cache of this module, not an attribute
#: on the model; an entry is dropped when its weight is garbage-collected
_TRANSPOSED: dict[int, tuple[weakref.ref, tuple, torch.Tensor]] = {}


def transposed_weight(weight: torch.Tensor) -> torch.Tensor:
    """Contiguous ``weight.T``, cached until the weight is replaced or modified (version counter)."""
    key = (weight.data_ptr(), weight._version, weight.device)
    cached = _TRANSPOSED.get(id(weight))
    if cached is not None and cached[0]() is weight and cached[1] == key:
        return cached[2]
    transposed = weight.detach().T.contiguous()
    if cached is None or cached[0]() is not weight:
        weakref.finalize(weight, _TRANSPOSED.pop, id(weight), None)
    _TRANSPOSED[id(weight)] = (weakref.ref(weight), key, transposed)
    return transposed


#: run the fast path's sparse steps as torch kernels on CPU too (tests and ``benchmarks/gpu.py --device cpu`` set it)
TORCH_KERNELS_ON_CPU = False


class FastPath:
    """Exact first-layer fast path for one model, head and device (weights prepared once per run).

    On CPU the sparse steps (first layer, gene-gradient gather) are numba kernels on the host; on any other device
    (:attr:`on_device`) they are torch kernels there (:mod:`._torch_kernels`), and :meth:`submit` leaves the result on
    its way back so that batches pipeline (:meth:`AttributionSettings.attribute_batches`). ``precision`` autocasts
    the dense network between them (:data:`PRECISIONS`).
    """

    def __init__(self, model: AttributionModel, *, normalize: bool, device: torch.device, precision: str = "float32"):
        split = model.first_linear()
        if split is None:
            raise ValueError(
                f"{model.name}: the first operation on genes is not a Linear layer, so the fast path does not "
                "apply; use engine='captum'."
            )
        self.normalize = normalize
        self.device = device
        self.head = _rest_head(split, normalize)
        self.weight_t = transposed_weight(split.weight)  # genes × hidden: one row per gene
        self.precision = precision
        # --- device branch: torch kernels and pipelined copies (everything else below is shared or the CPU branch)
        self.on_device = device.type != "cpu" or TORCH_KERNELS_ON_CPU
        self._stager = Stager(device) if self.on_device else None
        self._results = PinnedBuffers(device) if self.on_device else None
        self._n_submitted = 0
        # --- CPU branch
        self.weight_t_numpy = None if self.on_device else self.weight_t.numpy()
        # the folded chain computes into float32 buffers (``out=``), which autocast does not reach: reduced precision
        # runs the rest of the network through autograd
        folded = split.modules is not None and precision == "float32"
        self.chain = compile_chain(list(split.modules), split.bias, split.weight[:, 0]) if folded else None

    def _first_layer(self, by_gene: GeneMajor, dense_w: torch.Tensor) -> torch.Tensor:
        """CPU branch: ``u = x Wᵀ`` (no bias) from the sparse input: cost ∝ non-zeros."""
        return torch.from_numpy(sparse_dense_mm(by_gene, self.weight_t_numpy, dense_w))

    def hidden_gradient(self, u: torch.Tensor, *, method: str, n_steps: int) -> torch.Tensor:
        """``ḡ`` such that the gene attribution is ``x ⊙ (ḡ W)``."""
        if self.chain is None:
            with torch.no_grad():
                w = self.head._forward(u)
            with torch.enable_grad(), autocast(self.precision, u.device):  # w, the cell's embedding, stays float32
                return hidden_gradient(self.head, u, w, method, n_steps).detach()
        if method == "ig":
            alphas, sizes = (torch.as_tensor(v, dtype=u.dtype, device=u.device) for v in gauss_legendre(n_steps))
        else:
            alphas = sizes = torch.ones(1, dtype=u.dtype, device=u.device)
        # point methods evaluate the chain at the cell itself: its forward pass gives the head's weights too
        w = chain_embedding(self.chain, u, self.normalize) if method == "ig" else None
        return chain_hidden_gradient(
            self.chain,
            u,
            w,
            alphas=alphas,
            step_sizes=sizes,
            normalize=self.normalize,
            method=method,
            max_rows=_FAST_ROWS,
        )

    def submit(self, batch: DeviceBatch, *, method: str, n_steps: int) -> PendingValues:
        """Device branch: queue the attributions of a batch already on the device; their copy back is under way."""
        hidden = self.hidden_gradient(first_layer(batch, self.weight_t), method=method, n_steps=n_steps)
        values = attribution_values(batch, hidden, self.weight_t)
        self._n_submitted += 1
        return PendingValues(batch, values, self._results, self._n_submitted)

    def __call__(self, x: sparse.csr_matrix, *, method: str, n_steps: int) -> sparse.csr_matrix:
        """Signed attributions with the sparsity of ``x``."""
        if self.on_device:
            return self.submit(self._stager.stage(x).wait(), method=method, n_steps=n_steps).result()
        by_gene = GeneMajor.from_csr(x)
        dense_w = dense_weights(by_gene, self.weight_t)
        hidden = self.hidden_gradient(self._first_layer(by_gene, dense_w), method=method, n_steps=n_steps)
        dots = sampled_rowdot(by_gene, hidden.numpy(), self.weight_t_numpy, dense_w)
        values = x.data * dots
        return sparse.csr_matrix((values.astype(np.float32), x.indices.copy(), x.indptr.copy()), shape=x.shape)


def attribute_captum(
    model: AttributionModel,
    x: sparse.csr_matrix,
    *,
    method: str,
    n_steps: int,
    normalize: bool,
    device: torch.device,
    internal_batch_size: int | None = None,
    precision: str = "float32",
) -> sparse.csr_matrix:
    """Reference path: captum on the model's full (dense) input; signed attributions with the sparsity of ``x``.

    ``precision`` autocasts the model's forward pass (its output is returned as float32).
    """
    from captum.attr import DeepLift, InputXGradient, IntegratedGradients

    prepared = model.attribution_inputs(x, device)

    def forward(inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        with autocast(precision, inputs.device):
            out = model.forward_inputs(inputs, *extra, normalize=normalize)
        return out.float()

    head = SummationHead(model.module, forward)
    inputs = prepared.inputs
    with torch.no_grad():
        w = forward(inputs, *prepared.extra)
    args = (w, *prepared.extra)
    with torch.enable_grad(), quiet_captum():
        if method == "ig":
            attr = IntegratedGradients(head, multiply_by_inputs=True).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                additional_forward_args=args,
                n_steps=n_steps,
                method="gausslegendre",
                internal_batch_size=internal_batch_size or prepared.internal_batch_size,
            )
        elif method == "dl":
            attr = DeepLift(head, multiply_by_inputs=True).attribute(
                inputs, baselines=torch.zeros_like(inputs), additional_forward_args=args
            )
        else:
            attr = InputXGradient(head).attribute(inputs.clone().requires_grad_(True), additional_forward_args=args)
    return prepared.to_genes(attr)


def summation_head_values(
    model: AttributionModel, x: sparse.csr_matrix, *, normalize: bool, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """``s(x)`` and ``s(0)`` per cell (the right-hand side of IG completeness)."""
    prepared = model.attribution_inputs(x, device)
    with torch.no_grad():
        f = model.forward_inputs(prepared.inputs, *prepared.extra, normalize=normalize)
        f0 = model.forward_inputs(torch.zeros_like(prepared.inputs), *prepared.extra, normalize=normalize)
        s = (f * f).abs().sum(dim=1)
        s0 = (f0 * f).abs().sum(dim=1)
    return s.cpu().numpy(), s0.cpu().numpy()


class CaptumPath:
    """Reference path (captum on the dense model input), with the same interface as :class:`FastPath`."""

    def __init__(self, model: AttributionModel, *, normalize: bool, device: torch.device, precision: str = "float32"):
        self.model, self.normalize, self.device, self.precision = model, normalize, device, precision

    def __call__(self, x: sparse.csr_matrix, *, method: str, n_steps: int) -> sparse.csr_matrix:
        """Signed attributions with the sparsity of ``x``."""
        return attribute_captum(
            self.model,
            x,
            method=method,
            n_steps=n_steps,
            normalize=self.normalize,
            device=self.device,
            precision=self.precision,
        )


def resolve_head(model: AttributionModel, method: str, head: str) -> str:
    """``"auto"``: the pre-normalisation head for point-gradient methods on L2-normalised encoders (SPEC 1.1)."""
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; use 'auto', 'prenorm' or 'reference'.")
    if head == "auto":
        return "prenorm" if model.l2_normalized and method in ("dl", "ixg") else "reference"
    return head


def resolve_precision(model: AttributionModel, precision: str | None) -> str:
    """The run's precision: the model's own ``precision`` (scGPT, scFoundation) or the engine's (:data:`PRECISIONS`).

    ``None`` takes the model's (``"float32"`` for models without one). A model built with its own precision decides
    it: asking the engine for another is an error naming where to set it.
    """
    own = getattr(model, "precision", None)
    if precision is None:
        return own or "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use 'float32' (the default) or 'bf16'.")
    if own is not None and own != precision:
        raise ValueError(
            f"{type(model).__name__} was built with precision={own!r}; pass precision={precision!r} to "
            f"ss.models.{type(model).__name__}(...) instead, or leave precision= unset here."
        )
    return precision


#: largest and smallest batch chosen from free device memory, and the share of that memory it may take
_DEVICE_BATCH = (256, 32_768, 0.5)
#: non-zero genes per cell assumed when sizing device batches (deep cells; PBMC3k has ~1,000 in SCimilarity's genes)
_NNZ_PER_CELL = 8_000


def bytes_per_cell(model: AttributionModel, task: str) -> int:
    """Device memory one cell of a batch may need, from the model's widths (``task``: a method or ``"embed"``).

    The fast path holds per cell the CSR input and the gathered products (16 bytes per non-zero) and about eight
    float32 rows per hidden unit of each layer (activations, slopes, gradients, IG's running sum); the dense path
    holds the model input along the IG path (50 steps) a few times over. :data:`IN_FLIGHT` batches are on the device
    at once.
    """
    split = model.first_linear()
    network = split.rest if split is not None else model.module
    widths = [m.out_features for m in network.modules() if isinstance(m, nn.Linear)] + [model.embedding_dim]
    if split is not None:
        widths.append(split.weight.shape[0])
        per_cell = 16 * min(model.n_genes, _NNZ_PER_CELL)
    else:
        per_cell = 16 * model.n_genes * (50 if task == "ig" else 1)
    return IN_FLIGHT * (per_cell + 8 * 4 * sum(widths))


def batch_size_for_memory(free_bytes: int, per_cell: int) -> int:
    """Cells per batch that fit in a share of ``free_bytes``: a multiple of 256 within :data:`_DEVICE_BATCH`."""
    smallest, largest, share = _DEVICE_BATCH
    cells = int(free_bytes * share) // max(per_cell, 1)
    return max(smallest, min(largest, cells // 256 * 256))


def _default_batch_size(model: AttributionModel, device: torch.device, task: str) -> int:
    """Cells per batch when the user gives none: the model's hint, else by device and task (``"embed"`` or a method).

    On CUDA the batch is sized to the free device memory (:func:`batch_size_for_memory`).
    """
    hint = model.default_batch_size(device, task)
    if hint is not None:
        return hint
    if device.type == "cpu":
        return 256 if task == "ig" else 1024
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return batch_size_for_memory(free, bytes_per_cell(model, task))
    return 8192


def check_model(model: Any) -> None:
    """Raise :class:`TypeError` (naming the fix) unless ``model`` is a sigscan model wrapper."""
    if not isinstance(model, AttributionModel):
        raise TypeError(
            f"model must be a sigscan model wrapper (ss.models.SCimilarity, SCVI, ScGPT or TorchEncoder), "
            f"not {type(model).__name__}. Wrap a torch module with ss.models.TorchEncoder(module, gene_order)."
        )


def _check_arguments(model: Any, method: str, n_steps: int, target_sum: float, engine: str) -> None:
    check_model(model)
    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}; use one of {', '.join(METHODS)}.")
    if method == "ig" and (not isinstance(n_steps, int | np.integer) or n_steps < 1):
        raise ValueError(f"n_steps must be a positive integer, not {n_steps!r}.")
    if not np.isfinite(target_sum) or target_sum <= 0:
        raise ValueError(f"target_sum must be a positive number, not {target_sum!r}.")
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; use 'auto', 'fast' or 'captum'.")
    model.check_method(method)


def counts_matrix(adata: Any, layer: str | None) -> Any:
    """The matrix holding the counts: ``adata.X`` or ``adata.layers[layer]`` (an error naming the fix otherwise)."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the layer with raw counts.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}. Use layer=None for X.")
    return adata.layers[layer]


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass(frozen=True)
class ModelSettings:
    """How one run feeds a model, resolved once: gene alignment, device, batch size and the counts layer.

    Shared by :func:`~sigscan.pp.attributions`, :func:`~sigscan.pp.completeness` and :func:`~sigscan.pp.embeddings`:
    :meth:`model_input` turns a batch of counts into model input, :meth:`check_counts` validates counts,
    :meth:`inference` holds the model in inference mode on the device.
    """

    model: AttributionModel
    device: torch.device
    batch_size: int
    alignment: GeneAlignment
    layer: str | None

    @staticmethod
    def _resolve_fields(
        model: AttributionModel,
        var: pd.DataFrame,
        *,
        task: str,
        device: str | torch.device,
        batch_size: int | None,
        layer: str | None,
        gene_symbols: str | None,
        gene_ids: str | None,
    ) -> dict[str, Any]:
        alignment = model.align(var, gene_symbols=gene_symbols, gene_ids=gene_ids)
        torch_device = resolve_device(device)
        batch_size = batch_size if batch_size is not None else _default_batch_size(model, torch_device, task)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}.")
        return {
            "model": model,
            "device": torch_device,
            "batch_size": int(batch_size),
            "alignment": alignment,
            "layer": layer,
        }

    @classmethod
    def resolve(
        cls,
        model: AttributionModel,
        var: pd.DataFrame,
        *,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        layer: str | None = None,
        gene_symbols: str | None = None,
        gene_ids: str | None = None,
    ) -> ModelSettings:
        """Check the model and resolve the gene alignment (to ``var``), device and batch size (for embedding)."""
        check_model(model)
        return cls(
            **cls._resolve_fields(
                model,
                var,
                task="embed",
                device=device,
                batch_size=batch_size,
                layer=layer,
                gene_symbols=gene_symbols,
                gene_ids=gene_ids,
            )
        )

    @property
    def where(self) -> str:
        """The counts matrix, as the user names it in messages."""
        return f"adata.layers[{self.layer!r}]" if self.layer is not None else "adata.X"

    def check_counts(self, counts: Any, *, where: str | None = None) -> None:
        """Raise unless ``counts`` are what the model reads (finite, non-negative, integers if it needs counts)."""
        check_counts(counts, where=where or self.where, require_integers=self.model.requires_counts)

    def model_input(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """A batch of counts in the data's genes → the model's input (see :meth:`AttributionModel.to_input`)."""
        return self.model.to_input(counts, self.alignment)

    def inference(self) -> contextlib.AbstractContextManager:
        """The model in inference mode on the device for the duration of the ``with`` block."""
        return inference_mode(self.model.module, self.device)


@dataclass(frozen=True)
class AttributionSettings(ModelSettings):
    """Every choice of one attribution run, resolved once: what the engine runs and what provenance records.

    Build it with :meth:`resolve`; :meth:`engine` opens the model on the device and yields the engine,
    :meth:`attribute` turns model input into scaled absolute attributions, :meth:`provenance` says what was run.
    """

    method: str = "ig"
    n_steps: int = 50
    head: str = "reference"
    engine_name: str = "fast"  # "fast" or "captum"
    target_sum: float = 1000.0
    precision: str = "float32"

    @classmethod
    def resolve(  # type: ignore[override]
        cls,
        model: AttributionModel,
        var: pd.DataFrame,
        *,
        method: str = "ig",
        n_steps: int = 50,
        head: str = "auto",
        engine: str = "auto",
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        target_sum: float = 1000,
        layer: str | None = None,
        gene_symbols: str | None = None,
        gene_ids: str | None = None,
        precision: str | None = None,
    ) -> AttributionSettings:
        """Check the arguments and resolve ``"auto"`` choices, the gene alignment (to ``var``), device and batch size."""
        _check_arguments(model, method, n_steps, target_sum, engine)
        resolved_head = resolve_head(model, method, head)
        resolved_precision = resolve_precision(model, precision)
        fields = cls._resolve_fields(
            model,
            var,
            task=method,
            device=device,
            batch_size=batch_size,
            layer=layer,
            gene_symbols=gene_symbols,
            gene_ids=gene_ids,
        )
        use_fast = engine != "captum" and model.first_linear() is not None
        if engine == "fast" and not use_fast:
            raise ValueError(f"{model.name}: the fast path needs a Linear first layer; use engine='captum' or 'auto'.")
        return cls(
            **fields,
            method=method,
            n_steps=int(n_steps) if method == "ig" else 0,
            head=resolved_head,
            engine_name="fast" if use_fast else "captum",
            target_sum=float(target_sum),
            precision=resolved_precision,
        )

    @property
    def normalize(self) -> bool:
        """Whether the explained embedding is L2-normalised (the reference head of a normalising encoder)."""
        return self.head == "reference" and self.model.l2_normalized

    @property
    def key(self) -> str:
        """Default layer name: ``attr_<model>_<method>``."""
        return f"attr_{self.model.name}_{self.method}"

    def provenance(self) -> dict[str, Any]:
        """What was run, as recorded in ``uns["sigscan"]["attributions"][key]``."""
        return {
            "model": self.model.name,
            "model_class": type(self.model).__name__,
            "weights_sha256": self.model.checksum,
            "n_genes_model": self.model.n_genes,
            "n_genes_overlap": self.alignment.n_overlap,
            "gene_identifiers": self.alignment.source,
            "method": self.method,
            "n_steps": self.n_steps,
            "head": self.head,
            "target_sum": self.target_sum,
            "engine": self.engine_name,
            "precision": self.precision,
            "layer": self.layer if self.layer is not None else "X",
            "sigscan_version": _version(),
            **self.model.provenance(),
        }

    def fingerprint(self, obs_names: pd.Index, var_names: pd.Index, *, space: str, n_columns: int) -> dict[str, Any]:
        """What must match for an ``out=`` store to be resumed: settings, batch size, and the very cells and genes."""
        fingerprint = {
            **self.provenance(),
            "batch_size": self.batch_size,
            "shape": [len(obs_names), n_columns],
            "space": space,
            # the same shape is not the same data: never resume onto other (or reordered) cells or genes
            "obs_names_sha256": sha256_strings(list(obs_names.astype(str))),
            "var_names_sha256": sha256_strings(list(var_names.astype(str))),
        }
        fingerprint.pop("sigscan_version")
        return fingerprint

    @contextmanager
    def engine(self) -> Iterator[FastPath | CaptumPath]:
        """The model in inference mode on the device, and the engine that attributes it (fast or captum path)."""
        _warmup.wait()  # never overlap the background kernel loading started by ``import sigscan``
        numba_runs = self.engine_name == "fast" and self.device.type == "cpu"
        with self.inference(), limit_threads(numba=numba_runs):
            yield make_engine(
                self.model, self.engine_name, normalize=self.normalize, device=self.device, precision=self.precision
            )

    def attribute(self, engine: FastPath | CaptumPath, x: sparse.csr_matrix) -> sparse.csr_matrix:
        """Absolute attributions of model input ``x``, each row scaled to :attr:`target_sum`."""
        return self._scaled(engine(x, method=self.method, n_steps=self.n_steps))

    def attribute_batches(
        self, engine: FastPath | CaptumPath, batches: Iterable[tuple[int, int, sparse.csr_matrix]]
    ) -> Iterator[tuple[int, int, sparse.csr_matrix]]:
        """:meth:`attribute` over ``(start, stop, model input)`` batches, yielding ``(start, stop, attributions)``.

        On the fast path's device branch the batches pipeline: batch ``k + 1`` is read and copied to the device
        (:func:`._transfer.prefetch`) while batch ``k`` computes, and batch ``k - 1``'s result is handed out only then.
        Elsewhere each batch is attributed in turn.
        """
        if not (isinstance(engine, FastPath) and engine.on_device):
            for start, stop, x in batches:
                yield start, stop, self.attribute(engine, x)
            return
        pending = None
        for start, stop, batch in prefetch(batches, self.device):
            submitted = (start, stop, engine.submit(batch, method=self.method, n_steps=self.n_steps))
            if pending is not None:
                yield pending[0], pending[1], self._scaled(pending[2].result())
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1], self._scaled(pending[2].result())

    def _scaled(self, attr: sparse.csr_matrix) -> sparse.csr_matrix:
        np.abs(attr.data, out=attr.data)
        attr.eliminate_zeros()
        return scale_rows(attr, self.target_sum)


def make_engine(
    model: AttributionModel, engine: str, *, normalize: bool, device: torch.device, precision: str = "float32"
) -> FastPath | CaptumPath:
    """The engine for ``engine`` (``"fast"`` or ``"captum"``); both are called as ``engine(x, method=, n_steps=)``."""
    if engine not in ("fast", "captum"):
        raise ValueError(f"Unknown engine {engine!r}; use 'fast' or 'captum'.")
    return (FastPath if engine == "fast" else CaptumPath)(
        model, normalize=normalize, device=device, precision=precision
    )


def embed_batch(model: AttributionModel, x: sparse.csr_matrix, device: torch.device) -> np.ndarray:
    """Embeddings (float32, cells × ``embedding_dim``) of one batch of model input ``x`` (CSR, cells × model genes).

    Encoders whose first operation is a Linear layer take the sparse product ``x Wᵀ`` (cost ∝ non-zeros) and run
    only the rest of the network; others get the model's own (dense per batch) input.
    """
    with torch.no_grad():
        split = model.first_linear()
        if split is not None:
            out = _first_linear_embedding(split, x, device)
            if model.l2_normalized:
                out = torch.nn.functional.normalize(out, p=2, dim=1)
        else:
            prepared = model.attribution_inputs(x, device)
            out = model.forward_inputs(prepared.inputs, *prepared.extra, normalize=True)
    return out.detach().to("cpu", torch.float32).numpy()


def _first_linear_embedding(split: FirstLinear, x: sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    u = first_layer(device_batch(x, device), transposed_weight(split.weight))
    return split.rest(u if split.bias is None else u + split.bias)
