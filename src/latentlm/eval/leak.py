"""Causality probe: how much can tokens after position t change the log-probabilities at positions <= t?

For a causal model the answer is exactly 0. Thoughtbubbles' global top-k budget lets later tokens decide which
earlier forks survive, so its likelihoods leak; this measures by how much, through `model.score()` only.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def measure_leak(model, input_ids: torch.Tensor, probes: int = 8, seed: int = 0) -> dict:
    """For `probes` cut points t, resample every token after t; report max and mean |delta log p| at positions <= t."""
    g = torch.Generator().manual_seed(seed)
    B, T = input_ids.shape
    base = model.score(input_ids)
    worst, total, count = 0.0, 0.0, 0
    for t in torch.linspace(1, T - 2, probes).round().long().unique().tolist():
        other = input_ids.clone()
        other[:, t + 1 :] = torch.randint(0, model.vocab_size, (B, T - t - 1), generator=g).to(input_ids.device)
        delta = (model.score(other)[:, : t + 1] - base[:, : t + 1]).abs()
        worst = max(worst, float(delta.max()))
        total += float(delta.sum())
        count += delta.numel()
    return {
        "max_abs_dlogp": worst,
        "mean_abs_dlogp": total / max(count, 1),
        "probes": probes,
        "sequences": B,
        "seq_len": T,
        "note": model.score_note,
    }


def measure_leak_on_run(model, tokenizer, cfg, sequences: int = 8, probes: int = 8) -> dict:
    """The probe on validation sequences of a run's own data."""
    from latentlm.data import build_source, load_split, shard_dir
    from latentlm.data.shards import eval_windows

    if cfg.data.reasoning is not None:
        batch = next(iter(build_source(cfg, tokenizer, "val").eval_batches(sequences, 1)))["input_ids"]
    else:
        batch = next(iter(eval_windows(load_split(shard_dir(cfg), "val"), cfg.data.seq_len, sequences, 1)))
    return measure_leak(model, batch, probes)
