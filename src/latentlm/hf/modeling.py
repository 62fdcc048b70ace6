"""LatentLMForCausalLM: any latentlm decoder variant behind the HF causal-LM interface.

Maps (input_ids, attention_mask, labels) onto the variant's `scoring_logits` (the likelihood score() reports;
prior Z for the Free Transformer) and returns CausalLMOutputWithPast. HF `generate()` works through
GenerationMixin without a KV cache (every step recomputes: correct for every variant, including Thoughtbubbles'
global budget); the variant's own cached sampler stays available as `model.model.generate(...)`.
This file is also copied into exported folders, where the import between the build markers is rewritten.
"""

import torch
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

# >>> build
from latentlm.config import build
from latentlm.hf.configuration import LatentLMConfig
from latentlm.models import VARIANTS
from latentlm.nn.loss import lm_loss, shift_labels


def build_inner(cfg: dict):
    variant = VARIANTS[cfg["variant"]]
    return variant.model(build(variant.config, cfg, "model."))


# <<< build


class LatentLMForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = LatentLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _no_split_modules = ["Block"]

    def __init__(self, config: LatentLMConfig):
        super().__init__(config)
        self.model = build_inner(config.latentlm)
        self._tied_weights_keys = (
            {"model.head.weight": "model.tok_emb.weight"} if config.latentlm.get("tie_embeddings", True) else {}
        )
        self.generation_config = GenerationConfig(
            use_cache=False, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )
        self.post_init()

    def _init_weights(self, module):
        """The latentlm modules initialise themselves; weights come from the checkpoint."""

    def get_input_embeddings(self):
        return self.model.tok_emb

    def get_output_embeddings(self):
        return self.model.head

    def forward(self, input_ids=None, attention_mask=None, labels=None, past_key_values=None, use_cache=None, **kwargs):
        logits = self.model.scoring_logits(input_ids, attention_mask)
        loss = None
        if labels is not None:  # HF convention (labels == input_ids) -> latentlm's pre-shifted targets (nn/loss.py)
            loss = lm_loss(logits, shift_labels(labels))
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @torch.no_grad()
    def generate_cached(self, input_ids, max_new_tokens, **kwargs):
        """The variant's own KV-cached sampler (latentlm's generate)."""
        return self.model.generate(input_ids, max_new_tokens, **kwargs)
