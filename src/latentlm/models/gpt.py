"""The baseline: a plain Llama-style decoder (RMSNorm, RoPE, SwiGLU, GQA-ready), nothing latent.

Every other variant is judged against this model; its degenerate cases (no fork layers, latent off)
must reproduce it exactly.
"""

from dataclasses import dataclass

from latentlm.models.config import DecoderConfig
from latentlm.models.decoder import Decoder
from latentlm.models.spec import (
    Generation,
    HFExport,
    VariantSpec,
    decoder_blocks,
    decoder_flops,
    decoder_params,
    slides,
    standard_source,
)


@dataclass
class GPTConfig(DecoderConfig):
    variant: str = "gpt"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""


class GPT(Decoder):
    """Baseline decoder; see models/decoder.py for the contract."""


Config, Model = GPTConfig, GPT

SPEC = VariantSpec(
    name="gpt",
    config=GPTConfig,
    model=GPT,
    build_source=standard_source,
    shard_units=decoder_blocks,
    hf_export=HFExport("wrapper"),
    flops_per_token=decoder_flops,
    num_params=decoder_params,
    generation=Generation(slide_blocker=slides),
)
