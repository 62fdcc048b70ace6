"""RMSNorm (Zhang & Sennrich, 2019) with a learned gain.

Without gradients (evaluation, decoding) and under autocast it is `F.rms_norm`. In fp32 training it is one
autograd node with a hand-written backward (PyTorch's CPU rms_norm is a chain of elementwise ops, each a full pass
with its own saved tensors and backward: 7 % of a training step at the benchmark's size). The forward keeps
x_hat = x / rms(x) (as much memory as keeping x); the backward is
    g = dy * w;  dx = (g - x_hat * mean(g * x_hat)) / rms;  dw = sum over rows of dy * x_hat,
with the row dot products as single-pass `linalg.vecdot` reductions.
"""

import torch
import torch.nn.functional as F
from torch import nn


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        ms = torch.linalg.vector_norm(x, 2, dim=-1, keepdim=True).square_().div_(x.shape[-1])  # mean(x^2)
        inv = ms.add_(eps).rsqrt_()  # 1 / rms, (..., 1)
        x_hat = x * inv
        ctx.save_for_backward(x_hat, inv, weight)
        return x_hat * weight

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x_hat, inv, weight = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            g = dy * weight
            dot = torch.linalg.vecdot(g, x_hat, dim=-1).unsqueeze(-1).div_(x_hat.shape[-1])  # mean(g * x_hat)
            dx = g.addcmul_(x_hat, dot, value=-1.0).mul_(inv)
        if ctx.needs_input_grad[1]:
            dw = (dy * x_hat).reshape(-1, x_hat.shape[-1]).sum(0)
        return dx, dw, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            and (x.requires_grad or self.weight.requires_grad)
            and not torch.is_autocast_enabled(x.device.type)
            and x.dtype == self.weight.dtype
        ):
            return _RMSNorm.apply(x, self.weight, self.eps)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
