"""Data: corpora and tokenizers prepared offline, token shards, data sources for the trainer.

A data source is what the trainer pulls micro-batches from (see `TextSource`):
    next_batch() -> dict of tensors (input_ids, labels pre-shifted, optional extras)
    state_dict() / load_state_dict(d)      exact resume
    phase(step) -> int                      curriculum stage of optimizer step `step`
    begin_phase(phase, model)               rebuild data when the stage changes
"""

from __future__ import annotations

from latentlm.data.corpora import build_tokenizer, load_split, prepare_corpus, prepare_tokens
from latentlm.data.shards import TextSource
from latentlm.data.tokenizer import Tokenizer
from latentlm.errors import ConfigError


def shard_dir(cfg):
    d = cfg.data
    return prepare_tokens(d.corpus, d.tokenizer, d.vocab_size, d.val_fraction)


def load_tokenizer(cfg) -> Tokenizer:
    """The run's tokenizer: the one saved with the corpus shards (or data.tokenizer for reasoning data), plus
    the model's special tokens (`cfg.model.special_tokens`) added in order."""
    if cfg.data.tokenizer == "model":  # the model's own tokenizer (a pretrained base model)
        tok = Tokenizer.load(cfg.model.tokenizer_path())
    elif cfg.data.reasoning is None:
        tok = Tokenizer.load(shard_dir(cfg))
    else:
        tok = build_tokenizer(cfg.data.tokenizer, cfg.data.vocab_size)
    tok.add_special_tokens(cfg.model.special_tokens)  # VariantConfig: () for a plain decoder
    return tok


def micro_batch_size(cfg, world_size: int) -> int:
    t = cfg.train
    per = t.grad_accum * world_size
    if t.batch_size % per:
        raise ConfigError(
            f"train.batch_size={t.batch_size} must be divisible by train.grad_accum ({t.grad_accum}) x world size "
            f"({world_size}) = {per}"
        )
    return t.batch_size // per


def build_source(cfg, tokenizer: Tokenizer, split: str = "train", rank: int = 0, world_size: int = 1):
    """The trainer's data source for this run: token shards for text, a curriculum source for reasoning data."""
    if cfg.data.reasoning == "graph_paths":  # answer-only path finding (latentlm.data.graph_paths)
        from latentlm.data.graph_paths import build_graph_paths_source

        return build_graph_paths_source(cfg, tokenizer, split, rank, world_size)
    if cfg.data.reasoning is not None:
        try:
            from latentlm.data.reasoning import build_reasoning_source
        except ImportError:
            raise ConfigError(
                f"data.reasoning={cfg.data.reasoning!r} needs latentlm.data.reasoning, which is not available"
            ) from None
        return build_reasoning_source(cfg, tokenizer, split, rank, world_size)
    tokens = load_split(shard_dir(cfg), split)
    return TextSource(
        tokens,
        cfg.data.seq_len,
        micro_batch_size(cfg, world_size),
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        name=cfg.data.corpus,
    )


__all__ = ["Tokenizer", "TextSource", "build_source", "load_tokenizer", "prepare_corpus", "prepare_tokens", "shard_dir"]
