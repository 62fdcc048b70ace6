"""The data-source protocol: what the trainer and the evaluators pull batches from, and the one rank/position rule.

Every source (token shards, the Free Transformer's blocks, graph paths, reasoning curricula) implements
`DataSource`; a batch is always a dict of tensors:
    input_ids (B, T)                    always
    labels (B, T)                       pre-shifted targets (labels[:, t] is what position t predicts), -100 ignored
    attention_mask (B, T)               1 for real tokens (right-padded rows), when rows differ in length
    extras                              e.g. the curriculum `stage` of a training batch
An eval batch without labels scores every token but the first; with labels, only the supervised tokens.

Indexed streams (`StreamSource`) hold one counter as their whole position: rank r of w takes the stream indices
[pos + r*mb, pos + (r+1)*mb) and pos advances by mb*w, so one process with grad_accum = k reads exactly what k ranks
with grad_accum = 1 read in the same step, and a checkpoint's position is a single integer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

Batch = dict[str, torch.Tensor]


@runtime_checkable
class DataSource(Protocol):
    """The trainer's and the evaluators' view of a data source."""

    def next_batch(self) -> Batch:
        """This rank's next training micro-batch."""
        ...

    def eval_batches(self, batch_size: int, max_batches: int | None = None) -> Iterator[Batch]:
        """A fixed held-out sequence of batches, the same on every call (not affected by the training position)."""
        ...

    def state_dict(self) -> dict:
        """The resumable position (JSON-serialisable): after load_state_dict, next_batch continues bit-identically."""
        ...

    def load_state_dict(self, state: dict) -> None: ...

    def phase(self, step: int) -> int:
        """The curriculum stage of optimizer step `step` (0 for sources without a curriculum)."""
        ...

    def begin_phase(self, phase: int, model) -> None:
        """Called by the trainer when the phase changes (and at the first step of every process)."""
        ...


class StreamSource:
    """Base of the sources whose training batches are read from a seeded stream indexed by one counter.

    Subclasses set `micro_batch`, `rank`, `world_size` and implement next_batch (via `take`) and eval_batches."""

    pos = 0
    micro_batch = 1
    rank = 0
    world_size = 1

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = int(state["pos"])

    def phase(self, step: int) -> int:
        return 0

    def begin_phase(self, phase: int, model) -> None:
        pass

    def take(self) -> range:
        """The stream indices of this rank's next micro-batch; advances the shared counter past every rank's.
        Rank r of w takes [pos + r*mb, pos + (r+1)*mb), so the ranks together read what one process would."""
        start = self.pos + self.rank * self.micro_batch
        self.pos += self.micro_batch * self.world_size
        return range(start, start + self.micro_batch)


def held_out(n: int, batch_size: int, max_batches: int | None) -> Iterator[range]:
    """Consecutive index ranges of batch_size covering the first n held-out items (at most max_batches of them)."""
    if max_batches is not None:
        n = min(n, batch_size * max_batches)
    for start in range(0, n, batch_size):
        yield range(start, min(n, start + batch_size))
