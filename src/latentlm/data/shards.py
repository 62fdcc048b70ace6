"""A resumable, rank-aware loader over memmapped token shards (the text data source of the trainer).

The training split is cut into non-overlapping windows of seq_len + 1 tokens. Each epoch visits them in a
permutation seeded by (seed, epoch). All ranks walk one global stream of windows: micro-step m of rank r takes
the slice [pos + r*micro, pos + (r+1)*micro), then pos advances by micro * world_size. Hence one process with
grad_accum = k sees exactly the windows that k ranks with grad_accum = 1 see in the same step, and the state
is a single integer.
"""

from __future__ import annotations

import numpy as np
import torch

from latentlm.errors import InputError


class StreamSource:
    """Data-source protocol for a seeded stream indexed by one counter: the state is the counter; no curriculum."""

    pos = 0

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

    def next_batch(self) -> dict[str, torch.Tensor]:
        rows = []
        for g in self.take():
            w = self._window_index(g) * self.seq_len
            rows.append(np.asarray(self.tokens[w : w + self.seq_len + 1], dtype=np.int64))
        batch = torch.from_numpy(np.stack(rows))  # (B, T+1)
        return {"input_ids": batch[:, :-1].contiguous(), "labels": batch[:, 1:].contiguous()}


def eval_windows(tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int | None):
    """Consecutive non-overlapping windows of seq_len tokens from the start of a split, in batches (B, T)."""
    n = len(tokens) // seq_len
    if max_batches is not None:
        n = min(n, max_batches * batch_size)
    for start in range(0, n, batch_size):
        idx = range(start, min(n, start + batch_size))
        yield torch.from_numpy(
            np.stack([np.asarray(tokens[i * seq_len : (i + 1) * seq_len], dtype=np.int64) for i in idx])
        )
