"""When to think in latent space during generation: per-row switching policies.

Each policy sees the next-token logits of every row and its own per-row state, and answers per row: is the next
input a latent (`latent`), and is a specific token forced (`force`, -1 for none)?
- FixedCount (Coconut): after <bot>, exactly n latents, then <eot> is forced and text follows.
- LearnedThinking (LT-Tuning as coded): a latent whenever the model's argmax is <thinking>.
- ConfidenceThreshold (confidence-driven switching as described): a latent whenever the top probability is below
  tau, at most `cap` latent steps per row.
- ColdStop (Soft Thinking): think in soft concept tokens from the start; stop when the entropy stays below tau for k
  consecutive steps, when the model's argmax is the answer marker, or after `cap` steps; the answer marker is then
  forced. Once a row has stopped it stays in text mode.
- NoLatents: plain decoding (No-CoT, CoT, pause baselines).
"""

from __future__ import annotations

import torch


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


class Policy:
    marker: int = -1  # token id recorded for a latent step (-1: the argmax token)

    def reset(self, batch: int, device) -> None:
        self.n = torch.zeros(batch, dtype=torch.long, device=device)  # latent steps so far
        self.stopped = torch.zeros(batch, dtype=torch.bool, device=device)

    def decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _none(self, logits):
        return torch.full(logits.shape[:1], -1, dtype=torch.long, device=logits.device)


class NoLatents(Policy):
    def decide(self, logits):
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device), self._none(logits)


class FixedCount(Policy):
    def __init__(self, n: int, eot_id: int, latent_id: int):
        self.count, self.eot, self.marker = n, eot_id, latent_id

    def decide(self, logits):
        latent = ~self.stopped & (self.n < self.count)
        force = self._none(logits)
        ending = ~self.stopped & (self.n >= self.count)
        force[ending] = self.eot
        self.stopped |= ending
        self.n += latent.long()
        return latent, force


class LearnedThinking(Policy):
    def __init__(self, thinking_id: int, cap: int = 64):
        self.marker, self.cap = thinking_id, cap

    def decide(self, logits):
        latent = (logits.argmax(-1) == self.marker) & (self.n < self.cap)
        force = self._none(logits)
        force[(logits.argmax(-1) == self.marker) & ~latent] = -2  # over the cap: sample among the other tokens
        self.n += latent.long()
        return latent, force


class ConfidenceThreshold(Policy):
    def __init__(self, tau: float, cap: int, marker: int):
        self.tau, self.cap, self.marker = tau, cap, marker

    def decide(self, logits):
        top = logits.float().softmax(-1).max(-1).values
        latent = (top < self.tau) & (self.n < self.cap)
        self.n += latent.long()
        return latent, self._none(logits)


class ColdStop(Policy):
    def __init__(self, tau: float, k: int, cap: int, answer_id: int):
        self.tau, self.k, self.cap, self.answer = tau, k, cap, answer_id

    def reset(self, batch, device):
        super().reset(batch, device)
        self.calm = torch.zeros(batch, dtype=torch.long, device=device)

    def decide(self, logits):
        self.calm = torch.where(entropy(logits) < self.tau, self.calm + 1, torch.zeros_like(self.calm))
        stop = ~self.stopped & ((self.calm >= self.k) | (self.n >= self.cap) | (logits.argmax(-1) == self.answer))
        force = self._none(logits)
        force[stop] = self.answer
        self.stopped |= stop
        latent = ~self.stopped
        self.n += latent.long()
        return latent, force
