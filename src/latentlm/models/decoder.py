"""Decoder: embed -> blocks -> norm -> head, written as small methods that variants recombine.

A Llama-style pre-norm decoder (RMSNorm, RoPE, SwiGLU, optional GQA, no biases), and the variant contract
every model of latentlm follows:
- `forward(input_ids, labels=None, **batch) -> LMOutput`: labels are *pre-shifted* targets aligned with
  input_ids (labels[:, t] is the token that position t predicts; IGNORE_INDEX is ignored; the convention is
  written once, in nn/loss.py);
- `score(input_ids, attention_mask=None) -> (B, T)`: entry t is log p(input_ids[:, t] | input_ids[:, :t]);
  entry 0 (nothing predicts it) and padded entries are 0;
- `generate(input_ids, max_new_tokens, sampling) -> ids`, with a preallocated KV cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from latentlm.errors import InputError
from latentlm.models.config import DecoderConfig
from latentlm.nn import AttnContext, Block, KVCache, Linear, RMSNorm, RotaryEmbedding, SamplingConfig, sample_next
from latentlm.nn.loss import linear_cross_entropy, lm_loss
from latentlm.outputs import LMOutput


class Decoder(nn.Module):
    score_note = "exact next-token likelihood"
    compile_decode = False
    """Run generation's decode step through torch.compile (`compiled_static_step`). Off by default: on CPU it buys
    little at benchmark size and costs a long first call (benchmarks/gpt_vs_hf.py --compile measures both)."""
    """What `score()` computes, printed beside every likelihood figure (variants with latents override it)."""
    fused_loss = True
    """Train with the fused head + cross-entropy of nn/loss.py (False: materialise the logits; for ablations)."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.kv_heads, c.head_dim, c.ffn_dim, c.norm_eps, layer_idx=i)
            for i in range(c.n_layers)
        )
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.head = Linear(c.d_model, c.vocab_size)
        if c.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self.rope = RotaryEmbedding(c.head_dim, c.max_seq_len, c.rope_base)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) everywhere; residual output projections (attn.wo, mlp.w2) scaled by 1/sqrt(2L)."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            scaled = name.endswith(("attn.wo.weight", "mlp.w2.weight"))
            nn.init.normal_(p, 0.0, std / (2 * self.config.n_layers) ** 0.5 if scaled else std)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    # --- the pieces -------------------------------------------------------------------------------------

    def check_input(self, input_ids: torch.Tensor, extra: int = 0) -> None:
        """Clear errors for sequences longer than max_seq_len and token ids outside the vocabulary."""
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        T, c = input_ids.shape[1] + extra, self.config
        if T > c.max_seq_len:
            raise InputError(
                f"sequence length {T} exceeds model.max_seq_len={c.max_seq_len}; "
                "truncate the input or build the model with a larger max_seq_len"
            )
        if input_ids.numel():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            if hi >= c.vocab_size or lo < 0:
                raise InputError(
                    f"token id {hi if hi >= c.vocab_size else lo} is outside model.vocab_size={c.vocab_size} "
                    "(ids must be in [0, vocab_size)): the tokenizer does not match this model"
                )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tok_emb(input_ids)  # (B, T, D)

    def context(
        self,
        positions: torch.Tensor,
        *,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        **extra,
    ) -> AttnContext:
        return AttnContext(rope=self.rope(positions), cache=cache, attn_mask=attn_mask, **extra)

    def run_blocks(self, h: torch.Tensor, ctx: AttnContext, start: int = 0, end: int | None = None) -> torch.Tensor:
        for block in self.blocks[start:end]:
            h = block(h, ctx)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(h))  # (B, T, V)

    lm_loss = staticmethod(lm_loss)
    """Mean cross-entropy over the non-ignored pre-shifted targets (nn/loss.py's helper; variants call self.lm_loss)."""

    # --- the variant contract -----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **batch,
    ) -> LMOutput:
        self.check_input(input_ids)
        positions, attn_mask = padding_layout(input_ids, attention_mask)
        h = self.run_blocks(self.embed(input_ids), self.context(positions, attn_mask=attn_mask))
        if labels is not None and self.fused_loss_applies(h):  # training: loss only, no (B, T, V) logits (None)
            return LMOutput(loss=linear_cross_entropy(self.norm(h), self.head.weight, labels))
        logits = self.logits(h)
        loss = None if labels is None else self.lm_loss(logits, labels)
        return LMOutput(loss=loss, logits=logits)

    def fused_loss_applies(self, h: torch.Tensor) -> bool:
        """Fused head + cross-entropy (nn/loss.py) in training mode with gradients on, when no autocast would change
        the head's precision (under autocast the unfused path keeps its bf16 head and fp32 loss). The output then
        carries the loss and no logits; eval mode (and no labels) always returns the logits."""
        return (
            self.fused_loss
            and self.training
            and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(h.device.type)
        )

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) log p(x_t | x_<t); exact next-token likelihood of a plain causal decoder."""
        with torch.inference_mode():
            logits = self(input_ids, attention_mask=attention_mask).logits
            logp = token_logprobs(logits, input_ids, attention_mask)
        return logp.clone()  # a normal tensor again, usable outside inference mode

    def scoring_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits whose log-softmax gives score() (the first sample, for stochastic models): what an exported HF
        model returns, so external evaluators see the same likelihood."""
        return self(input_ids, attention_mask=attention_mask).logits

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        c, p = self.config, self.tok_emb.weight
        return KVCache(c.n_layers, batch_size, c.kv_heads, c.head_dim, max_len, dtype=p.dtype, device=p.device)

    def step(
        self, input_ids: torch.Tensor, positions: torch.Tensor, cache: KVCache, key_valid: torch.Tensor | None, **latent
    ) -> torch.Tensor:
        """Run new tokens (B, n) at `positions` (B, n) through the cache; return the last logits (B, V).
        `latent`: per-call decoding state of a variant (e.g. the Free Transformer's Z plan), given to decode_hidden."""
        n = input_ids.shape[1]
        attn_mask = None
        if key_valid is not None:  # left-padded batch: mask padding keys; a query always sees itself
            S = cache.length + n
            attn_mask = key_valid[:, None, None, :S].expand(-1, 1, n, S).clone()
            attn_mask[..., S - n :] |= torch.eye(n, dtype=torch.bool, device=attn_mask.device)
        h = self.decode_hidden(input_ids, self.context(positions, cache=cache, attn_mask=attn_mask), **latent)
        return self.logits(h[:, -1]).float()

    def decode_hidden(self, input_ids: torch.Tensor, ctx: AttnContext, **latent) -> torch.Tensor:
        """The final residual stream of new tokens during cached decoding (variants inject latents here)."""
        return self.run_blocks(self.embed(input_ids), ctx)

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        sampling: SamplingConfig | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        eos_token_id: int | None = None,
        callback: Callable[[torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """KV-cached generation -> (B, T + new) ids. Prompts may be left-padded (attention_mask 0 = pad).

        Rows that emit eos_token_id keep emitting it; the loop stops when every row has. `callback`
        receives each new column of ids (B,), e.g. to stream text to a terminal.
        """
        with torch.inference_mode():  # cheaper than no_grad for the many small ops of decoding
            ids = self._generate(input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback)
        return ids.clone()  # a normal tensor again: generated ids may be fed to training

    def _generate(
        self, input_ids, max_new_tokens, sampling, attention_mask, eos_token_id, callback, **latent
    ) -> torch.Tensor:
        self.check_input(input_ids, extra=max_new_tokens)
        decode = StaticDecode(self, input_ids, attention_mask, input_ids.shape[1] + max_new_tokens, **latent)
        return sampling_loop(input_ids, max_new_tokens, sampling, eos_token_id, callback, decode)

    def static_step(
        self,
        tok: torch.Tensor,
        pos: torch.Tensor,
        slot: torch.Tensor,
        key_mask: torch.Tensor,
        cache: KVCache,
        **latent,
    ) -> torch.Tensor:
        """One static-shape decode step: tokens tok (B, 1) at RoPE positions pos (B, 1) write their keys/values at
        cache index slot (1,) and attend over the whole cache under key_mask (B, 1, 1, max_len), additive
        (0 = attend, -inf = not yet written or padding). Returns the next logits (B, V). No Python value changes
        from step to step (see StaticDecode). `latent`: the variant's per-call decoding state, as in `step`."""
        ctx = AttnContext(rope=self.rope.at(pos), cache=cache, attn_mask=key_mask, slot=slot, causal=False)
        h = self.decode_hidden(tok, ctx, **latent)
        return self.logits(h[:, -1]).float()

    def compiled_static_step(self) -> Callable:
        """static_step through torch.compile (built once per model; it specialises on the cache's shape)."""
        fn = self.__dict__.get("_compiled_static_step")
        if fn is None:
            fn = torch.compile(self.static_step, dynamic=False)
            self.__dict__["_compiled_static_step"] = fn
        return fn

    # --- accounting ---------------------------------------------------------------------------------------

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Unique parameters (a tied head counts once); optionally without the input embedding table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_emb.weight.numel() if exclude_embeddings else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward + backward (= 3 x forward), for sequences of seq_len tokens.

        Matmuls: 2 FLOPs per multiply-accumulate over every weight matrix, the output head included
        (the embedding lookup is free). Attention: QK^T and AV cost 2 * n_heads * head_dim FLOPs per
        (query, key) pair each; with causal masking a query at position t sees t + 1 keys, on average
        (seq_len + 1) / 2, which is what SDPA's causal kernels compute.
        """
        c = self.config
        return 3 * (2 * self.matmul_params() + c.n_layers * 4 * c.n_heads * c.head_dim * (seq_len + 1) / 2)

    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token: every block's linears and the output head."""
        c = self.config
        attn = c.d_model * (c.n_heads + 2 * c.kv_heads) * c.head_dim + c.n_heads * c.head_dim * c.d_model
        mlp = 3 * c.d_model * c.ffn_dim
        return c.n_layers * (attn + mlp) + c.d_model * c.vocab_size


# --- helpers shared by variants -------------------------------------------------------------------------


class StaticDecode:
    """Cached decoding whose every step after the prompt has the same shapes and writes in place.

    `next(None)` prefills the prompt through `Decoder.step` (growing-length views, once per call) and returns its
    last logits; `next(tok)` runs `Decoder.static_step` on the sampled column tok (B,). The step's inputs live in
    tensors preallocated here and advanced in place (the RoPE positions, the cache slot, the key mask), the cache
    is written with `KVCache.write`, and attention always spans the whole cache (max_len = prompt + new tokens)
    with the unwritten positions masked. So:
    - eager mode allocates nothing for the cache and no mask per step (one in-place fill per step; the additive
      mask is in the model's dtype, so no layer converts it);
    - `torch.compile` traces the step once per cache shape (`Decoder.compile_decode`);
    - on CUDA the same step is what a CUDA graph would capture (static input buffers, static cache addresses; copy
      tok into a static buffer before each replay). Not exercised here: no GPU has been lent to this project.
    Reading the whole cache costs (max_len - length) extra KV positions per step, which is small beside the weights
    at the sizes we decode (prompt + new = 160: 2 % of the bytes at the benchmark's default size).
    """

    def __init__(
        self, model: Decoder, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, total_len: int, **latent
    ):
        B, T = input_ids.shape
        self.latent = latent  # a variant's per-call decoding state (the Free Transformer's Z plan), passed to each step
        dev = input_ids.device
        self.model, self.input_ids = model, input_ids
        self.cache = model.new_cache(B, total_len)
        self.positions, self.key_valid = prompt_layout(input_ids, attention_mask, total_len)
        self.pos = self.positions[:, -1:] + 1  # (B, 1) RoPE positions of the next token
        self.slot = torch.full((1,), T, dtype=torch.long, device=dev)  # the cache index it writes
        written = torch.arange(total_len, device=dev) < T
        valid = written if self.key_valid is None else self.key_valid & written
        dtype = model.tok_emb.weight.dtype  # additive, in the model's dtype: SDPA takes it as is in every layer
        self.key_mask = torch.zeros(B, 1, 1, total_len, dtype=dtype, device=dev)  # (B, 1, 1, S)
        self.key_mask.masked_fill_(~valid.expand(B, total_len)[:, None, None, :], float("-inf"))
        self.step = model.compiled_static_step() if model.compile_decode else model.static_step

    def __call__(self, tok: torch.Tensor | None) -> torch.Tensor:
        if tok is None:
            return self.model.step(self.input_ids, self.positions, self.cache, self.key_valid, **self.latent)
        self.cache.advance(1)  # raises before writing when the cache is full
        self.key_mask.index_fill_(-1, self.slot, 0.0)  # the new token sees itself
        logits = self.step(tok[:, None], self.pos, self.slot, self.key_mask, self.cache, **self.latent)
        self.pos += 1
        self.slot += 1
        return logits


def sampling_loop(input_ids, max_new_tokens, sampling, eos_token_id, callback, next_logits) -> torch.Tensor:
    """The decoding loop every cached or recomputing sampler shares. next_logits(None) gives the logits after the
    prompt; next_logits(tok) feeds the sampled column tok (B,) and gives the next logits (B, V). Rows that emitted
    eos_token_id keep emitting it; the loop stops when every row has. Returns (B, T + new) ids."""
    sampling = sampling or SamplingConfig(temperature=0.0)
    generator = sampling.generator(input_ids.device)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    out = [input_ids]
    logits = next_logits(None)
    for i in range(max_new_tokens):
        tok = sample_next(logits, sampling, generator)  # (B,)
        if eos_token_id is not None:
            tok = tok.masked_fill(done, eos_token_id)
            done |= tok == eos_token_id
        out.append(tok[:, None])
        if callback is not None:
            callback(tok)
        if i + 1 == max_new_tokens or bool(done.all()):
            break
        logits = next_logits(tok)
    return torch.cat(out, dim=1)


def padding_layout(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Positions (B or 1, T) and a dense mask for left-padded rows; (arange, None) when nothing is left-padded.

    Right padding needs no mask: causal attention never lets a real token see the pads after it.
    """
    T = input_ids.shape[1]
    arange = torch.arange(T, device=input_ids.device)[None]
    if attention_mask is None or not bool((attention_mask[:, 0] == 0).any()):
        return arange, None
    positions, key_valid = prompt_layout(input_ids, attention_mask, T)
    mask = key_valid[:, None, None, :] | torch.eye(T, dtype=torch.bool, device=input_ids.device)
    return positions, mask


def prompt_layout(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, total_len: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """For generation: per-row positions (B, T) counting only real tokens, and key validity (B, total_len)."""
    B, T = input_ids.shape
    if attention_mask is None or bool(attention_mask.all()):
        return torch.arange(T, device=input_ids.device)[None].expand(B, T), None
    mask = attention_mask.bool()
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    key_valid = torch.ones(B, total_len, dtype=torch.bool, device=input_ids.device)
    key_valid[:, :T] = mask
    return positions, key_valid


def token_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T) log-probabilities of each token given the logits of the position before it (0 at t = 0)."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    out = F.pad(logp, (1, 0))
    if attention_mask is not None:
        m = attention_mask.bool()
        out = out.masked_fill(~(m & F.pad(m[:, :-1], (1, 0))), 0.0)
    return out
