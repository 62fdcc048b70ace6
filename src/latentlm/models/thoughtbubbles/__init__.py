"""Thoughtbubbles variant: forking and pruning residual streams under a budget."""

from latentlm.models.spec import (
    Generation,
    HFExport,
    VariantSpec,
    decoder_blocks,
    decoder_params,
    slides,
    standard_source,
)
from latentlm.models.thoughtbubbles.config import ThoughtbubblesConfig
from latentlm.models.thoughtbubbles.model import Thoughtbubbles

Config, Model = ThoughtbubblesConfig, Thoughtbubbles

SPEC = VariantSpec(
    name="thoughtbubbles",
    config=ThoughtbubblesConfig,
    model=Thoughtbubbles,
    build_source=standard_source,
    shard_units=decoder_blocks,
    hf_export=HFExport("wrapper"),
    # streams per block vary with the data: from the given forward output's stream counts, else the budget
    flops_per_token=lambda model, seq_len, output=None: model.flops_per_token(seq_len, output=output),
    num_params=decoder_params,
    score_modes=("window", "prefix"),
    eval_extras=frozenset({"allocation", "bubbles"}),
    # forking is a function of the window's tokens, recomputed on every prefill; RoPE is relative
    generation=Generation(slide_blocker=slides),
)
