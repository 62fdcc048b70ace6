"""Curricula as data transforms: (example, method, stage) -> (input_ids, labels); the data source is in source.py.

The layouts, stage counts and stage schedules are the methods' records (methods.py); labels are pre-shifted targets,
IGNORE_INDEX where nothing is learned. LT-Tuning's insertion (stages 1 and 2): a <thinking> token (twice with some
probability) is inserted before response tokens the current model finds hard (p(gold) < tau), at most `cap` points;
the probabilities come from scoring exactly the token sequence trained on. Latent positions are the positions
holding the method's latent marker; the model replaces their input embeddings.
"""

from __future__ import annotations

import math
import random

from latentlm.data.reasoning import ReasoningExample
from latentlm.models.latent_thoughts.methods import (  # noqa: F401  (the stage rules, re-exported)
    coconut_layout,
    coconut_stage,
    get_method,
    lt_stage,
)
from latentlm.nn.loss import IGNORE_INDEX as IGNORE


def encode_parts(ex: ReasoningExample, tok) -> tuple[list[int], list[list[int]], list[int]]:
    q = tok.encode(ex.question + "\n")
    steps = [tok.encode(s + "\n") for s in ex.steps]
    answer = tok.encode("### " + ex.answer) + [tok.eos_id]
    return q, steps, answer


def prompt_ids(ex: ReasoningExample, method: str, cfg, tok) -> list[int]:
    """What generation starts from for each method: the question, then the method's prompt suffix."""
    return tok.encode(ex.question + "\n") + get_method(method).prompt_suffix(cfg, tok)


def render(ex: ReasoningExample, method: str, stage: int, cfg, tok, insertions: list[tuple[int, int]] | None = None):
    """-> (input_ids, labels) for one example in the given method and stage (0-based, methods.py)."""
    q, steps, answer = encode_parts(ex, tok)
    parts = [(q, False)] + get_method(method).render(steps, answer, stage, cfg, tok, insertions)
    ids = [t for p, _ in parts for t in p]
    sup = [s for p, s in parts for _ in p]
    labels = [ids[t + 1] if sup[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
    return ids, labels


def choose_insertions(response_logp: list[float], stage: int, cfg, rng: random.Random) -> list[tuple[int, int]]:
    """LT-Tuning's confidence-driven insertion at stage 1 or 2: candidates have p(gold) < tau; sample up to `cap` of
    them; each gets one <thinking> with prob insert_prob, a second with prob second_prob. -> [(response index,
    count)]. The lt_* lists hold one value per insertion stage, [stage 1, stage 2]."""
    if stage not in (1, 2):
        raise ValueError(f"LT-Tuning inserts <thinking> in stages 1 and 2, not {stage}")
    tau, cap = cfg.lt_threshold[stage - 1], cfg.lt_cap[stage - 1]
    cands = [i for i, lp in enumerate(response_logp) if math.exp(lp) < tau]
    chosen = sorted(rng.sample(cands, min(cap, len(cands))))
    out = []
    for i in chosen:
        if rng.random() < cfg.lt_insert_prob[stage - 1]:
            out.append((i, 2 if rng.random() < cfg.lt_second_prob[stage - 1] else 1))
    return out
