"""Pieces shared by the transformer wrappers (scGPT, scFoundation): fused attention and reduced precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Precision = Literal["float32", "bf16", "fp16"]
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """Validate a ``precision=`` argument."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use 'float32' (the default), 'bf16' or 'fp16'.")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast the forward pass to ``precision`` on ``device`` (no-op for ``"float32"``).

    Matrix products and attention then run in bf16/fp16 (fused kernels on CUDA); reductions, LayerNorm and softmax
    stay in float32 as autocast decides. On CPU only bf16 is offered by PyTorch's autocast, so ``"fp16"`` is refused
    there.
    """
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    if device.type == "cpu" and dtype is torch.float16:
        raise ValueError("precision='fp16' needs a CUDA device; use precision='bf16' or 'float32' on CPU.")
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def post_norm_layer(
    layer: nn.TransformerEncoderLayer, x: torch.Tensor, keep: torch.Tensor, *, first_only: bool = False
) -> torch.Tensor:
    """One post-norm :class:`torch.nn.TransformerEncoderLayer` in eval mode, batch-first, with fused attention.

    ``norm1(x + attention(x))``, then ``norm2(x + ffn(x))``: the arithmetic of the PyTorch layer, with attention by
    :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU). ``keep`` is
    ``True`` where a key may be attended (batch × 1 × 1 × keys). ``first_only`` computes the output of the first
    position only (all positions still serve as keys and values).
    """
    attention = layer.self_attn
    batch, length, d = x.shape
    heads = attention.num_heads
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    key_value = F.linear(x, weight[d:], bias[d:]).view(batch, length, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
    residual = x[:, :1] if first_only else x
    query = F.linear(residual, weight[:d], bias[:d])
    query = query.view(batch, residual.shape[1], heads, d // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(query, key_value[0], key_value[1], attn_mask=keep)
    out = F.linear(
        out.transpose(1, 2).reshape(batch, residual.shape[1], d), attention.out_proj.weight, attention.out_proj.bias
    )
    x = layer.norm1(residual + out)
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))
