"""SwiGLU feed-forward (Shazeer, 2020): w2(silu(x W1) * x W3), with W1 and W3 fused into one matmul.

The gate product silu(a) * b is one autograd node over the fused (..., 2 * hidden) projection, so its backward
writes the gradients of a and b straight into one buffer: splitting the projection and letting autograd join the
two halves' gradients would cost a full-size concatenation per layer (seen in benchmarks/gpt_vs_hf.py --profile).
"""

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.nn.linear import Linear


class _GateProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ab: torch.Tensor, hidden: int) -> torch.Tensor:
        a, b = ab.split(hidden, dim=-1)
        silu_a = F.silu(a)
        ctx.save_for_backward(ab, silu_a)
        ctx.hidden = hidden
        return silu_a * b

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        ab, silu_a = ctx.saved_tensors
        a, b = ab.split(ctx.hidden, dim=-1)
        grad = torch.empty_like(ab)
        ga, gb = grad.split(ctx.hidden, dim=-1)
        torch.mul(g, silu_a, out=gb)  # d/db
        torch.ops.aten.silu_backward.grad_input(g * b, a, grad_input=ga)  # d/da = g * b * silu'(a)
        return grad, None


def gate_product(ab: torch.Tensor, hidden: int) -> torch.Tensor:
    """silu(ab[..., :hidden]) * ab[..., hidden:]."""
    if torch.is_grad_enabled() and ab.requires_grad:
        return _GateProduct.apply(ab, hidden)
    a, b = ab.split(hidden, dim=-1)
    return F.silu(a) * b


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w13 = Linear(d_model, 2 * hidden)  # gate and up projections, fused
        self.w2 = Linear(hidden, d_model)  # residual output projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(gate_product(self.w13(x), self.hidden))  # (B, T, hidden) inside
