"""Forking residual streams (Thoughtbubbles §3, as in the authors' public code).

Every block carries a StreamState: residual streams h (B, N, D), cumulative log-scores c = log p (B, N) in fp32,
the source token tau of each stream, and `alive`. A ForkLayer scores each stream with its own norm and a
d -> 2 linear (fork, keep), turns the scores into clipped log-sigmoids added to c, and lays out 2N candidates
with each fork copy immediately left of its original. The last candidate of every token is protected (it always
survives), so no token loses all its streams. Survivors:
- global: the k = min(ceil(kappa * T), 2N) best candidates of the whole sequence (authors' code);
- causal: per token, the candidates with p > threshold, at most `cap` (decided from the token's own streams only).
Survivors keep their order; fork copies get a learned embedding; pruned candidates are dropped.
Dead streams (padding, soft-killed budget surplus) have c = DEAD: p = 0 and a key bias that removes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.nn import Linear, RMSNorm

DEAD = -1.0e4  # log-score of a dead stream: p = exp(DEAD) = 0, attention weight ~exp(DEAD / sqrt(hd)) = 0


@dataclass
class StreamState:
    h: torch.Tensor  # (B, N, D) residual streams
    c: torch.Tensor  # (B, N) cumulative log-scores, fp32
    tau: torch.Tensor  # (B, N) source token of each stream (T = sentinel for row padding)
    alive: torch.Tensor  # (B, N) bool

    @property
    def p(self) -> torch.Tensor:
        return self.c.exp()


def stream_positions(tau: torch.Tensor, alive: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Fractional RoPE positions: the n live streams of a token sit at t + 1/n, ..., t + 1 (t counts live tokens
    before it); with one stream per token this is 1, 2, ..., T. -> (B, N) float."""
    counts = tokens_count(tau, alive, n_tokens)  # (B, T+1)
    share = alive.float() / counts.gather(1, tau).clamp(min=1)  # (B, N)
    return share.cumsum(1)


