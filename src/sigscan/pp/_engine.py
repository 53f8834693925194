"""The attribution engine: captum reference path and the exact first-layer fast path (SPEC 1.1, 1.3).

Both explain the summation head ``s(x') = Σ_k |f_k(x') w_k|`` with ``w = f(x)`` detached, against a zero baseline.
The fast path uses that the first operation on genes is a Linear: with ``u = x Wᵀ`` (computed once, sparse),
the path ``α·x`` maps to pre-activations ``α·u + b``, and the gene gradient is ``Wᵀ ∂s/∂pre``, which is only
needed at the cell's non-zero genes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from ..models._base import AttributionModel, FirstLinear
from ._kernels import GeneMajor, sampled_rowdot, sparse_dense_mm
from ._mlp import chain_embedding, chain_hidden_gradient, compile_chain

Method = Literal["ig", "dl", "ixg"]
METHODS: tuple[str, ...] = ("ig", "dl", "ixg")

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
def _quiet_captum():
    """Silence captum's per-call advice (gradient requirements, DeepLift hook notes); errors still surface."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")
        warnings.filterwarnings("ignore", message=r".*(sparse_csr_tensor|Setting forward, backward hooks).*")
        yield


def _csr_tensor(x: sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(x.indptr.astype(np.int64)),
        torch.from_numpy(x.indices.astype(np.int64)),
        torch.from_numpy(x.data.astype(np.float32, copy=False)),
        size=x.shape,
    ).to(device)


def _hidden_gradient(head: SummationHead, u: torch.Tensor, w: torch.Tensor, method: str, n_steps: int) -> torch.Tensor:
    """``ḡ`` in hidden space such that the gene attribution is ``x ⊙ (ḡ W)``."""
    n = u.shape[0]
    if method == "ixg":
        inputs = u.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(head(inputs, w).sum(), inputs)
        return grad
    if method == "dl":
        from captum.attr import DeepLift

        deeplift = DeepLift(head, multiply_by_inputs=False)
        with _quiet_captum():
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


def _sampled_rowdot(x: sparse.csr_matrix, hidden: torch.Tensor, weight_t: torch.Tensor) -> np.ndarray:
    """For every non-zero (i, j) of ``x``: ``hidden[i] · weight_t[j]``.

    Only the genes expressed somewhere in the batch are multiplied (one GEMM over that union), so the dense
    cells × genes product is never formed over the whole gene space.
    """
    if x.nnz == 0:
        return np.zeros(0, dtype=np.float32)
    genes, position = np.unique(x.indices, return_inverse=True)
    device = hidden.device
    product = hidden @ weight_t[torch.from_numpy(genes).to(device)].T  # cells × expressed genes
    rows = torch.from_numpy(np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))).to(device)
    return product[rows, torch.from_numpy(position.ravel()).to(device)].cpu().numpy()


def _transposed(model: AttributionModel, weight: torch.Tensor) -> torch.Tensor:
    """Contiguous ``weight.T``, cached on the model until the weight is replaced or modified (version counter)."""
    key = (weight.data_ptr(), weight._version, weight.device)
    cached = getattr(model, "_sigscan_weight_t", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    transposed = weight.detach().T.contiguous()
    model._sigscan_weight_t = (key, transposed)
    return transposed


class FastPath:
    """Exact first-layer fast path for one model, head and device (weights prepared once per run)."""

    def __init__(self, model: AttributionModel, *, normalize: bool, device: torch.device):
        split = model.first_linear()
        if split is None:
            raise ValueError(
                f"{model.name}: the first operation on genes is not a Linear layer, so the fast path does not "
                "apply; use engine='captum'."
            )
        self.normalize = normalize
        self.device = device
        self.head = _rest_head(split, normalize)
        self.weight_t = _transposed(model, split.weight)  # genes × hidden: one row per gene
        self.weight_t_numpy = self.weight_t.numpy() if device.type == "cpu" else None
        self.chain = (
            compile_chain(list(split.modules), split.bias, split.weight[:, 0]) if split.modules is not None else None
        )

    def _first_layer(self, x: sparse.csr_matrix, by_gene: GeneMajor | None) -> torch.Tensor:
        """``u = x Wᵀ`` (no bias) from the sparse input: cost ∝ non-zeros."""
        if by_gene is not None:
            return torch.from_numpy(sparse_dense_mm(by_gene, x.shape[0], self.weight_t_numpy))
        if x.nnz == 0:
            return torch.zeros(x.shape[0], self.weight_t.shape[1], device=self.device)
        return torch.sparse.mm(_csr_tensor(x, self.device), self.weight_t)

    def hidden_gradient(self, u: torch.Tensor, *, method: str, n_steps: int) -> torch.Tensor:
        """``ḡ`` such that the gene attribution is ``x ⊙ (ḡ W)``."""
        if self.chain is None:
            with torch.no_grad():
                w = self.head._forward(u)
            with torch.enable_grad():
                return _hidden_gradient(self.head, u, w, method, n_steps).detach()
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

    def __call__(self, x: sparse.csr_matrix, *, method: str, n_steps: int) -> sparse.csr_matrix:
        """Signed attributions with the sparsity of ``x``."""
        by_gene = GeneMajor.from_csr(x) if self.weight_t_numpy is not None else None
        hidden = self.hidden_gradient(self._first_layer(x, by_gene), method=method, n_steps=n_steps)
        if by_gene is not None:
            dots = sampled_rowdot(by_gene, hidden.numpy(), self.weight_t_numpy)
        else:
            dots = _sampled_rowdot(x, hidden, self.weight_t)
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
) -> sparse.csr_matrix:
    """Reference path: captum on the model's full (dense) input; signed attributions with the sparsity of ``x``."""
    from captum.attr import DeepLift, InputXGradient, IntegratedGradients

    prepared = model.attribution_inputs(x, device)

    def forward(inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return model.forward_inputs(inputs, *extra, normalize=normalize)

    head = SummationHead(model.module, forward)
    inputs = prepared.inputs
    with torch.no_grad():
        w = forward(inputs, *prepared.extra)
    args = (w, *prepared.extra)
    with torch.enable_grad(), _quiet_captum():
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
