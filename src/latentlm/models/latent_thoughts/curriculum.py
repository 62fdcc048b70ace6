"""Curricula as data transforms: (example, method, stage) -> (input_ids, labels); the data source is in source.py.

Layouts (labels are pre-shifted targets; -100 where nothing is learned):
    nocot     question\\n ### answer<eos>                          supervise the answer
    cot       question\\n step1\\n ... ### answer<eos>              supervise steps and answer
    pause     question\\n <latent>*n ### answer<eos>                pause tokens are plain (learned) tokens
    coconut   question\\n <bot> <latent>*(k*c) <eot> step_{k+1}\\n ... ### answer<eos>        (Coconut §3)
              stage k <= max_latent_stage replaces the first k steps with k*c latents (k latents even when the
              example has fewer steps); stage max+1 drops every step with min(max, #steps)*c latents (max*c with
              pad_latent_to_max), as the official dataset.py does; question, <bot>, latents and <eot> are not
              supervised. Stage 0 is CoT with an empty <bot><eot>.
    lt_tuning stage 1: cot. Stages 2-3: a <thinking> token (twice with some probability) is inserted before response
              tokens the current model finds hard (p(gold) < tau), at most `cap` points, and <thinking> is supervised
              (the model learns to emit it). The probabilities come from scoring exactly the token sequence trained on.
Latent positions are the positions holding <latent> (coconut) or <thinking> (lt_tuning); the model replaces their
input embeddings.
"""

from __future__ import annotations

import math
import random

from latentlm.data.reasoning import ReasoningExample

IGNORE = -100


def encode_parts(ex: ReasoningExample, tok) -> tuple[list[int], list[list[int]], list[int]]:
    q = tok.encode(ex.question + "\n")
    steps = [tok.encode(s + "\n") for s in ex.steps]
    answer = tok.encode("### " + ex.answer) + [tok.eos_id]
    return q, steps, answer


def prompt_ids(ex: ReasoningExample, method: str, cfg, tok) -> list[int]:
    """What generation starts from for each method."""
    q = tok.encode(ex.question + "\n")
    if method == "coconut":
        return q + [tok.token_id("<bot>")]
    if method == "pause":
        return q + [tok.token_id("<latent>")] * cfg.pause_tokens
    return q


def render(ex: ReasoningExample, method: str, stage: int, cfg, tok, insertions: list[tuple[int, int]] | None = None):
    """-> (input_ids, labels) for one example in the given method and stage."""
    q, steps, answer = encode_parts(ex, tok)
    parts: list[tuple[list[int], bool]] = [(q, False)]  # (tokens, supervised)
    if method == "nocot":
        parts.append((answer, True))
    elif method in ("cot", "soft_thinking") or (method == "lt_tuning" and stage == 0):
        parts += [(s, True) for s in steps] + [(answer, True)]
    elif method == "pause":
        parts += [([tok.token_id("<latent>")] * cfg.pause_tokens, False), (answer, True)]
    elif method == "coconut":
        k, skip = coconut_layout(stage, len(steps), cfg)
        kept = steps[skip:]
        latents = [tok.token_id("<latent>")] * (k * cfg.c_thought)
        parts += [([tok.token_id("<bot>"), *latents, tok.token_id("<eot>")], False)]
        parts += [(s, True) for s in kept] + [(answer, True)]
    elif method == "lt_tuning":
        response = [t for s in steps for t in s] + answer
        thinking = tok.token_id("<thinking>")
        out = []
        counts = dict(insertions or [])
        for i, t in enumerate(response):
            out += [thinking] * counts.get(i, 0) + [t]
        parts.append((out, True))
    else:
        raise ValueError(f"unknown method {method!r}")
    ids = [t for p, _ in parts for t in p]
    sup = [s for p, s in parts for _ in p]
    labels = [ids[t + 1] if sup[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
    return ids, labels


def coconut_layout(stage: int, n_steps: int, cfg) -> tuple[int, int]:
    """(latent groups k, steps skipped) of a Coconut example with n_steps steps at `stage` (official dataset.py:
    stage <= max skips `stage` steps behind `stage` groups; beyond max, every step goes and min(max, n_steps)
    groups remain, or max with pad_latent_to_max)."""
    if stage <= cfg.max_latent_stage:
        return stage, stage
    k = cfg.max_latent_stage if cfg.pad_latent_to_max else min(n_steps, cfg.max_latent_stage)
    return k, n_steps


def coconut_stage(step: int, cfg) -> int:
    """Stage of optimizer step `step`: stage_steps[i] steps in stage i (0 = CoT, 1..max, then max+1 = every step
    latent), the last entry repeating; after the last bound training stays in stage max+1."""
    bounds, total = [], 0
    for i in range(cfg.max_latent_stage + 2):
        total += cfg.stage_steps[min(i, len(cfg.stage_steps) - 1)]
        bounds.append(total)
    return next((i for i, b in enumerate(bounds) if step < b), cfg.max_latent_stage + 1)


def lt_stage(step: int, cfg) -> int:
    total = 0
    for i, n in enumerate(cfg.stage_steps[:3]):
        total += n
        if step < total:
            return i
    return 2


def choose_insertions(response_logp: list[float], stage: int, cfg, rng: random.Random) -> list[tuple[int, int]]:
    """LT-Tuning's confidence-driven insertion: candidates have p(gold) < tau; sample up to `cap` of them; each gets
    one <thinking> with prob insert_prob, a second with prob second_prob. -> [(response index, count)]."""
    tau, cap = cfg.lt_threshold[stage], cfg.lt_cap[stage]
    cands = [i for i, lp in enumerate(response_logp) if math.exp(lp) < tau]
    chosen = sorted(rng.sample(cands, min(cap, len(cands))))
    out = []
    for i in chosen:
        if rng.random() < cfg.lt_insert_prob[stage]:
            out.append((i, 2 if rng.random() < cfg.lt_second_prob[stage] else 1))
    return out
