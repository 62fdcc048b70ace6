"""When to think in latent space during generation: per-row switching policies.

Each policy sees the next-token logits of every row and its own per-row state, and answers per row: is the next
input a latent (`latent`), and is a specific token forced (`force`, -1 for none)?
- FixedCount (Coconut): after <bot>, exactly n latents (one count per row, or one for all), then <eot> is forced
  and text follows.
- LearnedThinking (LT-Tuning as coded): a latent whenever the model's argmax is <thinking>.
- ConfidenceThreshold (confidence-driven switching as described): a latent whenever the top probability is below
  tau, at most `cap` latent steps per row.
- ColdStop (Soft Thinking): think in soft concept tokens from the start; cold stop when the entropy stays below tau
  for k consecutive steps or when the model's argmax is the answer marker, and the answer marker is then forced.
  `cap` (Soft Thinking's own step budget, by default above max_new_tokens) only ends soft mode, forcing nothing.
  Once a row has stopped it stays in text mode.
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
    def __init__(self, n, eot_id: int, latent_id: int):
        self.count, self.eot, self.marker = n, eot_id, latent_id

    def reset(self, batch, device):
        super().reset(batch, device)
        count = torch.as_tensor(self.count, dtype=torch.long, device=device)
        self.count = count.expand(batch).clone() if count.dim() == 0 else count
        if self.count.shape != (batch,) or bool((self.count < 0).any()):
            raise ValueError(f"latent counts must be >= 0, one per row ({batch}); got {self.count.tolist()}")

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
        stop = ~self.stopped & ((self.calm >= self.k) | (logits.argmax(-1) == self.answer))
        force = self._none(logits)
        force[stop] = self.answer
        self.stopped |= stop | (self.n >= self.cap)  # the budget ends soft mode without forcing the marker
        latent = ~self.stopped
        self.n += latent.long()
        return latent, force
