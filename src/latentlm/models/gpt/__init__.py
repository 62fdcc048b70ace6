"""The baseline variant: a plain Llama-style decoder (model.py), nothing latent."""

from latentlm.models.gpt.model import GPT, GPTConfig
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

__all__ = ["GPT", "GPTConfig", "Config", "Model", "SPEC"]
