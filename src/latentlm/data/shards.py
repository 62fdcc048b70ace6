"""A resumable, rank-aware loader over memmapped token shards (the text data source of the trainer).

The training split is cut into non-overlapping windows of seq_len + 1 tokens. Each epoch visits them in a
permutation seeded by (seed, epoch); the ranks walk one global stream of windows by the rule of
`latentlm.data.source.StreamSource.take`, so the state is a single integer. Held-out batches are consecutive
windows of seq_len tokens from the start of the split.
"""

from __future__ import annotations

import numpy as np
import torch

from latentlm.data.source import Batch, StreamSource, held_out
from latentlm.errors import InputError

__all__ = ["StreamSource", "TextSource", "eval_windows", "eval_window_batches"]


class TextSource(StreamSource):
    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        micro_batch: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        name: str = "corpus",
    ):
        self.tokens, self.seq_len, self.micro_batch = tokens, seq_len, micro_batch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise InputError(
                f"corpus {name!r} has {len(tokens)} training tokens, fewer than one sequence of data.seq_len+1="
                f"{seq_len + 1}; use a longer corpus or a smaller data.seq_len"
            )
        self.pos = 0
        self._perm_epoch, self._perm = -1, None

    def _window_index(self, g: int) -> int:
        epoch, i = divmod(g, self.n_windows)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            self._perm_epoch = epoch
        return int(self._perm[i])

    def next_batch(self) -> Batch:
        rows = []
        for g in self.take():
            w = self._window_index(g) * self.seq_len
            rows.append(np.asarray(self.tokens[w : w + self.seq_len + 1], dtype=np.int64))
        batch = torch.from_numpy(np.stack(rows))  # (B, T+1)
        return {"input_ids": batch[:, :-1].contiguous(), "labels": batch[:, 1:].contiguous()}

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        return eval_window_batches(self.tokens, self.seq_len, batch_size, max_batches)


def eval_windows(tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int | None):
    """Consecutive non-overlapping windows of seq_len tokens from the start of a split, in batches (B, T)."""
    for idx in held_out(len(tokens) // seq_len, batch_size, max_batches):
        yield torch.from_numpy(
            np.stack([np.asarray(tokens[i * seq_len : (i + 1) * seq_len], dtype=np.int64) for i in idx])
        )


def eval_window_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int | None):
    """`eval_windows` as protocol batches: {"input_ids": (B, T)}, every token but the first of a window scored."""
    for ids in eval_windows(tokens, seq_len, batch_size, max_batches):
        yield {"input_ids": ids}