def tokens_count(tau: torch.Tensor, alive: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Live streams per token: (B, T+1), the last column collecting row padding."""
    return torch.zeros(tau.shape[0], n_tokens + 1, device=tau.device).scatter_add_(1, tau, alive.float())


def last_of_group(tau: torch.Tensor) -> torch.Tensor:
    """True where the next entry belongs to another token (or at the end): the protected candidates."""
    return F.pad(tau[:, 1:] != tau[:, :-1], (0, 1), value=True)


class ForkLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        eps: float,
        clip: float,
        fork_embedding: bool,
        scored: bool = True,
        temperature: float = 1.0,
    ):
        super().__init__()
        if scored:  # the duplicated-tokens baseline forks without scores
            self.norm = RMSNorm(d_model, eps)
            self.score = Linear(d_model, 2)  # (fork, keep) logits, no bias
        self.fork_emb = nn.Parameter(torch.zeros(d_model)) if fork_embedding else None
        self.clip, self.temperature = clip, temperature
        self.noise = 0.0  # logistic noise on the score logits, set by the model in training mode only

    def candidates(self, s: StreamState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Interleaved candidates (B, 2N): c + log sigmoid(fork) at 2i (the copy), c + log sigmoid(keep) at 2i+1."""
        logits = self.score(self.norm(s.h)).float() / self.temperature  # (B, N, 2)
        if self.noise > 0 and self.training:
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            logits = logits + self.noise * (u.log() - (-u).log1p())  # logistic(0, 1) noise
        ell = F.logsigmoid(logits).clamp(min=self.clip)
        cand_c = (s.c[..., None] + ell).flatten(1)  # (B, 2N)
        cand_c = torch.where(s.alive.repeat_interleave(2, 1), cand_c, DEAD)
        return cand_c, s.tau.repeat_interleave(2, 1), s.alive.repeat_interleave(2, 1)

    def gather(
        self, s: StreamState, idx: torch.Tensor, cand_c, cand_tau, cand_alive, keep: torch.Tensor
    ) -> StreamState:
        """Survivors idx (B, k) in candidate order; keep (B, k) False marks dead slots."""
        D = s.h.shape[-1]
        h = s.h.gather(1, (idx // 2)[..., None].expand(-1, -1, D))
        if self.fork_emb is not None:
            h = h + (idx % 2 == 0)[..., None].to(h.dtype) * self.fork_emb
        alive = cand_alive.gather(1, idx) & keep
        c = torch.where(alive, cand_c.gather(1, idx), DEAD)
        return StreamState(h, c, cand_tau.gather(1, idx), alive)

    def fork_global(
        self,
        s: StreamState,
        budget: float,
        n_tokens: int,
        live_tokens: torch.Tensor,
        noise: float = 0.0,
        ranking: str = "learned",
    ) -> StreamState:
        """Top-k over the sequence; k from the chunk length, surplus soft-killed in rows with fewer live tokens.
        ranking: learned (by c) | random (uniform scores) | worst (by -c); the protected candidates survive always."""
        cand_c, cand_tau, cand_alive = self.candidates(s)
        if ranking == "random":
            rank = torch.rand_like(cand_c)
        elif ranking == "worst":
            rank = -cand_c
        else:
            rank = cand_c + noise * _gumbel(cand_c) if noise > 0 else cand_c.clone()
        rank = torch.where(cand_alive, rank, -math.inf)
        rank = torch.where(cand_alive & last_of_group(cand_tau), math.inf, rank)
        k = min(math.ceil(budget * n_tokens), cand_c.shape[1])
        top = rank.topk(k, dim=1)  # best first
        row_k = (budget * live_tokens.float()).ceil().long()  # (B,) this row's budget
        keep_ranked = torch.arange(k, device=rank.device)[None] < row_k[:, None]
        idx, order = top.indices.sort(dim=1)
        return self.gather(s, idx, cand_c, cand_tau, cand_alive, keep_ranked.gather(1, order))

    def enable_target(self) -> None:
        """A calibrated log-threshold for causal mode with a FLOP target (NaN until the first training batch)."""
        self.register_buffer("log_thr", torch.tensor(float("nan")))

    @torch.no_grad()
    def calibrate(self, cand_c, cand_alive, protected, target: float, momentum: float = 0.1) -> None:
        """Move log_thr towards the threshold that keeps (target - 1) extra candidates per live token on this
        batch: the midpoint between the needed-th and the next largest unprotected score."""
        free = cand_c[cand_alive & ~protected]
        need = int(round((target - 1) * float(protected.sum())))
        if free.numel() == 0:
            return
        top = free.topk(min(need + 1, free.numel())).values
        if need == 0:
            thr = top[0] + 1e-3
        elif need >= free.numel():
            thr = top[-1] - 1e-3
        else:
            thr = (top[need - 1] + top[need]) / 2
        self.log_thr.copy_(thr if self.log_thr.isnan() else (1 - momentum) * self.log_thr + momentum * thr)

    def fork_causal(
        self, s: StreamState, threshold: float, cap: int, n_tokens: int, target: float | None = None
    ) -> StreamState:
        """Per token: keep candidates with p > threshold (the protected one always), at most `cap`; rows are
        compacted in order and padded at the end with dead slots. With a target, the threshold is this layer's
        calibrated constant (updated from the batch in training mode, after the batch's decisions)."""
        cand_c, cand_tau, cand_alive = self.candidates(s)
        protected = cand_alive & last_of_group(cand_tau)
        if target is not None and self.training:
            self.calibrate(cand_c, cand_alive, protected, target)
        log_thr = math.log(threshold)  # the fixed threshold, also while a target is still uncalibrated (NaN)
        if target is not None:  # a tensor comparison, no host sync
            log_thr = torch.where(self.log_thr.isnan(), log_thr, self.log_thr)
        keep = protected | (cand_alive & (cand_c > log_thr))
        prio = torch.where(protected, math.inf, torch.where(keep, cand_c, -math.inf))
        by_prio = prio.argsort(dim=1, descending=True, stable=True)
        by_token = cand_tau.gather(1, by_prio).argsort(dim=1, stable=True)
        order = by_prio.gather(1, by_token)  # grouped by token, best first within a token
        sorted_tau = cand_tau.gather(1, order)
        start = torch.searchsorted(sorted_tau, sorted_tau, side="left")  # first index of each token's group
        rank_in_token = torch.arange(order.shape[1], device=order.device)[None] - start
        keep = keep & torch.zeros_like(keep).scatter(1, order, rank_in_token < cap)
        n_keep = int(keep.sum(1).max())
        idx = (~keep).to(torch.int8).argsort(dim=1, stable=True)[:, :n_keep]  # kept first, original order
        kept = keep.gather(1, idx)
        idx = torch.where(kept, idx, idx.new_zeros(()))  # padding slots: any index, marked dead below
        out = self.gather(s, idx, cand_c, cand_tau, cand_alive, kept)
        out.tau = torch.where(kept, out.tau, n_tokens)
        return out

    def duplicate(self, s: StreamState) -> StreamState:
        """The non-adaptive baseline: every stream doubled (copy left of original), p unchanged."""
        idx = torch.arange(2 * s.h.shape[1], device=s.h.device).expand(s.h.shape[0], -1)
        cand_c = s.c.repeat_interleave(2, 1)
        return self.gather(
            s,
            idx,
            cand_c,
            s.tau.repeat_interleave(2, 1),
            s.alive.repeat_interleave(2, 1),
            torch.ones_like(idx, dtype=torch.bool),
        )


def _gumbel(x: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(x).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))
