"""The baseline: a plain Llama-style decoder (RMSNorm, RoPE, SwiGLU, GQA-ready), nothing latent.

Every other variant is judged against this model; its degenerate cases (no fork layers, latent off)
must reproduce it exactly.
"""

from dataclasses import dataclass

from latentlm.models.config import DecoderConfig
from latentlm.models.decoder import Decoder


@dataclass
class GPTConfig(DecoderConfig):
    variant: str = "gpt"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""


class GPT(Decoder):
    """Baseline decoder; see models/decoder.py for the contract."""


Config, Model = GPTConfig, GPT
