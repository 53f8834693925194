"""Hand-derived forward/backward for encoders whose rest is a chain of affine maps and ReLU-family activations.

After the first Linear, SCimilarity (BatchNorm, PReLU, Linear, …) and scVI (BatchNorm, ReLU, Dropout, …, Linear)
are chains of affine maps (Linear, eval-mode BatchNorm, Dropout/Identity) and piecewise-linear activations. Folding
consecutive affine maps and computing the summation-head gradient by hand avoids autograd's bookkeeping and
keeps only one activation-slope tensor per layer. The result equals autograd (and captum) up to float rounding:
tests compare it with the captum path.

DeepLIFT (rescale rule, as captum applies it): activations captum hooks (ReLU, LeakyReLU) use the secant slope
``(act(z) − act(z₀)) / (z − z₀)`` against the baseline's pre-activation ``z₀``; PReLU is not hooked by captum and
uses its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_AFFINE = (nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.Identity)
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)
_DEEPLIFT_HOOKED = (nn.ReLU, nn.LeakyReLU)
_EPS = 1e-10


@dataclass
class _Stage:
    """``z = h Wᵀ + b`` (dense) or ``z = h ⊙ s + b`` (diagonal), then an optional activation."""

    weight: torch.Tensor | None
    scale: torch.Tensor
    bias: torch.Tensor
    activation: nn.Module | None

    def apply(self, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.weight is not None:
            return torch.addmm(self.bias, h, self.weight.T, out=out)
        return torch.addcmul(self.bias, h, self.scale, out=out)

    def transpose(self, grad: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.weight is not None:
            return torch.mm(grad, self.weight, out=out)
        return torch.mul(grad, self.scale, out=out)


class _Workspace:
    """Reusable buffers for the per-chunk tensors.

    Fresh multi-megabyte allocations each step cost more (page faults on first touch) than the arithmetic in them.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def __call__(self, key: tuple, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None):
        dtype = dtype or like.dtype
        numel = 1
        for size in shape:
            numel *= size
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = torch.empty(numel, dtype=dtype, device=like.device)
            self._buffers[key] = buffer
        return buffer[:numel].view(shape)


@dataclass
class AffineChain:
    """``rest(u + b) = A_L(σ_{L-1}(… σ_0(A_0(u)) …))`` with consecutive affine maps folded (``A_0`` diagonal)."""

    stages: list[_Stage]


class _Unsupported(Exception):
    """A module the chain cannot fold: the engine falls back to autograd."""


