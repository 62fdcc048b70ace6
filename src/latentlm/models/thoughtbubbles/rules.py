"""Fork rules: how a Thoughtbubbles model forks, chosen once from its config when the model is built.

- `GlobalTopK` (budget_mode=global, the authors' code): the k = min(ceil(kappa * T), 2N) best candidates of the
  whole sequence survive each fork layer; later tokens can decide which earlier forks survive (a leak), so there
  is no valid KV cache.
- `CausalThreshold` (budget_mode=causal): per token, the candidates with p > threshold (or a calibrated threshold
  with a FLOP target), at most causal_cap; decisions from the token's own streams only, so KV-cached generation
  is exact.
- `DuplicateTokens` (duplicate_tokens=true, the non-adaptive baseline): every token doubled once, at the first
  fork layer, p = 1, no scores, no later forks.
- `NoForks` (fork_layers=[]): the plain decoder.

A rule holds no state; the tunable numbers (budget, causal_cap, ranking, thresholds) are read from the config at
every call, so an evaluation may vary them (eval/allocation.py's selection table), but the kind of rule is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from latentlm.models.thoughtbubbles.config import ThoughtbubblesConfig
from latentlm.models.thoughtbubbles.fork import ForkLayer, StreamState


@dataclass(frozen=True)
class ForkRule:
    layers: tuple[int, ...]
    """The fork layers that change the streams (each has a ForkLayer)."""
    scored: bool = True
    """Its ForkLayers have score heads (c changes, so attention and updates are attenuated after the first fork)."""
    leaks: bool = False
    """Later tokens can change earlier positions' forks (score() leaks unless score_mode=prefix; no KV cache)."""
    ranked: bool = False
    """Survivors are chosen by rank, so the random / worst rankings are meaningful ablations."""
    budgeted: bool = True
    """A budget or cap bounds the streams, so `budget=1, causal_cap=1` gives the one-stream model."""

    def fork(self, fork: ForkLayer, cfg: ThoughtbubblesConfig, s: StreamState, n_tokens, live, training: bool):
        raise NotImplementedError

    def max_streams(self, cfg: ThoughtbubblesConfig) -> int:
        """Streams per token at most (the KV cache's length per token)."""
        return 1

    def multipliers(self, cfg: ThoughtbubblesConfig, seq_len: int) -> list[float]:
        """Streams per token entering each block, from the configuration alone (exact, or an upper bound)."""
        out, n = [], float(seq_len)
        for layer in range(cfg.n_layers):
            if layer in self.layers:
                n = self.streams_after(cfg, seq_len, n)
            out.append(n / seq_len)
        return out

    def streams_after(self, cfg: ThoughtbubblesConfig, seq_len: int, n: float) -> float:
        return n

    def note(self, cfg: ThoughtbubblesConfig) -> str:
        return "exact causal next-token likelihood"


class NoForks(ForkRule):
    def note(self, cfg):
        return "exact next-token likelihood (no fork layers)"


class DuplicateTokens(ForkRule):
    def fork(self, fork, cfg, s, n_tokens, live, training):
        return fork.duplicate(s)

    def max_streams(self, cfg):
        return 2

    def streams_after(self, cfg, seq_len, n):
        return 2.0 * seq_len


class GlobalTopK(ForkRule):
    def fork(self, fork, cfg, s, n_tokens, live, training):
        noise = cfg.gumbel_scale if training else 0.0
        return fork.fork_global(s, cfg.budget, n_tokens, live, noise, cfg.ranking)

    def max_streams(self, cfg):
        return 2 ** len(self.layers)

    def streams_after(self, cfg, seq_len, n):  # top-k keeps exactly k
        return min(math.ceil(cfg.budget * seq_len), 2 * n)

    def note(self, cfg):
        if cfg.score_mode == "prefix":
            return "global top-k budget scored from each position's own prefix (no leak; score_mode=prefix)"
        return "global top-k budget: earlier positions can depend on later tokens (leak; see eval leak)"


class CausalThreshold(ForkRule):
    def fork(self, fork, cfg, s, n_tokens, live, training):
        return fork.fork_causal(s, cfg.causal_threshold, cfg.causal_cap, n_tokens, cfg.causal_target)

    def max_streams(self, cfg):
        return cfg.causal_cap

    def streams_after(self, cfg, seq_len, n):  # an upper bound: the cap
        return min(cfg.causal_cap * seq_len, 2 * n)


def fork_rule(cfg: ThoughtbubblesConfig) -> ForkRule:
    """The rule of this configuration (the one place that reads fork_layers / duplicate_tokens / budget_mode)."""
    layers = tuple(cfg.fork_layers)
    if not layers:
        return NoForks((), scored=False)
    if cfg.duplicate_tokens:  # the baseline doubles once, at the first fork layer, unscored
        return DuplicateTokens(layers[:1], scored=False, budgeted=False)
    if cfg.budget_mode == "causal":
        return CausalThreshold(layers)
    return GlobalTopK(layers, leaks=True, ranked=True)


def streams_from_output(metrics: dict, layers: tuple[int, ...], n_layers: int) -> list[float]:
    """Streams per token entering each block, read from a forward output's `fork{layer}/streams_per_token`."""
    out, n = [], 1.0
    for layer in range(n_layers):
        if layer in layers:
            v = metrics[f"fork{layer}/streams_per_token"]
            n = float(v.item() if isinstance(v, torch.Tensor) else v)
        out.append(n)
    return out
