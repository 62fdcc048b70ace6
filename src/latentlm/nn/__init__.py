"""Shared building blocks in plain PyTorch. Nothing here imports from the rest of latentlm."""

from latentlm.nn.attention import Attention, AttnContext, attend
from latentlm.nn.block import Block
from latentlm.nn.kv_cache import KVCache
from latentlm.nn.linear import Linear, linear
from latentlm.nn.mlp import SwiGLU
from latentlm.nn.norm import RMSNorm
from latentlm.nn.rope import RotaryEmbedding, apply_rope
from latentlm.nn.sampling import SamplingConfig, sample_next

__all__ = [
    "Attention",
    "AttnContext",
    "attend",
    "Block",
    "KVCache",
    "Linear",
    "linear",
    "SwiGLU",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rope",
    "SamplingConfig",
    "sample_next",
]