def _affine_of(
    module: nn.Module, like: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(dense weight, diagonal scale, bias) of an eval-mode affine module; ``None`` entries mean identity/zero."""
    if isinstance(module, nn.Linear):
        return module.weight.detach(), None, None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.BatchNorm1d):
        if module.running_mean is None or module.running_var is None:
            raise _Unsupported
        inv = torch.rsqrt(module.running_var + module.eps)
        gamma = module.weight.detach() if module.affine else torch.ones_like(inv)
        beta = module.bias.detach() if module.affine else torch.zeros_like(inv)
        return None, gamma * inv, beta - module.running_mean * gamma * inv
    return None, None, None  # Dropout (eval) / Identity


def compile_chain(modules: list[nn.Module], bias: torch.Tensor | None, like: torch.Tensor) -> AffineChain | None:
    """Fold ``modules`` (applied to the first Linear's output, whose bias is ``bias``) into an :class:`AffineChain`.

    Returns ``None`` (use autograd) when a module is neither affine nor a supported activation, or when a dense
    map follows the first Linear directly.
    """
    try:
        with torch.no_grad():
            return _compile(modules, bias, like)
    except _Unsupported:
        return None


def _compile(modules: list[nn.Module], bias: torch.Tensor | None, like: torch.Tensor) -> AffineChain | None:
    width = like.shape[0]
    stages: list[_Stage] = []
    weight: torch.Tensor | None = None
    scale = torch.ones(width, dtype=like.dtype, device=like.device)
    shift = bias.detach().clone() if bias is not None else torch.zeros_like(scale)
    for module in modules:
        if isinstance(module, _ACTIVATIONS):
            if isinstance(module, nn.PReLU) and module.weight.numel() not in (1, shift.shape[0]):
                raise _Unsupported
            stages.append(_Stage(weight, scale, shift, module))
            weight, scale, shift = None, torch.ones_like(shift), torch.zeros_like(shift)
            continue
        if not isinstance(module, _AFFINE):
            raise _Unsupported
        w, s, b = _affine_of(module, like)
        if w is not None:  # y = W (A h + shift) + b
            if not stages:
                raise _Unsupported
            weight = w @ weight if weight is not None else w * scale[None, :]
            shift = w @ shift
            scale = torch.ones_like(shift)
        elif s is not None:  # y = s ⊙ (A h + shift) + b
            if weight is not None:
                weight = weight * s[:, None]
            else:
                scale = scale * s
            shift = shift * s
        if b is not None:
            shift = shift + b
    if not stages:
        return None
    stages.append(_Stage(weight, scale, shift, None))
    return AffineChain(stages)


def _negative_slope(activation: nn.Module, like: torch.Tensor) -> torch.Tensor:
    if isinstance(activation, nn.ReLU):
        return torch.zeros((), dtype=like.dtype, device=like.device)
    if isinstance(activation, nn.LeakyReLU):
        return torch.as_tensor(activation.negative_slope, dtype=like.dtype, device=like.device)
    return activation.weight.detach()  # PReLU: one slope or one per channel


def _forward(chain: AffineChain, u: torch.Tensor, reference: list[torch.Tensor] | None = None):
    """Run the chain on ``u`` (first-layer output without bias); return (embedding, slopes, pre-activations)."""
    return _forward_from(chain, chain.stages[0].apply(u), reference)


def _forward_from(
    chain: AffineChain,
    z: torch.Tensor,
    reference: list[torch.Tensor] | None = None,
    workspace: _Workspace | None = None,
):
    """Run the chain from the first stage's pre-activation ``z``; return (embedding, slopes, pre-activations).

    With a ``workspace`` (gradient passes), intermediate tensors live in reused buffers and ``z`` is overwritten;
    pre-activations are then not returned.
    """
    slopes, pres = [], []
    one = torch.ones((), dtype=z.dtype, device=z.device)
    h = z
    for index, stage in enumerate(chain.stages):
        if index:
            out = workspace(("z", index), (h.shape[0], stage.bias.shape[0]), h) if workspace is not None else None
            z = stage.apply(h, out=out)
        if stage.activation is None:
            return z, slopes, pres
        negative = _negative_slope(stage.activation, z)
        if workspace is not None and reference is None:
            positive = torch.gt(z, 0, out=workspace(("positive", index), z.shape, z, torch.bool))
            slope = torch.where(positive, one, negative, out=workspace(("slope", index), z.shape, z))
            h = z.mul_(slope)
            slopes.append(slope)
            continue
        slope = torch.where(z > 0, one, negative)
        h = torch.mul(z, slope)
        if reference is not None and isinstance(stage.activation, _DEEPLIFT_HOOKED):
            z_ref = reference[len(slopes)]
            delta = z - z_ref
            flat = delta.abs() < _EPS
            secant = (h - z_ref * torch.where(z_ref > 0, one, negative)) / torch.where(flat, one, delta)
            slope = torch.where(flat, slope, secant)
        slopes.append(slope)
        pres.append(z)
    raise AssertionError("an AffineChain ends with an affine stage")  # pragma: no cover


def _head_gradient(e: torch.Tensor, w: torch.Tensor, normalize: bool) -> torch.Tensor:
    """∂/∂e of ``Σ_k |f_k w_k|`` with ``f = e`` or ``f = e / ‖e‖`` (``e``: steps × cells × latent, ``w`` broadcasts)."""
    if not normalize:
        return torch.sign(e * w).mul_(w)
    norm = e.norm(dim=-1, keepdim=True).clamp_min_(1e-12)
    f = e / norm
    g = torch.sign(f * w).mul_(w)
    return g.sub_(f * (f * g).sum(dim=-1, keepdim=True)).div_(norm)


def _backward_to_first(
    chain: AffineChain, grad: torch.Tensor, slopes: list[torch.Tensor], workspace: _Workspace
) -> torch.Tensor:
    """Gradient with respect to the first stage's pre-activation."""
    stages = chain.stages
    for i in range(len(stages) - 1, 0, -1):
        width = slopes[i - 1].shape[1]
        grad = stages[i].transpose(grad, out=workspace(("grad", i), (grad.shape[0], width), grad)).mul_(slopes[i - 1])
    return grad


def chain_embedding(chain: AffineChain, u: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Embedding from the first layer's output without bias (``x Wᵀ``)."""
    e, _, _ = _forward(chain, u)
    return F.normalize(e, p=2, dim=1) if normalize else e


@torch.no_grad()
def chain_hidden_gradient(
    chain: AffineChain,
    u: torch.Tensor,
    w: torch.Tensor | None,
    *,
    alphas: torch.Tensor,
    step_sizes: torch.Tensor,
    normalize: bool,
    method: str,
    max_rows: int,
) -> torch.Tensor:
    """Hidden-space gradient ``ḡ`` such that the gene attribution is ``x ⊙ (ḡ W)``.

    IG: ``Σ_steps step_size · ∂s/∂u(α·u)``; IxG: the gradient at ``α = 1``; DL: the DeepLIFT multiplier.
    ``u = x Wᵀ`` without bias (cells × hidden). Steps are processed ``max_rows // cells`` at a time as one block.
    ``w`` (the head's weights, the cell's own embedding) may be ``None`` when the only step is ``α = 1``: it is then
    taken from that step's forward pass.
    """
    n, width = u.shape
    first = chain.stages[0]
    reference = None
    if method == "dl":
        _, _, reference = _forward(chain, torch.zeros(1, width, dtype=u.dtype, device=u.device))
    scaled_u = u * first.scale  # the first stage is diagonal: z = α (s ⊙ u) + b along the path
    total = torch.zeros_like(u)
    workspace = _Workspace()
    per_call = max(1, max_rows // max(n, 1))
    for start in range(0, len(alphas), per_call):
        a = alphas[start : start + per_call]
        k = len(a)
        z = workspace(("z", 0), (k, n, width), u)
        torch.addcmul(first.bias, a.view(k, 1, 1), scaled_u.unsqueeze(0), out=z)
        e, slopes, _ = _forward_from(chain, z.view(k * n, width), reference, workspace)
        if w is None:
            if len(alphas) != 1:  # the caller passes alpha = 1 (reading it back would wait for the device)
                raise ValueError("the head's weights are needed unless the only step is alpha = 1")
            w = F.normalize(e, p=2, dim=1) if normalize else e.clone()
        grad = _head_gradient(e.view(k, n, -1), w, normalize)
        grad.mul_(step_sizes[start : start + per_call].view(k, 1, 1))
        first_grad = _backward_to_first(chain, grad.view(k * n, -1), slopes, workspace)
        total += first_grad.view(k, n, width).sum(dim=0)
    return total.mul_(first.scale)
