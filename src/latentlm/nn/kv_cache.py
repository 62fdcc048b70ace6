"""A preallocated, batched key/value cache with one length pointer per layer.

Keys are stored after RoPE, values after any per-stream scaling, so a cached step never recomputes them.
One pointer per layer (not one global) lets variants whose layers hold different numbers of streams
(Thoughtbubbles' fork layers) share this cache; a plain decoder advances all pointers together.
An optional per-key additive bias (B, S) travels with the keys (Thoughtbubbles' cumulative log-scores).
"""

import torch

from latentlm.errors import InputError


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        key_bias: bool = False,
    ):
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.bias = torch.zeros(n_layers, batch_size, max_len, dtype=torch.float32, device=device) if key_bias else None
        self.max_len = max_len
        self.lengths = [0] * n_layers

    @property
    def length(self) -> int:
        """Number of cached positions (of the first layer; equal across layers for plain decoders)."""
        return self.lengths[0]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Append k, v (B, Hkv, n, hd) [and bias (B, n)] at this layer; return everything cached so far."""
        start, n = self.lengths[layer], k.shape[2]
        end = start + n
        if end > self.max_len:
            raise InputError(
                f"KV cache overflow: layer {layer} holds {start} positions and cannot take {n} more "
                f"(max_len={self.max_len}); allocate a larger cache or generate fewer tokens"
            )
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        if self.bias is not None:
            if bias is None:
                raise ValueError("this cache stores a key bias; pass bias= with the keys")
            self.bias[layer, :, start:end] = bias
        self.lengths[layer] = end
        cached_bias = None if self.bias is None else self.bias[layer, :, :end]
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end], cached_bias

    def reset(self) -> None:
        self.lengths = [0] * len(self.lengths)
