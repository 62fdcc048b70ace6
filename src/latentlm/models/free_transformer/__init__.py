"""Free Transformer variant: a conditional-VAE decoder with a per-token binary latent."""

from latentlm.models.free_transformer.config import FreeTransformerConfig
from latentlm.models.free_transformer.model import FreeTransformer
from latentlm.models.spec import (
    Generation,
    HFExport,
    VariantSpec,
    decoder_blocks,
    decoder_flops,
    decoder_params,
    standard_source,
)

Config, Model = FreeTransformerConfig, FreeTransformer


def _slide_blocker(config: FreeTransformerConfig) -> str | None:
    # without a latent it is a plain decoder; with one, cropping would redraw the kept tokens' codes
    return "cropping would redraw the latent codes Z of the kept tokens" if config.latent else None


SPEC = VariantSpec(
    name="free_transformer",
    config=FreeTransformerConfig,
    model=FreeTransformer,
    build_source=standard_source,
    shard_units=decoder_blocks,
    hf_export=HFExport("wrapper"),  # scoring_logits: the prior-Z likelihood score() reports
    flops_per_token=decoder_flops,  # encoder block + mapper backward, from the configuration
    num_params=decoder_params,
    diagnostics=lambda model, tokenizer, cfg, split, max_batches: model.diagnostics(tokenizer, cfg, split, max_batches),
    begin_step=lambda model, step: model.begin_step(step),  # the kappa schedule
    # inject_weight_decay=false: the post-sampler table is not decayed (decay would shrink R while X grows)
    no_weight_decay=lambda model: (
        [model.post_sampler] if model.config.latent and not model.config.inject_weight_decay else []
    ),
    generation=Generation(slide_blocker=_slide_blocker),
)
