"""The Free Transformer's synthetic task (Fleuret 2025, "The Free Transformer", §4) and its data source.

A run of one repeated letter at a random position in noise, the letter given as prompt:
"K>__!____KKKKKKKK___!___...". The position is the global decision a latent Z can carry.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch

from latentlm.data.source import Batch, StreamSource, held_out
from latentlm.errors import ConfigError


@dataclass(frozen=True)
class BlockTask:
    length: int = 64
    """Characters after the prompt (the sequence is `<letter>>` + body + newline)."""
    block: int = 8
    """Length of the run of the prompt letter."""
    noise: float = 1 / 16
    """Probability that a background character is replaced by the noise character."""
    background: str = "_"
    noise_char: str = "!"
    letters: str = string.ascii_uppercase

    def sample(self, rng: np.random.Generator) -> tuple[str, str, int]:
        """-> (text, letter, block start within the body)."""
        letter = self.letters[rng.integers(len(self.letters))]
        pos = int(rng.integers(self.length - self.block + 1))
        body = np.where(rng.random(self.length) < self.noise, self.noise_char, self.background).astype("<U1")
        body[pos : pos + self.block] = letter
        return f"{letter}>" + "".join(body) + "\n", letter, pos

    @staticmethod
    def block_position(body: str, letter: str, block: int) -> int | None:
        """Start of the first run of `letter` at least `block` long in a generated body (None if absent)."""
        run = 0
        for i, ch in enumerate(body):
            run = run + 1 if ch == letter else 0
            if run == block:
                return i - block + 1
        return None


class BlockSource(StreamSource):
    """Endless seeded stream of block sequences for training; a fixed held-out set for evaluation."""

    EVAL_EXAMPLES = 512

    def __init__(
        self, task: BlockTask, tokenizer, micro_batch: int, *, seed: int, split: str, rank: int = 0, world_size: int = 1
    ):
        self.task, self.tok, self.micro_batch = task, tokenizer, micro_batch
        self.seed, self.split_id = seed, {"train": 0, "val": 1}[split]
        self.rank, self.world_size, self.pos = rank, world_size, 0

    def example(self, i: int) -> torch.Tensor:
        text, _, _ = self.task.sample(np.random.default_rng([self.seed, self.split_id, i]))
        return torch.tensor(self.tok.encode(text))

    def _batch(self, indices) -> Batch:
        seqs = torch.stack([self.example(i) for i in indices])  # (B, length + 3)
        return {"input_ids": seqs[:, :-1].contiguous(), "labels": seqs[:, 1:].contiguous()}

    def next_batch(self) -> Batch:
        return self._batch(self.take())

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        """The training layout's inputs, every token but the first scored (as a corpus's token windows are)."""
        for idx in held_out(self.EVAL_EXAMPLES, batch_size, max_batches):
            yield {"input_ids": self._batch(idx)["input_ids"]}


def build_blocks_source(cfg, tokenizer, split, rank, world_size):
    from latentlm.data import micro_batch_size

    if cfg.data.seq_len < 12:
        raise ConfigError(f"data.reasoning=blocks needs data.seq_len >= 12 (got {cfg.data.seq_len})")
    task = BlockTask(length=cfg.data.seq_len - 2)  # prompt (2) + body + newline = seq_len + 1 tokens
    return BlockSource(
        task,
        tokenizer,
        micro_batch_size(cfg, world_size),
        seed=cfg.train.seed,
        split=split,
        rank=rank,
        world_size=world_size,
    )
