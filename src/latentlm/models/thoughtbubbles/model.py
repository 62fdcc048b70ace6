"""Thoughtbubbles (Liu, Murty, Manning, Csordás; arXiv 2510.00219): forking and pruning residual streams.

The mechanics follow the authors' public code (JAX; the v1 PyTorch for the logit_sum merge):
- fork layers (fork.py) clone or drop streams under a budget, with cumulative log-space scores c = log p;
- attenuation in every block after the first fork (§4): residual updates x p, values x p, and an additive key
  bias c / sqrt(head_dim) riding in a head channel of SDPA's causal kernel (no dense mask);
- fork-aware fractional RoPE (§5): the n streams of token t sit at t - 1 + 1/n, ..., t;
- a merge at the output (merge.py: residual, logit_sum or distribution) and next-token cross-entropy at the original
  positions.
The global budget lets later tokens decide which earlier forks survive (a leak, measured by eval/leak.py); the
`causal` budget decides per token from its own streams only, which allows KV-cached generation. Which of these
(or the duplicated-tokens baseline, or no forks) applies is the model's fork rule (rules.py), chosen once here.

Forwards are stateless: the streams each fork layer kept travel in the output (`metrics["fork{l}/..."]`), and
FLOPs are computed from a given output or batch (`flops_per_token(seq_len, output=...)`), never from an earlier
call. In this file `cfg` is the config and `c` is always a stream's cumulative log-score (the paper's c = log p).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from latentlm.models.decoder import Decoder, sampling_loop
from latentlm.models.thoughtbubbles.config import ThoughtbubblesConfig
from latentlm.models.thoughtbubbles.fork import DEAD, ForkLayer, StreamState, stream_positions, tokens_count
from latentlm.models.thoughtbubbles.merge import distribution_merge, logit_sum_merge, residual_merge
from latentlm.models.thoughtbubbles.rules import CausalThreshold, fork_rule, streams_from_output
from latentlm.nn import AttnContext, KVCache
from latentlm.outputs import LMOutput


class Thoughtbubbles(Decoder):
    config: ThoughtbubblesConfig

    def __init__(self, config: ThoughtbubblesConfig):
        super().__init__(config)
        cfg = config
        self.fork_rule = rule = fork_rule(cfg)  # global top-k | causal threshold | duplicated tokens | no forks
        self.forks = nn.ModuleDict(
            {
                str(i): ForkLayer(
                    cfg.d_model,
                    cfg.norm_eps,
                    cfg.score_clip,
                    cfg.fork_embedding,
                    scored=rule.scored,
                    temperature=cfg.score_temperature,
                )
                for i in rule.layers
            }
        )
        for fork in self.forks.values():
            if rule.scored:
                std = cfg.init_std if cfg.score_init_std is None else cfg.score_init_std
                nn.init.normal_(fork.score.weight, 0.0, std)
                fork.noise = cfg.score_noise
                if isinstance(rule, CausalThreshold) and cfg.causal_target is not None:
                    fork.enable_target()
            if fork.fork_emb is not None:
                nn.init.normal_(fork.fork_emb, 0.0, cfg.d_model**-0.5)

    @property
    def score_note(self) -> str:
        return self.fork_rule.note(self.config)

    # --- streams through the blocks -----------------------------------------------------------------------

    def initial_state(self, input_ids, attention_mask=None) -> StreamState:
        B, T = input_ids.shape
        alive = (
            torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
            if attention_mask is None
            else attention_mask.bool()
        )
        c = torch.where(alive, 0.0, DEAD).float()
        tau = torch.arange(T, device=input_ids.device).expand(B, T)
        return StreamState(self.embed(input_ids), c, tau, alive)

    def run_streams(
        self,
        s: StreamState,
        n_tokens: int,
        offset: torch.Tensor,
        cache: KVCache | None = None,
        padded: bool | None = None,
    ):
        """Blocks and fork layers over a chunk of n_tokens new tokens; offset (B,) = live tokens before it.
        padded: whether some input stream is dead (padding); None = look (one host sync), a forward knows it from
        its attention mask. -> (final state, {fork layer: state after it})."""
        cfg, rule, stats = self.config, self.fork_rule, {}
        bounds = sorted({0, cfg.n_layers, *rule.layers})
        live = s.alive.sum(1)
        attenuate = not bool(s.alive.all()) if padded is None else padded  # padding is masked from block 0 on
        forked = False
        for a, b in zip(bounds, bounds[1:]):
            if a in rule.layers:
                s = rule.fork(self.forks[str(a)], cfg, s, n_tokens, live, self.training)
                attenuate = attenuate or rule.scored
                forked = True
                stats[a] = s
            ctx = self.stream_context(s, n_tokens, offset, cache, attenuate, forked)
            gate = s.p.to(s.h.dtype) if attenuate else None
            for block in self.blocks[a:b]:
                s.h = block(s.h, ctx, gate=gate)
        return s, stats

    def stream_context(
        self, s: StreamState, n_tokens: int, offset: torch.Tensor, cache, attenuate: bool, forked: bool
    ) -> AttnContext:
        pos = stream_positions(s.tau, s.alive, n_tokens) - 1 + offset[:, None]  # token t's last stream at t
        if not attenuate and cache is None:  # p = 1 everywhere: no key bias, no value scale
            # integer positions (the RoPE table, bitwise like GPT) only while every token has one stream
            return AttnContext(rope=self.rope(pos if forked else pos.round().long()))
        scale = self.config.head_dim**-0.5 if self.config.bias_scale == "sqrt" else 1.0  # key bias c / sqrt(hd)
        return AttnContext(
            rope=self.rope(pos),
            key_bias=s.c * scale,
            value_scale=s.p,
            cache=cache,
            # a cached pass before any attenuation carries a zero bias for the cache; the hijacked channel would
            # still overwrite q/k there, which the full forward does not do, so that bias rides in an extra channel
            bias_channel=self.config.bias_channel if attenuate else "extra",
        )

    def merge(self, s: StreamState, n_tokens: int) -> torch.Tensor:
        fn = {"residual": residual_merge, "distribution": distribution_merge, "logit_sum": logit_sum_merge}[
            self.config.merge
        ]
        return fn(s, n_tokens, self.norm, self.head)

    # --- the variant contract ------------------------------------------------------------------------------

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.score_mode == "prefix" and self.fork_rule.leaks:
            return prefix_logprobs(self, input_ids, attention_mask)
        return super().score(input_ids, attention_mask)

    def forward(self, input_ids, labels=None, attention_mask=None, **batch) -> LMOutput:
        """Metrics per fork layer (detached tensors, no host sync): fork{l}/streams_per_token (live streams per
        live token after layer l: what flops_per_token(seq_len, output=...) reads), frac_forked, mean_p."""
        self.check_input(input_ids)
        B, T = input_ids.shape
        s = self.initial_state(input_ids, attention_mask)
        padded = attention_mask is not None and not bool(attention_mask.all())
        s, stats = self.run_streams(s, T, torch.zeros(B, device=input_ids.device), padded=padded)
        logits = self.merge(s, T)
        metrics = {}
        for layer, st in stats.items():
            per_token = tokens_count(st.tau, st.alive, T)[:, :T]  # (B, T)
            real = per_token > 0
            metrics[f"fork{layer}/streams_per_token"] = (per_token.sum() / real.sum().clamp(min=1)).detach()
            metrics[f"fork{layer}/frac_forked"] = ((per_token > 1).sum() / real.sum().clamp(min=1)).float().detach()
            metrics[f"fork{layer}/mean_p"] = st.p[st.alive].mean().detach()
        loss = None if labels is None else self.lm_loss(logits, labels)
        return LMOutput(loss=loss, logits=logits, metrics=metrics)

    @torch.no_grad()
    def fork_map(self, input_ids: torch.Tensor, return_logits: bool = False):
        """Streams per token after each fork layer {layer: {"streams", "p_mass", "mean_p"}}, each (B, T); p_mass is
        the sum of p = exp(c) over a token's streams. With return_logits: (map, merged logits (B, T, V))."""
        was = self.training
        self.eval()
        T = input_ids.shape[1]
        try:
            s, stats = self.run_streams(
                self.initial_state(input_ids), T, torch.zeros(input_ids.shape[0], device=input_ids.device)
            )
            logits = self.merge(s, T) if return_logits else None
        finally:
            self.train(was)
        out = {}
        for layer, st in stats.items():
            count = tokens_count(st.tau, st.alive, T)[:, :T]
            psum = torch.zeros(st.c.shape[0], T + 1).scatter_add_(1, st.tau, st.p * st.alive)[:, :T]
            out[layer] = {"streams": count, "p_mass": psum, "mean_p": psum / count.clamp(min=1)}
        return (out, logits) if return_logits else out

    def generate(
        self, input_ids, max_new_tokens, sampling=None, *, attention_mask=None, eos_token_id=None, callback=None
    ):
        if self.fork_rule.leaks:
            warnings.warn(
                "thoughtbubbles with a global budget has no valid KV cache (appending a token can evict "
                "earlier streams): generate() recomputes the whole sequence for every token",
                stacklevel=2,
            )
            return self._generate_recompute(input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback)
        with torch.inference_mode():
            ids = self._generate_cached(input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback)
        return ids.clone()

    @torch.no_grad()
    def _generate_recompute(self, input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback):
        state = {"ids": input_ids, "mask": attention_mask}

        def next_logits(tok):
            if tok is not None:
                state["ids"] = torch.cat([state["ids"], tok[:, None]], 1)
                if state["mask"] is not None:
                    state["mask"] = torch.cat([state["mask"], torch.ones_like(tok[:, None])], 1)
            return self(state["ids"], attention_mask=state["mask"]).logits[:, -1].float()

        self.check_input(input_ids, extra=max_new_tokens)
        return sampling_loop(input_ids, max_new_tokens, sampling, eos_token_id, callback, next_logits)

    def _generate_cached(self, input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback):
        next_logits = self.cached_stepper(input_ids, attention_mask, input_ids.shape[1] + max_new_tokens)
        return sampling_loop(input_ids, max_new_tokens, sampling, eos_token_id, callback, next_logits)

    def cached_stepper(self, input_ids, attention_mask, total_len: int):
        """Cached decoding (causal budget, duplicated tokens, no forks): next(None) prefills the prompt and returns
        its last logits (B, V); next(tok) appends the column tok (B,) and returns the next logits."""
        cfg = self.config
        B = input_ids.shape[0]
        per_token = self.fork_rule.max_streams(cfg)
        p = self.tok_emb.weight
        cache = KVCache(
            cfg.n_layers,
            B,
            cfg.kv_heads,
            cfg.head_dim,
            total_len * per_token,
            dtype=p.dtype,
            device=p.device,
            key_bias=True,
        )
        offset = torch.zeros(B, device=input_ids.device)

        def next_logits(tok):
            nonlocal offset
            ids, mask = (input_ids, attention_mask) if tok is None else (tok[:, None], None)
            s = self.initial_state(ids, mask)
            n = ids.shape[1]
            s, _ = self.run_streams(s, n, offset, cache)
            offset = offset + tokens_count(s.tau, s.alive, n)[:, :n].gt(0).sum(1)  # live tokens so far
            return self.merge(s, n)[:, -1].float()

        return next_logits

    # --- accounting ----------------------------------------------------------------------------------------

    def stream_multipliers(
        self, seq_len: int, input_ids: torch.Tensor | None = None, *, output: LMOutput | None = None
    ) -> list[float]:
        """Streams per token entering each block, computed statelessly:
        - from `output`, a forward output of this model: the streams its fork layers kept (exact for that batch);
        - causal budget with `input_ids` (pass a fixed validation batch): measured by an eval-mode forward on it;
        - otherwise from the configuration: exact for a global budget (top-k keeps exactly k) and the duplicated
          baseline, the cap (an upper bound) for a causal budget."""
        cfg, rule = self.config, self.fork_rule
        if output is not None:
            return streams_from_output(output.metrics, rule.layers, cfg.n_layers)
        if input_ids is not None and isinstance(rule, CausalThreshold):
            return self.measured_streams(input_ids)
        return rule.multipliers(cfg, seq_len)

    @torch.no_grad()
    def measured_streams(self, input_ids: torch.Tensor) -> list[float]:
        """Live streams per token entering each block on this batch (an eval-mode forward; nothing is kept)."""
        was = self.training
        self.eval()
        try:
            out = self(input_ids)
        finally:
            self.train(was)
        return streams_from_output(out.metrics, self.fork_rule.layers, self.config.n_layers)

    def flops_per_token(
        self, seq_len: int, input_ids: torch.Tensor | None = None, *, output: LMOutput | None = None
    ) -> float:
        """Training FLOPs per input token: every block's matmuls and causal attention scale with its streams
        (from `output` or `input_ids` when given, see stream_multipliers)."""
        cfg = self.config
        layer_matmul = (self.matmul_params() - cfg.d_model * cfg.vocab_size) / cfg.n_layers
        fwd = 0.0
        mult = self.stream_multipliers(seq_len, input_ids, output=output)
        for m in mult:
            n = m * seq_len
            fwd += m * (2 * layer_matmul + 4 * cfg.n_heads * cfg.head_dim * (n + 1) / 2)
        head_streams = mult[-1] if cfg.merge == "distribution" else 1.0
        scored = len(self.fork_rule.layers) if self.fork_rule.scored else 0  # the d -> 2 score heads
        fwd += head_streams * 2 * cfg.d_model * cfg.vocab_size + scored * 2 * 2 * cfg.d_model
        return 3 * fwd


