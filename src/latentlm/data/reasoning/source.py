"""The trainer's data source over reasoning examples, and the data.reasoning dispatch.

`ReasoningSource` walks epochs over a fixed list of examples (the rank/position rule of `StreamSource`), renders
each through a `Curriculum` at the current stage, and collates right-padded batches. The curriculum is what a
training method contributes (latent thoughts: Coconut's stages, LT-Tuning's insertions, in
`latentlm.models.latent_thoughts`); it is looked up by model variant in `CURRICULA`, which variants add to with
`register_curriculum`, so this module imports no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from latentlm.data.reasoning.blocks import build_blocks_source
from latentlm.data.reasoning.tasks import parse_task, reasoning_examples
from latentlm.data.reasoning.types import ReasoningExample
from latentlm.data.source import Batch, StreamSource, held_out
from latentlm.errors import ConfigError, InputError
from latentlm.nn.loss import IGNORE_INDEX as IGNORE


class Curriculum(Protocol):
    """How a training method turns examples into token sequences, stage by stage."""

    name: str
    """The method, for messages."""

    def render(self, index: int, example: ReasoningExample, stage: int) -> tuple[list[int], list[int]]:
        """-> (input_ids, labels pre-shifted, IGNORE where nothing is learned) of example `index` at `stage`."""
        ...

    def longest(self, example: ReasoningExample) -> int:
        """An upper bound on the example's tokens over every stage."""
        ...

    def phase(self, step: int) -> int:
        """The stage of optimizer step `step`."""
        ...

    def begin_phase(self, phase: int, model, examples: list[ReasoningExample]) -> None:
        """Rebuild what the stage needs (e.g. insertion points scored by the current model)."""
        ...

    def state_dict(self) -> dict:
        """What the curriculum adds to the source's resumable position (flat JSON keys)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


CurriculumFactory = Callable[..., Curriculum]
"""(run config, tokenizer, seed) -> Curriculum."""

CURRICULA: dict[str, CurriculumFactory] = {}
"""model.variant -> the curriculum its reasoning-example runs train with."""


def register_curriculum(variant: str, factory: CurriculumFactory) -> None:
    CURRICULA[variant] = factory


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Right-padded (input_ids, labels, attention_mask); padding is pad_id / IGNORE / 0."""
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class ReasoningSource(StreamSource):
    """Epochs over the examples in a seeded order per epoch; the curriculum's stage is the source's phase."""

    def __init__(
        self,
        examples: list[ReasoningExample],
        curriculum: Curriculum,
        tok,
        micro_batch: int,
        *,
        max_seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        split: str = "train",
    ):
        self.examples, self.curriculum, self.tok = examples, curriculum, tok
        self.micro_batch, self.max_seq_len, self.seed = micro_batch, max_seq_len, seed
        self.rank, self.world_size, self.split = rank, world_size, split
        self.pos, self.stage = 0, 0
        self.check_lengths()

    def check_lengths(self) -> None:
        """Every example (its CoT chain plus the method's latents) must fit model.max_seq_len, checked up front."""
        for i, ex in enumerate(self.examples):
            n = self.curriculum.longest(ex)
            if n > self.max_seq_len:
                raise InputError(
                    f"{self.split} example {i}: question + chain + answer need up to {n} tokens with method "
                    f"{self.curriculum.name}, more than model.max_seq_len={self.max_seq_len}; raise "
                    "model.max_seq_len or use shorter data"
                )

    def phase(self, step: int) -> int:
        return self.curriculum.phase(step)

    def begin_phase(self, phase: int, model) -> None:
        self.stage = phase
        self.curriculum.begin_phase(phase, model, self.examples)

    def _order(self, g: int) -> int:
        epoch, i = divmod(g, len(self.examples))
        return int(np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))[i])

    def render_index(self, i: int) -> tuple[list[int], list[int]]:
        ids, labels = self.curriculum.render(i, self.examples[i], self.stage)
        if len(ids) > self.max_seq_len:
            raise InputError(
                f"example {i} needs {len(ids)} tokens at stage {self.stage} (method {self.curriculum.name}), more "
                f"than model.max_seq_len={self.max_seq_len}; raise it, shorten the data or use fewer latents"
            )
        return ids, labels

    def collate(self, rows) -> Batch:
        return {**collate(rows, self.tok.pad_id), "stage": torch.tensor(self.stage)}

    def next_batch(self) -> Batch:
        return self.collate([self.render_index(self._order(g)) for g in self.take()])

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        """The split's examples in order at the current stage; only the supervised tokens are scored."""
        for idx in held_out(len(self.examples), batch_size, max_batches):
            yield collate([self.render_index(i) for i in idx], self.tok.pad_id)

    def state_dict(self) -> dict:
        return {"pos": self.pos, "stage": self.stage, **self.curriculum.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.stage = int(state["pos"]), int(state["stage"])
        self.curriculum.load_state_dict(state)


def build_examples_source(cfg, tokenizer, split, rank, world_size) -> ReasoningSource:
    """The curriculum of cfg.model's variant over generated or user reasoning examples."""
    from latentlm.data import micro_batch_size

    variant = cfg.model.variant
    if variant not in CURRICULA:
        raise ConfigError(
            f"data.reasoning={cfg.data.reasoning!r} trains a reasoning curriculum, which model.variant={variant!r} "
            f"does not have; use a variant that registers one ({', '.join(sorted(CURRICULA)) or 'none loaded'})"
        )
    n = cfg.data.reasoning_examples if split == "train" else max(8, cfg.data.reasoning_examples // 8)
    examples = reasoning_examples(cfg.data.reasoning, split, n, cfg.train.seed)
    if cfg.data.reasoning_exclude and split in ("train", "val"):
        examples = excluding(cfg, examples, split, n)
    return ReasoningSource(
        examples,
        CURRICULA[variant](cfg, tokenizer, cfg.train.seed),
        tokenizer,
        micro_batch_size(cfg, world_size),
        max_seq_len=cfg.model.max_seq_len,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        split=split,
    )


def excluding(cfg, examples: list[ReasoningExample], split: str, n: int) -> list[ReasoningExample]:
    """`examples` without any whose question is in the data.reasoning_exclude file; a generated set is drawn again,
    larger, until n remain (the first n in draw order); a user file just loses them."""
    from latentlm.data.reasoning.files import load_examples

    banned = {" ".join(ex.question.split()) for ex in load_examples(cfg.data.reasoning_exclude)}

    def keep(exs):
        return [ex for ex in exs if " ".join(ex.question.split()) not in banned]

    kept = keep(examples)
    if Path(cfg.data.reasoning).suffix in (".jsonl", ".txt"):
        if not kept:
            raise InputError(
                f"every {split} example of {cfg.data.reasoning} is in data.reasoning_exclude="
                f"{cfg.data.reasoning_exclude}; nothing is left to train on"
            )
        return kept
    draw = n
    for _ in range(6):  # up to ~100 n draws
        if len(kept) >= n:
            return kept[:n]
        draw = 2 * draw + 4 * (n - len(kept))
        kept = keep(reasoning_examples(cfg.data.reasoning, split, draw, cfg.train.seed))
    raise InputError(
        f"data.reasoning={cfg.data.reasoning!r}: only {len(kept)} of {n} {split} examples are not in "
        f"data.reasoning_exclude={cfg.data.reasoning_exclude} after drawing {draw}; the task has too few distinct "
        "questions for this many examples; lower data.reasoning_examples or use a larger task"
    )


REASONING_TASKS = {
    "blocks": build_blocks_source,
    "gsm": build_examples_source,
    "prosqa": build_examples_source,
    "prontoqa": build_examples_source,
    "hops": build_examples_source,
    "perm": build_examples_source,
}


def build_reasoning_source(cfg, tokenizer, split: str, rank: int = 0, world_size: int = 1):
    name = cfg.data.reasoning
    if Path(name).suffix in (".jsonl", ".txt"):
        return build_examples_source(cfg, tokenizer, split, rank, world_size)
    if parse_task(name)[0] not in REASONING_TASKS:
        raise ConfigError(f"unknown data.reasoning={name!r}; known: {', '.join(REASONING_TASKS)}")
    return REASONING_TASKS[parse_task(name)[0]](cfg, tokenizer, split, rank, world_size)
