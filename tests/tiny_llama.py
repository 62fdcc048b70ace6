"""A randomly initialised tiny Llama saved as a base-model folder: the latent-thought tests' (and smoke runs')
stand-in for a pretrained model. Test scaffolding, so it lives here and not in the library."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_llama(
    directory,
    tokenizer,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int | None = 0,
    **config,
) -> Path:
    """A randomly initialised Llama (SwiGLU width 2 x hidden) with `tokenizer`, saved as a base-model folder.

    For smoke runs and tests of the latent-thought pipeline without a prepared pretrained model; extra keyword
    arguments go to LlamaConfig (max_position_embeddings, tie_word_embeddings, ...).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        **config,
    )
    LlamaForCausalLM(cfg).save_pretrained(directory)
    tokenizer.save(directory)
    return Path(directory)