@torch.no_grad()
def prefix_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, chunk: int = 64):
    """(B, T) log p(x_t | x_<t) with each position scored by a forward over its own prefix only (left-padded
    prefixes batched `chunk` at a time). Padding (mask 0, left or right) scores 0, as in score()."""
    B, T = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    out = torch.zeros(B, T, dtype=torch.float32)
    was = model.training
    model.eval()
    try:
        for b in range(B):
            idx = mask[b].nonzero().flatten()
            seq = input_ids[b, idx]
            L = len(seq)
            if L < 2:
                continue
            # row r: the prefix seq[: r + 1], left-padded to L - 1, predicting seq[r + 1]
            rows = torch.arange(L - 1)[:, None]
            cols = torch.arange(L - 1)[None, :]
            src = cols - (L - 2 - rows)  # index into seq, negative = padding
            pad = src < 0
            ids = torch.where(pad, 0, seq[src.clamp(min=0)])
            for a in range(0, L - 1, chunk):
                logits = model(ids[a : a + chunk], attention_mask=(~pad[a : a + chunk]).long()).logits[:, -1]
                tgt = seq[a + 1 : a + 1 + chunk]
                out[b, idx[a + 1 : a + 1 + chunk]] = logits.float().log_softmax(-1).gather(1, tgt[:, None])[:, 0]
    finally:
        model.train(was)
    return out
