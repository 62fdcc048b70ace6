"""Latent thoughts' curriculum as a data-source component: `latentlm.data.reasoning.Curriculum` for every method.

The data side (epochs over the examples, rank/position, collation, eval batches, the resumable position) is
`latentlm.data.reasoning.ReasoningSource`; this adds what the method decides: the rendering (curriculum.py), the
stage of each optimizer step, and LT-Tuning's confidence-driven insertion points, scored by the current model when a
stage begins and saved with the data position.
"""

from __future__ import annotations

import random

import torch

from latentlm.data.reasoning import ReasoningExample, ReasoningSource, register_curriculum
from latentlm.models.latent_thoughts.base import check_special_tokens
from latentlm.models.latent_thoughts.curriculum import choose_insertions, encode_parts, render
from latentlm.models.latent_thoughts.methods import get_method


class LatentCurriculum:
    """(example, stage) -> (input_ids, labels) for `cfg.method`; cfg is the model's LatentThoughtsConfig."""

    def __init__(self, cfg, tok, seed: int):
        check_special_tokens(tok, cfg.special_tokens)
        self.cfg, self.tok, self.seed = cfg, tok, seed
        self.name = self.method = cfg.method
        self.spec = get_method(self.method)
        self.insertions: dict[int, list[tuple[int, int]]] = {}
        self.insertion_stage = -1

    @classmethod
    def for_run(cls, run_cfg, tok, seed: int) -> LatentCurriculum:
        return cls(run_cfg.model, tok, seed)

    def render(self, index: int, example: ReasoningExample, stage: int):
        return render(example, self.method, stage, self.cfg, self.tok, self.insertions.get(index))

    def longest(self, example: ReasoningExample) -> int:
        c = self.cfg
        q, steps, answer = encode_parts(example, self.tok)
        return len(q) + sum(map(len, steps)) + len(answer) + self.spec.extra_train_tokens(c)

    def phase(self, step: int) -> int:
        return self.spec.stage_of(step, self.cfg)

    def begin_phase(self, phase: int, model, examples: list[ReasoningExample]) -> None:
        if self.spec.inserts_thinking and phase > 0 and self.insertion_stage != phase:
            self.insertions = self.score_insertions(model, examples, phase)
            self.insertion_stage = phase

    @torch.no_grad()
    def score_insertions(
        self, model, examples: list[ReasoningExample], stage: int, batch: int = 64
    ) -> dict[int, list[tuple[int, int]]]:
        """Score every example's CoT token sequence (the one insertion will be applied to) with the current model,
        in right-padded batches (no latents in a CoT sequence, so a row's scores do not depend on its batch)."""
        rng = random.Random(self.seed * 1000 + stage)
        logps: list[list[float]] = []
        was = model.training
        model.eval()
        device = next(model.parameters()).device
        for s in range(0, len(examples), batch):
            rows = [render(ex, "cot", 0, self.cfg, self.tok)[0] for ex in examples[s : s + batch]]
            q_lens = [len(encode_parts(ex, self.tok)[0]) for ex in examples[s : s + batch]]
            T = max(map(len, rows))
            ids = torch.tensor([r + [self.tok.pad_id] * (T - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], device=device)
            lp = model.score(ids, attention_mask=mask).tolist()
            logps += [lp[i][q : len(r)] for i, (q, r) in enumerate(zip(q_lens, rows))]
        model.train(was)
        return {i: choose_insertions(lp, stage, self.cfg, rng) for i, lp in enumerate(logps)}

    def state_dict(self) -> dict:
        return {
            "insertion_stage": self.insertion_stage,
            "insertions": {str(k): v for k, v in self.insertions.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.insertion_stage = int(state.get("insertion_stage", -1))
        self.insertions = {int(k): [tuple(x) for x in v] for k, v in state.get("insertions", {}).items()}


def curriculum_source(
    examples: list[ReasoningExample],
    cfg,
    tok,
    micro_batch: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    split: str = "train",
) -> ReasoningSource:
    """A ReasoningSource with the latent-thoughts curriculum of cfg.model (cfg: the run config)."""
    return ReasoningSource(
        examples,
        LatentCurriculum(cfg.model, tok, seed),
        tok,
        micro_batch,
        max_seq_len=cfg.model.max_seq_len,
        seed=seed,
        rank=rank,
        world_size=world_size,
        split=split,
    )


register_curriculum("latent_thoughts", LatentCurriculum.for_run)
