"""Batched, KV-cached generation in which every row switches between latent and token mode on its own.

One step feeds, per row, either the embedding of the sampled (or forced) token or a latent built from the row's
last hidden state and logits, chosen with torch.where on the policy's mode mask; the K/V of both kinds go to the
same preallocated cache. Prompts may be left-padded. Returns ids (latent steps recorded as their marker token, or
the top token for soft thinking), the number of latent steps per row, and a per-step trace.
"""

from __future__ import annotations

import torch

from latentlm.models.latent_thoughts.policies import Policy, entropy
from latentlm.nn import SamplingConfig, sample_next


@torch.inference_mode()
def generate_latent(
    model,
    input_ids,
    max_new_tokens: int,
    policy: Policy,
    sampling: SamplingConfig | None = None,
    attention_mask=None,
    eos_token_id: int | None = None,
    callback=None,
    trace: bool = False,
):
    sampling = sampling or SamplingConfig(temperature=0.0)
    gen = sampling.generator(input_ids.device)
    runner, builder = model.runner, model.builder()
    B, T = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    kv = runner.new_cache(B, T + max_new_tokens)
    E = runner.body.embed_tokens
    rows, slots = torch.nonzero(mask, as_tuple=True)  # left-padded prompts: only real tokens are computed
    h, logits = runner.run(E(input_ids[rows, slots]), rows, slots - (~mask).sum(1)[rows], positions[rows, slots], kv)
    last = mask.sum(1).cumsum(0) - 1  # each row's last prompt token in the packed order
    h, logits, pos = h[last], logits[last].float(), positions[:, -1] + 1
    all_rows, zero = torch.arange(B, device=input_ids.device), torch.zeros(B, dtype=torch.long, device=input_ids.device)
    policy.reset(B, input_ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    out, steps, latents = [input_ids], [], []
    for _ in range(max_new_tokens):
        latent, force = policy.decide(logits)
        latent &= ~done
        if bool((force == -2).any()):  # a policy forbids its marker here
            logits = logits.clone()
            logits[force == -2, policy.marker] = float("-inf")
        tok = sample_next(logits, sampling, gen)
        tok = torch.where(force >= 0, force, tok)
        marker = torch.full_like(tok, policy.marker) if policy.marker >= 0 else logits.argmax(-1)
        shown = torch.where(latent, marker, tok)
        if eos_token_id is not None:
            shown = shown.masked_fill(done, eos_token_id)
        z = builder(h, logits) if bool(latent.any()) else None
        emb = E(tok) if z is None else torch.where(latent[:, None], z, E(tok))
        if trace:
            steps.append(
                {
                    "latent": latent.tolist(),
                    "token": shown.tolist(),
                    "entropy": entropy(logits).tolist(),
                    "norm": emb.norm(dim=-1).tolist(),
                }
            )
        if z is not None:
            latents.append((latent.clone(), z))
        out.append(shown[:, None])
        if callback is not None:
            callback(shown)
        if eos_token_id is not None:
            done |= (shown == eos_token_id) & ~latent
        if bool(done.all()):
            break
        h, logits = runner.run(emb, all_rows, zero, pos, kv)
        logits, pos = logits.float(), pos + 1
    ids = torch.cat(out, 1)
    return ids.clone(), {"latent_steps": policy.n.clone(), "steps": steps, "latents": latents}
