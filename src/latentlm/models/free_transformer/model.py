"""The Free Transformer (Fleuret, arXiv 2510.17558): a decoder trained as a conditional VAE.

Wiring (§3.2, Algorithm 2): the first L/2 blocks are shared by encoder and decoder. The encoder (one
non-causal block with a learned constant query, `latent.LatentEncoder`) reads X_{L/2} and gives H bit logits
per token; the Binary Mapper (Eqs. 6-8) turns a sample into R_t = W_post[:, d_t]; block L/2+1 takes its
queries from X_{L/2} and its keys/values from norm(X_{L/2} + R) (one reading of the paper, which does not pin
down the normalisation); the residual stream itself never receives R. Training loss (Eq. 5): cross-entropy +
mean_t max(0, KL_t - kappa).

Generation (§3.3): each Z_t is drawn once from the uniform prior and R_t enters only the cached K/V of
position t, so the KV cache stays valid. Options: encoder (posterior) Z for the prompt, one fixed code for
every position (steering), or explicit codes. `score()` never uses the encoder: prior Z with a fixed seed,
K samples combined as self-normalised importance weights by the prefix likelihood, so that per-token values
telescope to log (1/K) sum_k p(x | z_k), an unbiased estimate of p(x) (a lower bound in log space). The
prior codes of sample k are a hash of (seed, k, the sequence's tokens up to t): each sequence gets its own
draw, and scores do not depend on batching or padding.

Injection scale (`inject_std`, `inject_scale`): the table W_post starts at N(0, 1) by default, not at the
decoder's init std, and is not weight-decayed; otherwise R is a few percent of X_{L/2} and the decoder learns
to ignore Z (measured on configs/free_transformer/blocks.yaml; see `diagnostics.py` for how to tell).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.models.decoder import Decoder, padding_layout, token_logprobs
from latentlm.models.free_transformer.config import FreeTransformerConfig
from latentlm.models.free_transformer.latent import (
    LatentEncoder,
    binary_kl,
    binary_mapper,
    free_bits_loss,
    sample_codes,
)
from latentlm.nn import AttnContext
from latentlm.nn.loss import IGNORE_INDEX
from latentlm.outputs import LMOutput


class FreeTransformer(Decoder):
    """The latent model. `FreeTransformer(config)` with `latent: false` builds a `PlainFreeTransformer` instead
    (the degenerate case is chosen once here, not tested in every method)."""

    config: FreeTransformerConfig

    def __new__(cls, config: FreeTransformerConfig):
        if cls is FreeTransformer and not config.latent:
            return PlainFreeTransformer(config)  # not a FreeTransformer, so __init__ below is not run on it
        return super().__new__(cls)

    def __init__(self, config: FreeTransformerConfig):
        super().__init__(config)
        c = config
        self._step: int | None = None  # the trainer's optimizer step (begin_step), for the kappa schedule
        self.encoder = LatentEncoder(c.d_model, c.n_heads, c.kv_heads, c.head_dim, c.ffn_dim, c.latent_bits, c.norm_eps)
        self.post_sampler = nn.Parameter(torch.empty(2**c.latent_bits, c.d_model))  # row d = W_post[:, d]
        self.post_sampler.no_weight_decay = not c.inject_weight_decay  # read by train.optim.build_optimizer
        for name, p in self.encoder.named_parameters():
            if p.dim() >= 2:
                scaled = name.endswith(("attn.wo.weight", "mlp.w2.weight"))
                nn.init.normal_(p, 0.0, c.init_std / (2 * c.n_layers) ** 0.5 if scaled else c.init_std)
        nn.init.normal_(self.post_sampler, 0.0, c.inject_std)
        nn.init.normal_(self.encoder.zeta, 0.0, c.init_std)

    def begin_step(self, step: int) -> None:
        """Trainer hook, called before each optimizer step (0-based): sets the scheduled kappa."""
        self._step = step

    @property
    def kappa_bits(self) -> float:
        """kappa now: the schedule's value while training, the target kappa_bits otherwise."""
        return self.config.kappa_at(self._step if self.training else None)

    def inject(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The key/value input of the injection block: X_{L/2} + R (R scaled by RMS(X) when inject_scale=rms)."""
        if self.config.inject_scale == "rms":
            r = r * h.pow(2).mean(-1, keepdim=True).add(self.config.norm_eps).sqrt()
        return h + r

    @property
    def score_note(self) -> str:
        k = self.config.score_samples
        return (
            f"prior Z (uniform), seed {self.config.score_seed}, K={k} sample{'s' if k > 1 else ''}"
            + (", importance-weighted by the prefix" if k > 1 else "")
            + "; never the encoder's Z"
        )

    # --- training ------------------------------------------------------------------------------------------

    def forward(self, input_ids, labels=None, attention_mask=None, z_codes=None, **batch) -> LMOutput:
        """z_codes (B, T): use these codes instead of the encoder's sample (prior evaluation, steering)."""
        self.check_input(input_ids)
        c, k = self.config, self.config.inject_at
        positions, attn_mask = padding_layout(input_ids, attention_mask)
        ctx = self.context(positions, attn_mask=attn_mask)
        h = self.run_blocks(self.embed(input_ids), ctx, 0, k)  # X_{L/2}: (B, T, D)
        metrics, kl_loss = {}, 0.0
        if z_codes is None:
            bit_logits = self.encoder(h, self.encoder_context(positions, attention_mask))  # (B, T, H)
            r = binary_mapper(bit_logits, self.post_sampler, sample_codes(bit_logits), c.mapper_budget)
            mask = None if labels is None else (labels != IGNORE_INDEX).float()
            kl_bits = binary_kl(bit_logits)  # (B, T, H) nats
            kl_t = kl_bits.sum(-1)
            kappa = self.kappa_bits
            kl_loss = free_bits_loss(kl_t, kappa * math.log(2), mask)
            metrics = self._latent_metrics(kl_bits, kl_t, mask, kappa)
        else:
            r = self.post_sampler[z_codes]
        kv = self.inject(h, r)
        if metrics:
            metrics["r_over_x"] = ((kv - h).norm(dim=-1).mean() / h.norm(dim=-1).mean().clamp(min=1e-12)).detach()
        h = self.blocks[k](h, ctx, kv_h=kv)
        h = self.run_blocks(h, ctx, k + 1)
        logits = self.logits(h)
        loss = None
        if labels is not None:
            ce = self.lm_loss(logits, labels)
            loss = ce + kl_loss
            metrics["ce"] = ce.detach()
        return LMOutput(loss=loss, logits=logits, metrics=metrics)

    def encoder_context(self, positions: torch.Tensor, attention_mask: torch.Tensor | None) -> AttnContext:
        """Non-causal; zeta is RoPE'd at the token positions; padding keys are masked."""
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        return self.context(positions, attn_mask=key_mask, causal=False)

    def _latent_metrics(self, kl_bits, kl_t, mask, kappa_bits: float) -> dict:
        m = torch.ones_like(kl_t) if mask is None else mask
        n = m.sum().clamp(min=1)
        per_bit = (kl_bits * m[..., None]).sum((0, 1)) / n / math.log(2)  # (H,) mean KL of each bit, in bits
        kappa = kappa_bits * math.log(2)
        return {
            "kappa_bits": torch.tensor(kappa_bits),
            "kl_bits": ((kl_t * m).sum() / n / math.log(2)).detach(),
            "frac_above_kappa": (((kl_t > kappa).float() * m).sum() / n).detach(),
            "bits_used": (per_bit > 0.01).sum().float().detach(),  # bits carrying > 0.01 bit of KL on average
            **{f"bit{h}_kl": v.detach() for h, v in enumerate(per_bit)},  # per-bit usage, in bits
        }

    def diagnostics(self, tokenizer, cfg, split: str = "val", max_batches: int | None = None) -> dict | None:
        """Is Z used? CE with posterior vs prior Z, the KL's MI / bias split, reconstruction (diagnostics.py)."""
        from latentlm.models.free_transformer.diagnostics import diagnose_run

        return diagnose_run(self, tokenizer, cfg, split, max_batches)

    # --- likelihood ----------------------------------------------------------------------------------------

    def score(self, input_ids, attention_mask=None) -> torch.Tensor:
        c = self.config
        with torch.inference_mode():
            lp = torch.stack(
                [
                    token_logprobs(
                        self(
                            input_ids,
                            attention_mask=attention_mask,
                            z_codes=self.score_codes(k, input_ids, attention_mask),
                        ).logits,
                        input_ids,
                        attention_mask,
                    )
                    for k in range(c.score_samples)
                ]
            ).double()  # (K, B, T)
            prefix = torch.logsumexp(lp.cumsum(-1), 0) - math.log(c.score_samples)  # log mean_k p(x_<=t | z_k)
            out = (prefix - F.pad(prefix[:, :-1], (1, 0))).float()
        return out.clone()

    def scoring_logits(self, input_ids, attention_mask=None) -> torch.Tensor:
        """Prior-Z logits of score sample 0 (what score() computes with score_samples=1)."""
        codes = self.score_codes(0, input_ids, attention_mask)
        return self(input_ids, attention_mask=attention_mask, z_codes=codes).logits

    def score_codes(self, sample: int, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        """Prior codes of score sample k: Z_t is a hash of (score_seed, k, the unpadded tokens x_1..x_t).

        So every sequence gets its own uniform draw (two rows of a batch no longer share one Z), a sequence
        scores the same alone or in any batch, padded or not, and sequences with a common prefix share that
        prefix's Z (common random numbers when comparing continuations). Z_t depends on x_<=t only, which the
        decoder has already read, so it carries nothing about the tokens being predicted.
        """
        return prefix_hash_codes(
            input_ids, attention_mask, self.config.score_seed * 1_000_003 + sample, self.config.latent_bits
        )

    def prior_codes(self, shape, generator=None) -> torch.Tensor:
        return torch.randint(0, 2**self.config.latent_bits, shape, generator=generator, device=self.post_sampler.device)

    # --- generation ----------------------------------------------------------------------------------------

    def generate(
        self,
        input_ids,
        max_new_tokens,
        sampling=None,
        *,
        z: str = "prior",
        z_code: int | None = None,
        z_codes: torch.Tensor | None = None,
        z_seed: int | None = None,
        return_codes: bool = False,
        attention_mask=None,
        eos_token_id=None,
        callback=None,
    ):
        """z: "prior" (every Z_t uniform) | "posterior" (encoder Z for the prompt, prior after); z_code: one fixed
        code for every position (steering); z_codes (B, T + new): explicit codes. Cached either way.

        The codes of one call live in a `_ZPlan` handed down the decoding loop as an argument (never on `self`),
        so concurrent or nested generate() calls cannot see each other's Z."""
        if z not in ("prior", "posterior"):
            raise ValueError(f"z must be 'prior' or 'posterior', got {z!r}")
        seed = z_seed if z_seed is not None else (sampling.seed if sampling and sampling.seed is not None else None)
        g = None if seed is None else torch.Generator(input_ids.device).manual_seed(seed + 1)
        plan = _ZPlan(self, g, z_code, z_codes)
        if z == "posterior":
            plan.prompt = self.posterior_codes(input_ids, attention_mask, g)
        with torch.inference_mode():  # cloned outside it: normal tensors, usable in training
            ids = self._generate(input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback, plan=plan)
        ids = ids.clone()
        return (ids, torch.cat(plan.used, 1).clone()) if return_codes else ids

    @torch.inference_mode()
    def posterior_codes(self, input_ids, attention_mask=None, generator=None) -> torch.Tensor:
        positions, attn_mask = padding_layout(input_ids, attention_mask)
        h = self.run_blocks(
            self.embed(input_ids), self.context(positions, attn_mask=attn_mask), 0, self.config.inject_at
        )
        return sample_codes(self.encoder(h, self.encoder_context(positions, attention_mask)), generator).clone()

    def decode_hidden(self, input_ids: torch.Tensor, ctx: AttnContext, plan: _ZPlan | None = None) -> torch.Tensor:
        """Cached decoding of new tokens: their codes come from `plan` (prior draws when None)."""
        k = self.config.inject_at
        codes = self.prior_codes(input_ids.shape) if plan is None else plan.next(input_ids.shape)
        r = self.post_sampler[codes]  # (B, n, D)
        h = self.run_blocks(self.embed(input_ids), ctx, 0, k)
        h = self.blocks[k](h, ctx, kv_h=self.inject(h, r))
        return self.run_blocks(h, ctx, k + 1)

    # --- accounting ----------------------------------------------------------------------------------------

    def flops_per_token(self, seq_len: int) -> float:
        """Decoder + encoder block + readout (fwd + bwd), plus the mapper's exact backward: a (D x 2^H) matmul
        and two (H x 2^H) products per token (the forward is a gather)."""
        c = self.config
        base = super().flops_per_token(seq_len)
        per_layer = (base / 3 - 2 * c.d_model * c.vocab_size) / c.n_layers  # forward FLOPs of one block
        codes = 2**c.latent_bits
        return base + 3 * (per_layer + 2 * c.d_model * c.latent_bits) + 2 * codes * (c.d_model + 2 * c.latent_bits)


class PlainFreeTransformer(Decoder):
    """`latent: false`: the Free Transformer without Z, i.e. exactly the baseline decoder (same parameters, same
    function, exact likelihood). What `FreeTransformer(config)` builds for that config; it keeps the latent
    model's public hooks as no-ops so callers need not tell the two apart."""

    config: FreeTransformerConfig
    score_note = "exact next-token likelihood (latent off)"

    def begin_step(self, step: int) -> None:
        """No kappa to schedule."""

    def diagnostics(self, tokenizer, cfg, split: str = "val", max_batches: int | None = None) -> None:
        """No latent to diagnose."""
        return None

    def generate(
        self,
        input_ids,
        max_new_tokens,
        sampling=None,
        *,
        z="prior",
        z_code=None,
        z_codes=None,
        z_seed=None,
        return_codes=False,
        **kw,
    ):
        """The plain decoder's generation; the Z options are accepted and ignored (there is no Z)."""
        return super().generate(input_ids, max_new_tokens, sampling, **kw)


_M1, _M2, _GOLD = 0x2545F4914F6CDD1D, 0x369DEA0F31A53F85, 0x1E3779B97F4A7C15


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 64-bit integer mixer (xorshift-multiply rounds), wrapping int64 arithmetic; x int64."""
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    x = x * _M1
    x = x ^ ((x >> 29) & ((1 << 35) - 1))
    x = x * _M2
    return x ^ ((x >> 32) & ((1 << 32) - 1))


def prefix_hash_codes(input_ids: torch.Tensor, attention_mask, seed: int, bits: int) -> torch.Tensor:
    """(B, T) codes in [0, 2^bits): code t is a hash of (seed, the non-padding tokens up to t, their count)."""
    ids = input_ids.long()
    keep = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    state = torch.full((ids.shape[0],), seed, dtype=torch.long, device=ids.device)
    state = _mix(state + _GOLD)
    out = torch.empty_like(ids)
    for t in range(ids.shape[1]):  # padding positions leave the state unchanged
        state = torch.where(keep[:, t], _mix(state + (ids[:, t] + 1) * _GOLD), state)
        out[:, t] = state
    return _mix(out) & ((1 << bits) - 1)


class _ZPlan:
    """Which code each new position gets during one generate() call; records them."""

    def __init__(self, model, generator, z_code, z_codes):
        self.model, self.g, self.z_code, self.z_codes = model, generator, z_code, z_codes
        self.prompt: torch.Tensor | None = None
        self.used: list[torch.Tensor] = []
        self.t = 0

    def next(self, shape) -> torch.Tensor:
        B, n = shape
        if self.prompt is not None and self.t == 0:
            codes = self.prompt
        elif self.z_codes is not None:
            codes = self.z_codes[:, self.t : self.t + n]
        elif self.z_code is not None:
            codes = torch.full((B, n), self.z_code, dtype=torch.long, device=self.model.post_sampler.device)
        else:
            codes = self.model.prior_codes((B, n), self.g)
        self.t += n
        self.used.append(codes)
        return codes
