"""A preallocated, batched key/value cache with one length pointer per layer, and a static-shape decode mode.

Keys are stored after RoPE, values after any per-stream scaling, so a cached step never recomputes them.
One pointer per layer (not one global) lets variants whose layers hold different numbers of streams
(Thoughtbubbles' fork layers) share this cache; a plain decoder advances all pointers together.
An optional per-key additive bias (B, S) travels with the keys (Thoughtbubbles' cumulative log-scores).

Two ways to write:
- `update(layer, k, v)` appends at the layer's Python length pointer and returns the cached prefix (views of
  growing length). Used by prefill and by variants with per-layer lengths.
- `write(layer, k, v, slot)` copies the new keys/values in place at cache index `slot` (a (n,) long tensor) and
  returns the whole (B, Hkv, max_len, hd) buffers; the caller masks the unwritten positions (`StaticDecode` in
  models/decoder.py keeps a (B, 1, 1, max_len) key mask). Every shape is then the same at every step, nothing is
  allocated for the cache, and no Python integer changes inside the step: what `torch.compile` needs to trace the
  step once, and what a CUDA graph needs to replay it (the buffers keep their addresses). The length pointers are
  advanced outside the step with `advance(n)`.
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
        self._k_layers, self._v_layers = self.k.unbind(0), self.v.unbind(0)  # per-layer views, made once

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
        self._check_room(layer, start, n)
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        if self.bias is not None:
            if bias is None:
                raise ValueError("this cache stores a key bias; pass bias= with the keys")
            self.bias[layer, :, start:end] = bias
        self.lengths[layer] = end
        cached_bias = None if self.bias is None else self.bias[layer, :, :end]
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end], cached_bias

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Static mode: copy k, v (B, Hkv, n, hd) into cache indices `slot` (n,) in place; return the full buffers
        (B, Hkv, max_len, hd). The length pointers do not move (see `advance`); caches with a key bias are not
        supported (their layers advance unevenly)."""
        if self.bias is not None:
            raise ValueError("static writes do not carry a key bias; use update()")
        k_all, v_all = self._k_layers[layer], self._v_layers[layer]
        k_all.index_copy_(2, slot, k)
        v_all.index_copy_(2, slot, v)
        return k_all, v_all, None

    def advance(self, n: int) -> None:
        """Static mode: record n more positions in every layer, those a static step writes with `write` (StaticDecode
        calls it before the step, so a full cache raises before anything is written)."""
        for layer, start in enumerate(self.lengths):
            self._check_room(layer, start, n)
            self.lengths[layer] = start + n

    def _check_room(self, layer: int, start: int, n: int) -> None:
        if start + n > self.max_len:
            raise InputError(
                f"KV cache overflow: layer {layer} holds {start} positions and cannot take {n} more "
                f"(max_len={self.max_len}); allocate a larger cache or generate fewer tokens"
            )
