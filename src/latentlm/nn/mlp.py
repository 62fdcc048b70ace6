"""SwiGLU feed-forward (Shazeer, 2020): w2(silu(x W1) * x W3), with W1 and W3 fused into one matmul."""

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.nn.linear import Linear


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w13 = Linear(d_model, 2 * hidden)  # gate and up projections, fused
        self.w2 = Linear(hidden, d_model)  # residual output projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split(self.hidden, dim=-1)  # (B, T, hidden) each
        return self.w2(F.silu(gate) * up)
