"""Latent embedding builders: what a latent position receives as its input embedding, from the outputs (last hidden
state h, logits z) of the position before it.

- `hidden` (Coconut, Hao et al. 2024 §3): h itself (the final-normed last hidden state).
- `fusion` (LT-Tuning, context-prediction fusion): alpha * h + (1 - alpha) * sum_v p~(v) E[v], with p~ the
  softmax of z / T with `<thinking>` masked, truncated to the top-p nucleus (keep tokens while the cumulative
  probability stays <= top_p, at least one) and renormalised; E the input embedding matrix.
- `soft` (Soft Thinking, Zhang et al. 2025): sum over the top-k tokens (after temperature and min-p) of their
  renormalised probability times their input embedding.
An optional adapter MLP (Linear -> GELU -> Linear -> LayerNorm, LT-Tuning's "+ Adapter") maps the result.
"""

from __future__ import annotations

import torch
from torch import nn


def top_p_probs(
    logits: torch.Tensor, top_p: float, temperature: float = 1.0, masked: list[int] | None = None
) -> torch.Tensor:
    """LT-Tuning's truncation: probabilities of z/T (masked ids removed), keep while cumsum <= top_p (>= 1 token)."""
    z = logits.float() / temperature
    if masked:
        z = z.clone()
        z[..., masked] = float("-inf")
    p = z.softmax(-1)
    sorted_p, order = p.sort(-1, descending=True)
    keep = sorted_p.cumsum(-1) <= top_p
    keep[..., 0] = True
    kept = torch.zeros_like(p).scatter(-1, order, sorted_p * keep)
    return kept / kept.sum(-1, keepdim=True)


def soft_probs(logits: torch.Tensor, top_k: int, min_p: float, temperature: float) -> torch.Tensor:
    """Soft Thinking's concept-token weights: top-k of softmax(z/T), min-p filtered, renormalised."""
    p = (logits.float() / temperature).softmax(-1)
    vals, idx = p.topk(min(top_k, p.shape[-1]), dim=-1)
    vals = vals * (vals >= min_p * vals[..., :1])
    out = torch.zeros_like(p).scatter(-1, idx, vals)
    return out / out.sum(-1, keepdim=True)


class Adapter(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model), nn.LayerNorm(d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LatentBuilder(nn.Module):
    def __init__(
        self,
        kind: str,
        embedding: nn.Embedding,
        *,
        alpha: float = 0.6,
        top_p: float = 0.9,
        temperature: float = 1.0,
        masked: list[int] | None = None,
        top_k: int = 10,
        min_p: float = 1e-3,
        adapter: Adapter | None = None,
    ):
        super().__init__()
        if kind not in ("hidden", "fusion", "soft"):
            raise ValueError(f"unknown latent embedding {kind!r}: hidden | fusion | soft")
        self.kind, self.alpha, self.top_p, self.temperature = kind, alpha, top_p, temperature
        self.masked, self.top_k, self.min_p = masked or [], top_k, min_p
        self.embedding = [embedding]  # not a submodule: the base model owns it
        self.adapter = adapter

    def forward(self, h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        E = self.embedding[0].weight
        if self.kind == "hidden":
            z = h
        elif self.kind == "fusion":
            z = self.alpha * h + (1 - self.alpha) * (
                top_p_probs(logits, self.top_p, self.temperature, self.masked) @ E
            ).to(h.dtype)
        else:
            z = (soft_probs(logits, self.top_k, self.min_p, self.temperature) @ E).to(h.dtype)
        return self.adapter(z) if self.adapter is not None else z
