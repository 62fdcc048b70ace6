"""Generation longer than the model's window, as nanoGPT does it: a sliding context.

`generate(model, ids, n)` calls the model's own (KV-cached) `generate`. While prompt + new tokens fit in
`model.max_seq_len` that is one call, unchanged. Past it, the context is cropped to its last `max_seq_len - 1`
tokens and prefilled again for every further token (the cache holds the window plus the token being sampled), so
each token is predicted from exactly the most recent `max_seq_len - 1` tokens, like nanoGPT's
`idx[:, -block_size:]`.

Which models may slide is the variant's to say (`VariantSpec.generation.slide_blocker`):
- gpt: RoPE attention depends only on relative positions, so a cropped window restarting at position 0 is the
  same computation as the window anywhere else.
- thoughtbubbles: forking is a function of the window's tokens, recomputed on every prefill; RoPE as above.
- free_transformer without a latent (`latent: false`): a plain decoder.
It is an error, naming the limit, for
- free_transformer with a latent: the kept tokens' latent codes Z would be redrawn from the prior, no longer the
  codes the tokens were sampled with;
- latent_thoughts: the context holds continuous thoughts that are not tokens; cropping drops them or the question;
- a variant that does not declare it (the default blocker: sliding is not established for it).

Seeded sampling stays reproducible: the k-th re-prefill samples with seed + k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from latentlm.errors import InputError
from latentlm.nn import SamplingConfig


def sliding_window_reason(model) -> str | None:
    """None if the model's context may be cropped and prefilled again; else why not (the variant's spec says,
    `Generation.slide_blocker`)."""
    from latentlm.models import variant_spec

    return variant_spec(model.config).generation.slide_blocker(model.config)


def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    *,
    eos_token_id: int | None = None,
    callback: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """(B, T + new) ids; prompts of one row or unpadded batches. See the module docstring for the window."""
    window = model.config.max_seq_len
    T = input_ids.shape[1]
    if T >= window:
        raise InputError(
            f"the prompt is {T} tokens; model.max_seq_len={window} leaves room for at most {window - 1}: shorten --prompt"
        )
    first = min(max_new_tokens, window - T)
    if first < max_new_tokens:
        why = sliding_window_reason(model)
        if why is not None:
            raise InputError(
                f"--max-new-tokens={max_new_tokens} with a {T}-token prompt exceeds model.max_seq_len={window}, and "
                f"this {model.config.variant} model cannot slide its window ({why}); use --max-new-tokens <= {first}"
            )
    ids = model.generate(input_ids, first, sampling, eos_token_id=eos_token_id, callback=callback)
    made = ids.shape[1] - T
    k = 0
    while made < max_new_tokens and not _all_done(ids, eos_token_id):
        k += 1
        step_sampling = sampling
        if sampling is not None and sampling.seed is not None:
            step_sampling = replace(sampling, seed=sampling.seed + k)
        ctx = ids[:, -(window - 1) :]
        out = model.generate(ctx, 1, step_sampling, eos_token_id=eos_token_id, callback=callback)
        new = out[:, ctx.shape[1] :]
        if eos_token_id is not None:  # rows that finished earlier keep emitting eos
            new = new.masked_fill((ids[:, T:] == eos_token_id).any(1, keepdim=True), eos_token_id)
        ids = torch.cat([ids, new], dim=1)
        made += 1
    return ids


def _all_done(ids: torch.Tensor, eos_token_id: int | None) -> bool:
    return eos_token_id is not None and bool((ids[:, -1] == eos_token_id).all())
