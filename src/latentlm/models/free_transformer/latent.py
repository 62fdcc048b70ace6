"""The Free Transformer's latent machinery (Fleuret 2025, §3): encoder, Binary Mapper, free-bits KL.

- `LatentEncoder`: one non-causal block whose queries are a learned constant zeta (RoPE'd at the token
  positions, so positions differ), keys/values from X_{L/2}; a readout linear D -> H gives bit logits.
- `binary_mapper` (Eqs. 6-8): sample H bits, code d = sum_h 2^(h-1) b_h, output Y + G - sg(G) through the
  post-sampler linear 2^H -> D. Implemented as one autograd function: forward gathers row d of the code table;
  backward computes the exact Eq. 8 gradient chunked over codes, so no (B, T, 2^H) tensor ever exists.
- `binary_kl`: KL(Q(Z_t) || uniform) = H log 2 - sum_h H_b(sigmoid(l_h)) (Eq. 4 for a factorised Q).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.nn import AttnContext, Block, Linear, RMSNorm


class LatentEncoder(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, ffn: int, bits: int, eps: float):
        super().__init__()
        self.zeta = nn.Parameter(torch.zeros(d_model))  # the learned constant query
        self.block = Block(d_model, n_heads, n_kv_heads, head_dim, ffn, eps)
        self.norm = RMSNorm(d_model, eps)
        self.readout = Linear(d_model, bits)

    def forward(self, x: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        """x (B, T, D) = X_{L/2}; ctx non-causal -> bit logits (B, T, H)."""
        q = self.zeta.expand_as(x)  # (B, T, D): the same vector at every position
        h = self.block(q, ctx, kv_h=x)
        return self.readout(self.norm(h))


def bit_table(start: int, end: int, bits: int, device) -> torch.Tensor:
    """U[d, h] = bit h of code d, for codes start..end-1: (C, H) float."""
    codes = torch.arange(start, end, device=device)
    return ((codes[:, None] >> torch.arange(bits, device=device)) & 1).float()


class _BinaryMapper(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, table, codes, budget):
        """logits (N, H), table (2^H, D), codes (N,) -> table[codes] (N, D): the forward value of W (Y + G - sg(G))."""
        ctx.save_for_backward(logits, table, codes)
        ctx.budget = budget
        return table[codes]

    @staticmethod
    def backward(ctx, grad_out):
        logits, table, codes = ctx.saved_tensors
        grad_logits = grad_table = None
        if ctx.needs_input_grad[0]:  # first, so its chunk buffers are gone before the table-sized gradient exists
            grad_logits = _logit_grad(logits.float(), table, grad_out.float(), ctx.budget)
        if ctx.needs_input_grad[1]:  # dL/dW = g Y^T: only the sampled rows
            grad_table = torch.zeros_like(table).index_add_(0, codes, grad_out.to(table.dtype))
        return grad_logits, grad_table, None, None


def _logit_grad(L: torch.Tensor, table: torch.Tensor, g: torch.Tensor, budget: int) -> torch.Tensor:
    """dl/dL_h = sum_d a_d G_d (U_h(d) - p_h) with a_d = <W_d, g> (Eq. 8's straight-through path).

    G factorises over bits, so with d = d_lo + 2^lo * d_hi it is an outer product G_hi[d_hi] * G_lo[d_lo] of two
    small tables; the sums over codes with bit h set reduce b = a * G along the other half. Codes are processed
    in chunks of whole d_hi rows so the live (N, chunk) buffers stay under `budget` elements. The only large
    product is a = g W^T, which the exact gradient cannot avoid.
    """
    N, H = L.shape
    lo = H // 2
    n_lo, n_hi = 2**lo, 2 ** (H - lo)
    logq1, logq0 = F.logsigmoid(L), F.logsigmoid(-L)  # log p(b_h = 1), log p(b_h = 0): (N, H)

    def half_table(bits: slice, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        U = bit_table(0, count, bits.stop - bits.start, L.device)  # (count, h)
        G = (logq1[:, bits] @ U.T + logq0[:, bits] @ (1 - U).T).exp()  # (N, count)
        return U, G

    U_lo, G_lo = half_table(slice(0, lo), n_lo)
    U_hi, G_hi = half_table(slice(lo, H), n_hi)
    rows = max(1, min(n_hi, budget // max(N * n_lo, 1)))  # d_hi rows per chunk
    b_lo = torch.zeros(N, n_lo, device=L.device)  # sum over d_hi of b
    b_hi = torch.empty(N, n_hi, device=L.device)  # sum over d_lo of b
    for r0 in range(0, n_hi, rows):
        r1 = min(n_hi, r0 + rows)
        a = (g @ table[r0 * n_lo : r1 * n_lo].float().T).view(N, r1 - r0, n_lo)  # (N, rows, n_lo)
        b = a.mul_(G_hi[:, r0:r1, None]).mul_(G_lo[:, None, :])  # a * G
        b_lo += b.sum(1)
        b_hi[:, r0:r1] = b.sum(2)
    s1 = torch.cat([b_lo @ U_lo, b_hi @ U_hi], dim=1)  # (N, H): sum_d b_d U_h(d)
    s0 = b_hi.sum(1, keepdim=True)  # sum_d b_d
    return s1 - torch.sigmoid(L) * s0


def sample_codes(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample H independent bits b_h ~ Bernoulli(sigmoid(l_h)) (Eq. 6) -> codes sum_h 2^(h-1) b_h (Eq. 7)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    bits = (u < torch.sigmoid(logits.float())).long()
    return (bits << torch.arange(logits.shape[-1], device=logits.device)).sum(-1)


def binary_mapper(
    logits: torch.Tensor, table: torch.Tensor, codes: torch.Tensor, budget: int = 1 << 22
) -> torch.Tensor:
    """logits (..., H), table (2^H, D), codes (...) -> (..., D), with the Eq. 8 straight-through gradient."""
    shape = logits.shape[:-1]
    out = _BinaryMapper.apply(logits.reshape(-1, logits.shape[-1]), table, codes.reshape(-1), budget)
    return out.view(*shape, table.shape[1])


def binary_kl(logits: torch.Tensor) -> torch.Tensor:
    """Per-bit KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)) in nats: log 2 - H_b(p). (..., H) -> (..., H), fp32."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    entropy = -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))
    return math.log(2) - entropy


def free_bits_loss(kl_per_token: torch.Tensor, kappa_nats: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5: mean over tokens of max(0, KL_t - kappa)."""
    hinge = F.relu(kl_per_token - kappa_nats)
    if mask is None:
        return hinge.mean()
    return (hinge * mask).sum() / mask.sum().clamp(min=1)
