"""Rotary position embedding (Su et al., 2021) at explicit, possibly fractional, positions.

Positions are an argument, not an implicit arange: Thoughtbubbles places the n streams of token t at
t + 1/n, ..., t + 1, and cached decoding continues from an offset. The rotation acts on interleaved channel
pairs (2i, 2i+1) as one complex multiplication (the original Llama layout; HF's "rotate half" layout is the
same function up to a fixed permutation of the q/k projection rows, see benchmarks/gpt_vs_hf.py).
Integer positions are served from a precomputed table; fractional ones are computed on the fly.
"""

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Holds no tensors in its state: the frequency and rotation tables are built lazily on the device where they
    are needed (so meta-device construction, e.g. by HF from_pretrained, and .to() never leave stale tables)."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.head_dim, self.max_seq_len, self.base = head_dim, max_seq_len, base
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(inv_freq (hd/2,), rotations of integer positions 0..max_seq_len (S+1, hd/2)) on `device`."""
        if device not in self._tables:
            inv_freq = self.base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
            angles = torch.arange(self.max_seq_len + 1, dtype=torch.float64)[:, None] * inv_freq  # (S+1, hd/2)
            table = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
            self._tables[device] = (inv_freq.float().to(device), table.to(device))
        return self._tables[device]

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions (T,) or (B, T), integer or float -> unit complex rotations (B or 1, T, head_dim/2)."""
        if positions.dim() == 1:
            positions = positions[None]
        inv_freq, table = self.tables(positions.device)
        if not positions.is_floating_point() and int(positions.max()) < table.shape[0]:
            return table[positions]
        angles = positions.float()[..., None] * inv_freq  # (B, T, hd/2)
        return torch.polar(torch.ones_like(angles), angles)

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """Integer positions (B, T), all in [0, max_seq_len] (the caller guarantees it) -> (B, T, hd/2): a table
        gather with no host synchronisation, for static-shape (compiled or graph-captured) decode steps."""
        return self.tables(positions.device)[1][positions]


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, n_heads, hd) by rot (B or 1, T, hd/2): channel pair (2i, 2i+1) times rot[..., i]."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, T, n, hd/2)
    return torch.view_as_real(xc * rot[:, :, None]).flatten(-2).type_as(x)
