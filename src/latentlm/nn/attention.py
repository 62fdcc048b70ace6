"""Multi-head attention with explicit RoPE positions, GQA, optional per-key bias and a KV cache.

Inputs that vary between variants are explicit:
- queries and keys/values may come from different tensors (Free Transformer injects Z into K/V only,
  its encoder uses a learned constant query);
- causal or non-causal;
- a per-key additive logit bias (Thoughtbubbles' cumulative log-scores) and a per-key value scale.

Kernel choice (`attend`): without a dense mask we always call SDPA's causal (or unmasked) path. A per-key
bias rides in one extra head channel: q gets 1, k gets bias/scale, v gets 0, and `scale=` is passed
explicitly, so q'.k' * scale = q.k * scale + bias and the fused causal kernel still runs. On CUDA the
padded head dim is rounded up to a multiple of 8 for the flash/efficient kernels.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.nn.kv_cache import KVCache
from latentlm.nn.linear import Linear, linear
from latentlm.nn.rope import apply_rope


@dataclass
class AttnContext:
    """What every attention layer of one forward pass shares. Built once per pass (or per fork segment)."""

    rope: torch.Tensor
    """Complex rotations (B or 1, T, hd/2) for the query positions: RotaryEmbedding(positions)."""
    rope_kv: torch.Tensor | None = None
    """Rotations for the key positions when they differ from the queries' (default: rope)."""
    causal: bool = True
    key_bias: torch.Tensor | None = None
    """(B, S) additive logit bias per key (in logit units, added after the 1/sqrt(hd) scaling)."""
    value_scale: torch.Tensor | None = None
    """(B, S) multiplier on each key's value vector."""
    attn_mask: torch.Tensor | None = None
    """Dense bool (True = attend) or float mask broadcastable to (B, H, Tq, Tk); forces the masked kernel."""
    cache: KVCache | None = None
    slot: torch.Tensor | None = None
    """Static decoding: the cache indices (n,) the new keys go to (`KVCache.write`); attention then runs over the
    whole preallocated cache and attn_mask (additive: 0 = attend, -inf = not) hides the positions not yet written."""
    bias_channel: str = "extra"
    """How a key bias reaches SDPA's fused kernel: "extra" appends a head channel; "hijack" overwrites the last
    channel of q and k (the Thoughtbubbles authors' choice; it costs that channel's RoPE partner)."""


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    key_bias: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    bias_channel: str = "extra",
) -> torch.Tensor:
    """Softmax attention. q (B, H, Tq, hd); k, v (B, Hkv, Tk, hd); key_bias (B, Tk) -> (B, H, Tq, hd).

    When Tq < Tk (cached decoding), causal masking is aligned to the bottom right: query i sees keys
    up to Tk - Tq + i.
    """
    B, H, Tq, hd = q.shape
    Tk = k.shape[2]
    scale = hd**-0.5
    gqa = k.shape[1] != H
    causal = causal and Tq > 1  # a single new query may see every cached key
    if key_bias is not None and bias_channel == "hijack":  # q.k over hd-1 channels + 1 * bias/scale in the last one
        q, k = q.clone(), k.clone()
        q[..., -1] = 1.0
        k[..., -1] = (key_bias / scale).to(k.dtype)[:, None, :]
        key_bias = None  # it now rides in the hijacked channel, in the dense-mask path as in the fused one
    if attn_mask is not None and key_bias is None and not causal:  # the mask as given: no per-layer conversion
        mask = attn_mask if attn_mask.dtype in (torch.bool, q.dtype) else attn_mask.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    if attn_mask is not None or (causal and Tq != Tk):
        mask = _dense_mask(B, Tq, Tk, q.device, q.dtype, causal, key_bias, attn_mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    if key_bias is None:  # no bias, or a bias already written into the hijacked channel
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=gqa)
    pad = 1 if q.device.type == "cpu" else 8 - hd % 8  # extra channels; only the first carries the bias
    q = F.pad(q, (0, pad))
    q[..., hd] = 1.0
    k = F.pad(k, (0, pad))
    k[..., hd] = (key_bias / scale).to(k.dtype)[:, None, :]  # broadcast over kv heads
    v = F.pad(v, (0, pad))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=gqa)
    return out[..., :hd]


def _dense_mask(B, Tq, Tk, device, dtype, causal, key_bias, attn_mask) -> torch.Tensor:
    """Additive float mask (B or 1, 1, Tq, Tk) combining causality, per-key bias and a user mask."""
    mask = torch.zeros(1, 1, Tq, Tk, device=device, dtype=dtype)
    if causal:
        allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=Tk - Tq)
        mask = mask.masked_fill(~allowed, float("-inf"))
    if key_bias is not None:
        mask = mask + key_bias.to(dtype)[:, None, None, :]
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            mask = mask.masked_fill(~attn_mask, float("-inf"))
        else:
            mask = mask + attn_mask.to(dtype)
    return mask


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, layer_idx: int = 0):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.layer_idx = layer_idx  # which slot of a shared KVCache this layer writes
        self.q_dim, self.kv_dim = n_heads * head_dim, n_kv_heads * head_dim
        self.wqkv = Linear(d_model, self.q_dim + 2 * self.kv_dim)
        self.wo = Linear(self.q_dim, d_model)  # residual output projection

    def forward(self, x: torch.Tensor, ctx: AttnContext, kv: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) gives the queries; kv (B, S, D) gives keys and values (default: x)."""
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        if kv is None and ctx.rope_kv is None:  # one projection for q, k and v
            qkv = self.wqkv(x).view(B, T, H + 2 * Hkv, hd)
            if torch.is_grad_enabled():  # one split: its backward is one cat, where slices of qkv would each
                q, k, v = qkv.split((H, Hkv, Hkv), dim=2)  # zero-fill and copy a full-size gradient
                q, k = apply_rope(q, ctx.rope), apply_rope(k, ctx.rope)
            else:  # no autograd: one rotation for q and k together (fewer ops per decode step)
                q, k = apply_rope(qkv[:, :, : H + Hkv], ctx.rope).split((H, Hkv), dim=2)
                v = qkv[:, :, H + Hkv :]
        else:  # separate inputs or positions: slice the fused weight (views, no copy)
            kv = x if kv is None else kv
            q = apply_rope(linear(x, self.wqkv.weight[: self.q_dim]).view(B, T, H, hd), ctx.rope)
            k, v = linear(kv, self.wqkv.weight[self.q_dim :]).view(B, kv.shape[1], 2 * Hkv, hd).split(Hkv, dim=2)
            k = apply_rope(k, ctx.rope if ctx.rope_kv is None else ctx.rope_kv)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H or Hkv, T or S, hd)
        if ctx.value_scale is not None:
            v = v * ctx.value_scale[:, None, :, None].to(v.dtype)
        key_bias = ctx.key_bias
        if ctx.cache is not None and ctx.slot is not None:
            k, v, key_bias = ctx.cache.write(self.layer_idx, k, v, ctx.slot)
        elif ctx.cache is not None:
            k, v, key_bias = ctx.cache.update(self.layer_idx, k, v, key_bias)
        y = attend(
            q, k, v, causal=ctx.causal, key_bias=key_bias, attn_mask=ctx.attn_mask, bias_channel=ctx.bias_channel
        )  # (B, H, T, hd)
        return self.wo(y.transpose(1, 2).reshape(B, T, self.q_dim))
