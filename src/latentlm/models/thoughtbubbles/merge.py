"""Merging a token's streams at the output (Thoughtbubbles §3.3).

- `residual` (authors' code): h_t = sum_j p_j x_j over the streams of token t, then final norm and head. We use
  weights exp(c_j - max_c) / sum: the same function up to RMSNorm's epsilon (the norm removes the scale), and it
  cannot underflow when every p of a token is tiny.
- `distribution` (the paper's description): every stream is decoded and the next-token distributions are mixed
  with weights p_j / sum_j p_j; returns log-probabilities, which serve as logits.
- `logit_sum` (the authors' v1 PyTorch code, behind the paper's 150M-772M results): the final norm on every
  stream, then logits_t = sum_j p_j * head(norm(x_j)) with the raw p_j = exp(c_j), not divided by sum_j p_j.
  The head is linear, so this is head(sum_j p_j * norm(x_j)): one vocabulary projection per token.
"""

from __future__ import annotations

import torch

from latentlm.models.thoughtbubbles.fork import StreamState


def token_weights(s: StreamState, n_tokens: int) -> torch.Tensor:
    """(B, N) weights of each stream within its token, summing to 1 over a token's live streams."""
    c = torch.where(s.alive, s.c, -torch.inf)
    cmax = torch.full((c.shape[0], n_tokens + 1), -torch.inf, device=c.device).scatter_reduce(1, s.tau, c, "amax")
    w = (c - cmax.gather(1, s.tau)).exp().nan_to_num(0.0)  # dead streams: exp(-inf) = 0
    total = torch.zeros_like(cmax).scatter_add_(1, s.tau, w)
    return w / total.gather(1, s.tau).clamp(min=1e-30)


def residual_merge(s: StreamState, n_tokens: int, norm, head) -> torch.Tensor:
    B, N, D = s.h.shape
    w = token_weights(s, n_tokens).to(s.h.dtype)
    merged = torch.zeros(B, n_tokens + 1, D, device=s.h.device, dtype=s.h.dtype)
    merged.scatter_add_(1, s.tau[..., None].expand(-1, -1, D), s.h * w[..., None])
    return head(norm(merged[:, :n_tokens]))  # (B, T, V)


def distribution_merge(s: StreamState, n_tokens: int, norm, head) -> torch.Tensor:
    probs = head(norm(s.h)).float().softmax(-1)  # (B, N, V)
    V = probs.shape[-1]
    w = token_weights(s, n_tokens)
    mix = torch.zeros(probs.shape[0], n_tokens + 1, V, device=probs.device)
    mix.scatter_add_(1, s.tau[..., None].expand(-1, -1, V), probs * w[..., None])
    return mix[:, :n_tokens].clamp(min=1e-38).log()  # (B, T, V) log-probabilities


def logit_sum_merge(s: StreamState, n_tokens: int, norm, head) -> torch.Tensor:
    B, N, D = s.h.shape
    y = norm(s.h) * (s.p * s.alive).to(s.h.dtype)[..., None]  # (B, N, D); dead streams weigh 0
    summed = torch.zeros(B, n_tokens + 1, D, device=s.h.device, dtype=s.h.dtype)
    summed.scatter_add_(1, s.tau[..., None].expand(-1, -1, D), y)
    return head(summed[:, :n_tokens])  # (B, T, V)
