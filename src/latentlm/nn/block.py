"""Pre-norm transformer block: h + gate * Attn(norm(h)), then h + gate * MLP(norm(h)).

`kv_h` lets keys and values come from another stream (normalised by the same attention norm):
the Free Transformer's injection block reads K/V from X + R and its encoder reads them from X_{L/2}
under constant queries. `gate` (B, T) multiplies both residual updates: Thoughtbubbles' attenuation.
"""

import torch
from torch import nn

from latentlm.nn.attention import Attention, AttnContext
from latentlm.nn.mlp import SwiGLU
from latentlm.nn.norm import RMSNorm


class Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        ffn_hidden: int,
        norm_eps: float = 1e-5,
        layer_idx: int = 0,
    ):
        super().__init__()
        self.attn_norm = RMSNorm(d_model, norm_eps)
        self.attn = Attention(d_model, n_heads, n_kv_heads, head_dim, layer_idx)
        self.mlp_norm = RMSNorm(d_model, norm_eps)
        self.mlp = SwiGLU(d_model, ffn_hidden)

    def forward(
        self,
        h: torch.Tensor,
        ctx: AttnContext,
        *,
        kv_h: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kv = None if kv_h is None else self.attn_norm(kv_h)
        a = self.attn(self.attn_norm(h), ctx, kv=kv)  # (B, T, D)
        h = h + (a if gate is None else gate[..., None] * a)
        m = self.mlp(self.mlp_norm(h))
        return h + (m if gate is None else gate[..., None] * m)
