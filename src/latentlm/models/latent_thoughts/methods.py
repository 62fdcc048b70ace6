"""The latent-thought methods as one table: each `Method` record says, in one place, how its examples are laid out
for training (per curriculum stage), what generation starts from, how many stages it has and which stage an
optimizer step is in, which tokens mark latent positions and what a latent receives as its input embedding, the
default switching policy at inference, and the special tokens it needs. Nothing else in the package compares
method names.

Stages are numbered from 0 everywhere (code, configs, docstrings): stage 0 is CoT-SFT for the curricula.
    nocot      question\\n ### answer<eos>                                  one stage
    cot        question\\n step1\\n ... ### answer<eos>                      one stage (also Soft Thinking's model)
    pause      question\\n <latent>*pause_tokens ### answer<eos>            pause tokens are plain (learned) tokens
    coconut    question\\n <bot> <latent>*(k*c) <eot> step_{k+1}\\n ... ### answer<eos>        (Coconut §3)
               stage 0 = CoT with an empty <bot><eot>; stage k in 1..max_latent_stage replaces the first k steps
               with k*c latents (k groups even when the example has fewer steps); stage max+1 drops every step and
               keeps min(max, #steps)*c latents (max*c with pad_latent_to_max), as the official dataset.py does.
               Latents hold the previous position's last hidden state.
    lt_tuning  the paper's stages 1, 2, 3 are stages 0, 1, 2 here: stage 0 = CoT-SFT; stages 1 and 2 insert
               <thinking> before response tokens the current model finds hard (lt_threshold / lt_cap /
               lt_insert_prob / lt_second_prob hold one value per insertion stage: [stage 1, stage 2]). Stage 1's
               <thinking> receives the hidden state, stage 2's the context-prediction fusion.
    soft_thinking  training-free: the CoT layout; at inference every step is a soft concept token until cold stop.
Question, <bot>, latents and <eot> are never supervised; <thinking> is (the model learns to emit it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Parts = list[tuple[list[int], bool]]  # (tokens, supervised) after the question


@dataclass(frozen=True)
class Method:
    name: str
    render: Callable[..., Parts]
    """(steps, answer, stage, cfg, tok, insertions) -> the parts after the question, each (tokens, supervised)."""
    prompt_suffix: Callable[..., list[int]] = lambda cfg, tok: []
    """(cfg, tok) -> the tokens generation appends to the question (Coconut: <bot>; pause: its pause tokens)."""
    n_stages: Callable[..., int] = lambda cfg: 1
    """cfg -> number of curriculum stages (numbered 0 .. n - 1)."""
    stage_of: Callable[..., int] = lambda step, cfg: 0
    """(optimizer step, cfg) -> the stage that step trains in."""
    latent_markers: tuple[str, ...] = ()
    """Special tokens whose positions are latents (their input embedding is replaced)."""
    latent_kind: Callable[[int], str] = lambda stage: "fusion"
    """stage -> what a latent position receives (fusion.py: hidden | fusion | soft), when latent_embedding=auto."""
    default_policy: str = "none"
    """The switching policy at inference when policy=auto (policies.py)."""
    special_tokens: tuple[str, ...] = ()
    """Special tokens the method needs in model.special_tokens."""
    extra_train_tokens: Callable[..., int] = lambda cfg: 0
    """cfg -> an upper bound on the tokens the method adds to a CoT example in any stage (length check)."""
    extra_new_tokens: Callable[..., int] = lambda cfg: 0
    """cfg -> generation budget beyond the gold chain (LT-Tuning's <thinking> sit inside the text)."""
    inserts_thinking: bool = False
    """Stages > 0 need the current model to score every training example (confidence-driven insertion)."""


def _cot(steps, answer, stage, cfg, tok, insertions=None) -> Parts:
    return [(s, True) for s in steps] + [(answer, True)]


def _nocot(steps, answer, stage, cfg, tok, insertions=None) -> Parts:
    return [(answer, True)]


def _pause(steps, answer, stage, cfg, tok, insertions=None) -> Parts:
    return [([tok.token_id("<latent>")] * cfg.pause_tokens, False), (answer, True)]


def coconut_layout(stage: int, n_steps: int, cfg) -> tuple[int, int]:
    """(latent groups k, steps skipped) of a Coconut example with n_steps steps at `stage` (official dataset.py:
    stage <= max skips `stage` steps behind `stage` groups; beyond max, every step goes and min(max, n_steps)
    groups remain, or max with pad_latent_to_max)."""
    if stage <= cfg.max_latent_stage:
        return stage, stage
    k = cfg.max_latent_stage if cfg.pad_latent_to_max else min(n_steps, cfg.max_latent_stage)
    return k, n_steps


def _coconut(steps, answer, stage, cfg, tok, insertions=None) -> Parts:
    k, skip = coconut_layout(stage, len(steps), cfg)
    latents = [tok.token_id("<latent>")] * (k * cfg.c_thought)
    return [([tok.token_id("<bot>"), *latents, tok.token_id("<eot>")], False)] + _cot(steps[skip:], answer, 0, cfg, tok)


def _lt_tuning(steps, answer, stage, cfg, tok, insertions=None) -> Parts:
    if stage == 0:
        return _cot(steps, answer, 0, cfg, tok)
    response = [t for s in steps for t in s] + answer
    thinking, counts, out = tok.token_id("<thinking>"), dict(insertions or []), []
    for i, t in enumerate(response):
        out += [thinking] * counts.get(i, 0) + [t]
    return [(out, True)]


def coconut_stage(step: int, cfg) -> int:
    """Stage of optimizer step `step`: stage_steps[i] steps in stage i (0 = CoT, 1..max, then max+1 = every step
    latent), the last entry repeating; after the last bound training stays in stage max+1."""
    bounds, total = [], 0
    for i in range(cfg.max_latent_stage + 2):
        total += cfg.stage_steps[min(i, len(cfg.stage_steps) - 1)]
        bounds.append(total)
    return next((i for i, b in enumerate(bounds) if step < b), cfg.max_latent_stage + 1)


def lt_stage(step: int, cfg) -> int:
    """Stage of optimizer step `step` for LT-Tuning: stage_steps[0] steps in stage 0 (CoT-SFT), then stage 1, then
    stage 2 for the rest."""
    total = 0
    for i, n in enumerate(cfg.stage_steps[:2]):
        total += n
        if step < total:
            return i
    return 2


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("nocot", _nocot),
        Method("cot", _cot),
        Method(
            "pause",
            _pause,
            prompt_suffix=lambda cfg, tok: [tok.token_id("<latent>")] * cfg.pause_tokens,
            special_tokens=("<latent>",),
            extra_train_tokens=lambda cfg: cfg.pause_tokens,
        ),
        Method(
            "coconut",
            _coconut,
            prompt_suffix=lambda cfg, tok: [tok.token_id("<bot>")],
            n_stages=lambda cfg: cfg.max_latent_stage + 2,
            stage_of=coconut_stage,
            latent_markers=("<latent>",),
            latent_kind=lambda stage: "hidden",
            default_policy="fixed",
            special_tokens=("<bot>", "<eot>", "<latent>"),
            extra_train_tokens=lambda cfg: 2 + cfg.max_latent_stage * cfg.c_thought,
        ),
        Method(
            "lt_tuning",
            _lt_tuning,
            n_stages=lambda cfg: 3,
            stage_of=lt_stage,
            latent_markers=("<thinking>",),
            latent_kind=lambda stage: "hidden" if stage < 2 else "fusion",
            default_policy="learned",
            special_tokens=("<thinking>",),
            extra_train_tokens=lambda cfg: 2 * max(cfg.lt_cap),
            extra_new_tokens=lambda cfg: 2 * max(cfg.lt_cap),
            inserts_thinking=True,
        ),
        Method("soft_thinking", _cot, latent_kind=lambda stage: "soft", default_policy="cold_stop"),
    )
}


def get_method(name: str) -> Method:
    from latentlm.errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown model.method={name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
