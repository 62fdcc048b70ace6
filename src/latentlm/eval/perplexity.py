"""Held-out loss, perplexity and bits per byte, through `model.score()` only.

The split is read as consecutive non-overlapping windows of `seq_len` tokens; in each window every token but
the first is predicted from the tokens before it. Bits per byte divide the summed negative log-likelihood (in
bits) by the exact UTF-8 byte length of the predicted tokens, so models with different tokenizers compare.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from latentlm.data.shards import eval_window_batches
from latentlm.nn.loss import IGNORE_INDEX


@torch.no_grad()
def evaluate_batches(model, batches, token_bytes: np.ndarray, device: str | torch.device = "cpu") -> dict:
    """Sum of -log p over the scored tokens of protocol batches (latentlm.data.source): with `labels` (pre-shifted),
    the supervised tokens only (reasoning data: not the question, markers or padding); else with `attention_mask`,
    every real token but the first; else every token but the first. Bytes from `token_bytes`."""
    nll, n_tokens, n_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    for batch in batches:
        ids, mask, labels = batch["input_ids"], batch.get("attention_mask"), batch.get("labels")
        logp = model.score(ids.to(device), None if mask is None else mask.to(device))[:, 1:].double().cpu()  # (B, T-1)
        if labels is not None:
            keep = labels[:, :-1] != IGNORE_INDEX  # labels[t-1] is token t when token t is supervised
        elif mask is not None:
            keep = mask[:, 1:].bool()
        else:
            keep = torch.ones_like(logp, dtype=torch.bool)
        nll -= float(logp[keep].sum())
        n_tokens += int(keep.sum())
        n_bytes += int(token_bytes[ids[:, 1:].numpy()][keep.numpy()].sum())
    model.train(was_training)
    if n_tokens == 0:
        raise ValueError("the evaluation split is empty (shorter than one sequence)")
    loss = nll / n_tokens
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "bits_per_byte": nll / math.log(2) / max(n_bytes, 1),
        "tokens": n_tokens,
        "bytes": n_bytes,
        "note": model.score_note,
    }


def evaluate_windows(model, windows, token_bytes: np.ndarray, device: str | torch.device = "cpu") -> dict:
    """`evaluate_batches` over plain (B, T) id tensors, every token but the first of each scored."""
    return evaluate_batches(model, ({"input_ids": w} for w in windows), token_bytes, device)


def evaluate_tokens(
    model,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    batch_size: int = 8,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    return evaluate_batches(model, eval_window_batches(tokens, seq_len, batch_size, max_batches), token_bytes, device)


def evaluate(
    model,
    tokenizer,
    cfg,
    split: str = "val",
    corpus: str | None = None,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate on a split of the run's data (corpus shards or the reasoning task's held-out set), or on
    another prepared corpus tokenized with the run's tokenizer."""
    from latentlm.data import build_source, load_split, shard_dir
    from latentlm.data.corpora import iter_documents, prepare_corpus, split_document

    batch_size = max(1, cfg.train.batch_size // cfg.train.grad_accum)
    if cfg.data.reasoning is not None and corpus is None:
        source = build_source(cfg, tokenizer, split)
        out = evaluate_batches(model, source.eval_batches(batch_size, max_batches), tokenizer.token_bytes(), device)
        out.update(corpus=cfg.data.reasoning, split=split)
        return out
    if corpus is None or corpus == cfg.data.corpus:
        tokens = load_split(shard_dir(cfg), split)
    else:  # another corpus, tokenized with this run's tokenizer (in memory)
        docs = [
            split_document(d, cfg.data.val_fraction)[1 if split == "val" else 0]
            for d in iter_documents(prepare_corpus(corpus))
        ]
        eos = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.pad_id
        tokens = np.asarray([t for d in docs if d for t in tokenizer.encode(d) + [eos]], dtype=np.int64)
    out = evaluate_tokens(model, tokens, tokenizer.token_bytes(), cfg.data.seq_len, batch_size, max_batches, device)
    out.update(corpus=corpus or cfg.data.corpus, split=split)
    return out
