"""Curricula as data transforms: (example, method, stage) -> (input_ids, labels), and the trainer's data source.

The layouts, stage counts and stage schedules are the methods' records (methods.py); labels are pre-shifted targets,
IGNORE_INDEX where nothing is learned. LT-Tuning's insertion (stages 1 and 2): a <thinking> token (twice with some
probability) is inserted before response tokens the current model finds hard (p(gold) < tau), at most `cap` points;
the probabilities come from scoring exactly the token sequence trained on. Latent positions are the positions
holding the method's latent marker; the model replaces their input embeddings.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from latentlm.data.reasoning import ReasoningExample
from latentlm.data.shards import StreamSource
from latentlm.errors import InputError
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


class ReasoningSource(StreamSource):
    """The trainer's data source for latent thoughts: epochs over the examples, the curriculum stage as its phase."""

    def __init__(
        self,
        examples: list[ReasoningExample],
        cfg,
        tok,
        micro_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        split: str = "train",
    ):
        from latentlm.models.latent_thoughts.base import check_special_tokens

        check_special_tokens(tok, cfg.model.special_tokens)
        self.examples, self.cfg, self.run_cfg = examples, cfg.model, cfg
        self.tok, self.micro_batch, self.seed = tok, micro_batch, seed
        self.rank, self.world_size, self.split = rank, world_size, split
        self.method = cfg.model.method
        self.spec = get_method(self.method)
        self.pos, self.stage = 0, 0
        self.insertions: dict[int, list[tuple[int, int]]] = {}
        self.insertion_stage = -1
        self.check_lengths()

    def longest(self, i: int) -> int:
        """An upper bound on example i's tokens over every stage of the method."""
        c = self.cfg
        q, steps, answer = encode_parts(self.examples[i], self.tok)
        return len(q) + sum(map(len, steps)) + len(answer) + self.spec.extra_train_tokens(c)

    def check_lengths(self) -> None:
        """Every example (its CoT chain plus the method's latents) must fit model.max_seq_len, checked up front."""
        for i in range(len(self.examples)):
            n = self.longest(i)
            if n > self.cfg.max_seq_len:
                raise InputError(
                    f"{self.split} example {i}: question + chain + answer need up to {n} tokens with method "
                    f"{self.method}, more than model.max_seq_len={self.cfg.max_seq_len}; raise model.max_seq_len "
                    "or use shorter data"
                )

    # --- phases ------------------------------------------------------------------------------------------------

    def phase(self, step: int) -> int:
        return self.spec.stage_of(step, self.cfg)

    def begin_phase(self, phase: int, model) -> None:
        self.stage = phase
        if self.spec.inserts_thinking and phase > 0 and self.insertion_stage != phase:
            self.insertions = self.score_insertions(model, phase)
            self.insertion_stage = phase

    @torch.no_grad()
    def score_insertions(self, model, stage: int, batch: int = 64) -> dict[int, list[tuple[int, int]]]:
        """Score every example's CoT token sequence (the one insertion will be applied to) with the current model,
        in right-padded batches (no latents in a CoT sequence, so a row's scores do not depend on its batch)."""
        rng = random.Random(self.seed * 1000 + stage)
        logps: list[list[float]] = []
        was = model.training
        model.eval()
        device = _device(model)
        for s in range(0, len(self.examples), batch):
            rows = [render(ex, "cot", 0, self.cfg, self.tok)[0] for ex in self.examples[s : s + batch]]
            q_lens = [len(encode_parts(ex, self.tok)[0]) for ex in self.examples[s : s + batch]]
            T = max(map(len, rows))
            ids = torch.tensor([r + [self.tok.pad_id] * (T - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], device=device)
            lp = model.score(ids, attention_mask=mask).tolist()
            logps += [lp[i][q : len(r)] for i, (q, r) in enumerate(zip(q_lens, rows))]
        model.train(was)
        return {i: choose_insertions(lp, stage, self.cfg, rng) for i, lp in enumerate(logps)}

    # --- batches -----------------------------------------------------------------------------------------------

    def _order(self, g: int) -> int:
        epoch, i = divmod(g, len(self.examples))
        return int(np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))[i])

    def render_index(self, i: int):
        ids, labels = render(self.examples[i], self.method, self.stage, self.cfg, self.tok, self.insertions.get(i))
        if len(ids) > self.cfg.max_seq_len:
            raise InputError(
                f"example {i} needs {len(ids)} tokens at stage {self.stage} (method {self.method}), more than "
                f"model.max_seq_len={self.cfg.max_seq_len}; raise it, shorten the data or use fewer latents"
            )
        return ids, labels

    def collate(self, rows) -> dict[str, torch.Tensor]:
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.tok.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        for r, (x, y) in enumerate(rows):
            ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "stage": torch.tensor(self.stage)}

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.collate([self.render_index(self._order(g)) for g in self.take()])

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        n = len(self.examples) if max_batches is None else min(len(self.examples), batch_size * max_batches)
        for s in range(0, n, batch_size):
            batch = self.collate([self.render_index(i) for i in range(s, min(n, s + batch_size))])
            yield {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    def state_dict(self) -> dict:
        return {
            "pos": self.pos,
            "stage": self.stage,
            "insertion_stage": self.insertion_stage,
            "insertions": {str(k): v for k, v in self.insertions.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.stage = int(state["pos"]), int(state["stage"])
        self.insertion_stage = int(state.get("insertion_stage", -1))
        self.insertions = {int(k): [tuple(x) for x in v] for k, v in state.get("insertions", {}).items()}


def _device(model):
    return next(model.parameters()).device
