"""Is Z used? Dead-latent diagnostics for a trained Free Transformer.

"KL pinned at kappa" does not show that the decoder reads Z: the encoder can spend its free bits on an
input-independent bias, and the decoder can ignore whatever Z carries. Three measurements that can tell:

- **CE gap** (nats/token): val cross-entropy of the decoder with a prior Z (uniform, one independent draw per
  sequence) minus with the encoder's posterior Z (a sample from Q(Z | the whole sequence)). The posterior sees
  the future, so a decoder that reads Z predicts better with it; a decoder that ignores Z gives gap = 0
  exactly up to noise. Reported overall and per position (the largest-gap positions, or chosen ones).
- **MI / bias split of the KL** (bits/token): mean_x KL(Q(Z_t|x) || U) = I(X; Z_t) + KL(Qbar_t || U), where
  Qbar_t = mean_x Q(Z_t|x) is the aggregate posterior at position t. The first term is the input-dependent
  part (what Z can tell about this particular sequence), the second an input-independent bias that costs
  KL but carries nothing. Plug-in estimate over the N evaluated sequences, exact over all 2^H codes when
  H <= 12 (upward-biased, at most log2 N bits); for larger H the per-bit sum, an upper bound.
- **Reconstruction** (token match): the first `prompt` tokens of a val sequence, then greedy generation
  with the codes the encoder gave that sequence; the fraction of generated tokens equal to the source.
  The same with prior codes is its baseline. A used Z brings the source's structure back.

`diagnose(model, batches)` returns a dict; `report_lines(d)` formats it; `is_dead(d)` is the verdict.
"""

from __future__ import annotations

import math

import torch

from latentlm.models.decoder import padding_layout, token_logprobs
from latentlm.models.free_transformer.latent import bit_table, sample_codes
from latentlm.nn import SamplingConfig
from latentlm.nn.loss import IGNORE_INDEX

DEAD_GAP_NATS = 0.01
"""Below this posterior-vs-prior CE gap (nats/token) the decoder is flagged as ignoring Z."""


def _ids_mask(batch):
    if isinstance(batch, dict):
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        keep = batch["labels"][:, :-1] != IGNORE_INDEX if "labels" in batch else None
    else:
        ids, mask, keep = batch, None, None
    if keep is None:
        keep = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool) if mask is None else mask[:, 1:].bool()
    return ids, mask, keep  # keep (B, T-1): token t+1 is scored


@torch.no_grad()
def bit_logits(model, input_ids, attention_mask=None) -> torch.Tensor:
    """The encoder's bit logits (B, T, H) for these sequences (the posterior Q(Z | x))."""
    positions, attn_mask = padding_layout(input_ids, attention_mask)
    ctx = model.context(positions, attn_mask=attn_mask)
    h = model.run_blocks(model.embed(input_ids), ctx, 0, model.config.inject_at)
    return model.encoder(h, model.encoder_context(positions, attention_mask)).float()


def mi_split(logits: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    """logits (N, T, H) over N sequences -> mean over positions of KL, I(X; Z_t) and KL(Qbar_t || U), bits.

    Exact over the 2^H codes for H <= 12; for larger H the per-bit decomposition (its MI is an upper bound)."""
    N, T, H = logits.shape
    valid = torch.ones(N, T, dtype=torch.bool) if valid is None else valid.bool()
    exact = H <= 12
    U = bit_table(0, 2**H, H, logits.device) if exact else None
    kl = mi = bias = 0.0
    used = 0
    for t in range(T):
        L = logits[valid[:, t], t].double()
        if L.shape[0] == 0:
            continue
        if exact:
            logq = L @ U.double().T - torch.nn.functional.softplus(L).sum(-1, keepdim=True)  # (n, 2^H)
            q = logq.exp()
            logqbar = torch.logsumexp(logq, 0) - math.log(L.shape[0])
            kl_t = (q * (logq + H * math.log(2))).sum(-1).mean()
            mi_t = (q * (logq - logqbar)).sum(-1).mean()
            bias_t = (logqbar.exp() * (logqbar + H * math.log(2))).sum()
        else:
            p = torch.sigmoid(L)
            pbar = p.mean(0)

            def kl_bern(a, b):
                a, b = a.clamp(1e-12, 1 - 1e-12), b.clamp(1e-12, 1 - 1e-12)
                return a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()

            kl_t = kl_bern(p, torch.full_like(p, 0.5)).sum(-1).mean()
            mi_t = kl_bern(p, pbar.expand_as(p)).sum(-1).mean()
            bias_t = kl_bern(pbar, torch.full_like(pbar, 0.5)).sum()
        kl, mi, bias, used = kl + float(kl_t), mi + float(mi_t), bias + float(bias_t), used + 1
    ln2 = math.log(2) * max(used, 1)
    return {"kl_bits": kl / ln2, "mi_bits": mi / ln2, "bias_bits": bias / ln2, "mi_exact": exact, "mi_sequences": N}


@torch.no_grad()
def diagnose(
    model,
    batches,
    *,
    seed: int = 0,
    positions: list[int] | None = None,
    top: int = 3,
    prompt: int = 2,
    recon_rows: int = 64,
) -> dict:
    """Dead-latent diagnostics over eval batches (tensors (B, T) or dicts with input_ids / attention_mask /
    labels). `positions`: token indices whose CE gap to report (default: the `top` largest gaps)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    post_sum = prior_sum = 0.0
    n_tok = 0
    pos_post, pos_prior, pos_n = {}, {}, {}
    all_logits, all_valid, recon_src = [], [], []
    try:
        for batch in batches:
            ids, mask, keep = _ids_mask(batch)
            L = bit_logits(model, ids, mask)
            post = sample_codes(L, g)
            prior = model.prior_codes(ids.shape, g)  # an independent uniform draw for every row and position
            lp_post = -token_logprobs(model(ids, attention_mask=mask, z_codes=post).logits, ids, mask)[:, 1:]
            lp_prior = -token_logprobs(model(ids, attention_mask=mask, z_codes=prior).logits, ids, mask)[:, 1:]
            post_sum += float(lp_post[keep].double().sum())
            prior_sum += float(lp_prior[keep].double().sum())
            n_tok += int(keep.sum())
            for t in range(keep.shape[1]):
                k = keep[:, t]
                if k.any():
                    pos_post[t + 1] = pos_post.get(t + 1, 0.0) + float(lp_post[k, t].sum())
                    pos_prior[t + 1] = pos_prior.get(t + 1, 0.0) + float(lp_prior[k, t].sum())
                    pos_n[t + 1] = pos_n.get(t + 1, 0) + int(k.sum())
            all_logits.append(L)
            all_valid.append(torch.ones(ids.shape, dtype=torch.bool) if mask is None else mask.bool())
            if mask is None and sum(r.shape[0] for r, _ in recon_src) < recon_rows:
                recon_src.append((ids, post))
        T = max(x.shape[1] for x in all_logits)
        pad = [torch.nn.functional.pad(x, (0, 0, 0, T - x.shape[1])) for x in all_logits]
        vpad = [torch.nn.functional.pad(v, (0, T - v.shape[1])) for v in all_valid]
        split = mi_split(torch.cat(pad), torch.cat(vpad))
        recon = _reconstruction(model, recon_src, prompt, recon_rows, g)
    finally:
        model.train(was_training)
    gaps = {t: (pos_prior[t] - pos_post[t]) / pos_n[t] for t in pos_n}
    chosen = positions if positions is not None else sorted(gaps, key=gaps.get, reverse=True)[:top]
    out = {
        "ce_posterior": post_sum / max(n_tok, 1),
        "ce_prior": prior_sum / max(n_tok, 1),
        "ce_gap_nats": (prior_sum - post_sum) / max(n_tok, 1),
        "tokens": n_tok,
        "positions": {
            int(t): {"ce_posterior": pos_post[t] / pos_n[t], "ce_prior": pos_prior[t] / pos_n[t], "gap": gaps[t]}
            for t in chosen
            if t in gaps
        },
        **split,
        **recon,
        "note": "CE in nats/token of the supervised tokens; prior Z = one uniform draw per sequence; "
        "posterior Z = one encoder sample; MI = plug-in I(X; Z_t) over the evaluated sequences",
    }
    out["dead"] = is_dead(out)
    return out


def _reconstruction(model, sources, prompt: int, rows: int, g: torch.Generator) -> dict:
    if not sources:
        return {"reconstruction": None, "reconstruction_prior": None, "reconstruction_rows": 0}
    ids = torch.cat([s for s, _ in sources])[:rows]
    post = torch.cat([c for _, c in sources])[:rows]
    prior = model.prior_codes(ids.shape, g)
    new = ids.shape[1] - prompt
    greedy = SamplingConfig(temperature=0.0)
    match = {}
    for name, codes in (("reconstruction", post), ("reconstruction_prior", prior)):
        out = model.generate(ids[:, :prompt], new, greedy, z_codes=codes)
        match[name] = float((out[:, prompt:] == ids[:, prompt:]).float().mean())
    return {**match, "reconstruction_rows": int(ids.shape[0])}


def is_dead(d: dict) -> bool:
    """True when the decoder does not read Z: posterior and prior Z predict the val tokens equally well."""
    return d["ce_gap_nats"] < DEAD_GAP_NATS


def report_lines(d: dict) -> list[str]:
    verdict = (
        f"DEAD LATENT: the decoder ignores Z (CE gap < {DEAD_GAP_NATS} nats/token)"
        if d["dead"]
        else "Z is used (posterior Z predicts better than prior Z)"
    )
    pos = "  ".join(f"t={t}: {v['ce_posterior']:.3f} vs {v['ce_prior']:.3f}" for t, v in sorted(d["positions"].items()))
    lines = [
        f"latent: val CE posterior Z {d['ce_posterior']:.4f} vs prior Z {d['ce_prior']:.4f} nats/token "
        f"(gap {d['ce_gap_nats']:.4f}; {d['tokens']} tokens)",
        f"latent: CE at positions (posterior vs prior): {pos}",
        f"latent: KL {d['kl_bits']:.3f} bits/token = input-dependent (MI) {d['mi_bits']:.3f} + bias "
        f"{d['bias_bits']:.3f} ({'exact' if d['mi_exact'] else 'per-bit upper bound'}, "
        f"{d['mi_sequences']} sequences)",
    ]
    if d.get("reconstruction") is not None:
        lines.append(
            f"latent: reconstruction (greedy from the source's posterior Z, token match) {d['reconstruction']:.3f} "
            f"vs prior Z {d['reconstruction_prior']:.3f} ({d['reconstruction_rows']} sequences)"
        )
    lines.append(f"latent: {verdict}")
    return lines


def diagnose_run(model, tokenizer, cfg, split: str = "val", max_batches: int | None = None, **kw) -> dict:
    """`diagnose` on a run's held-out data (the batches `latentlm eval` scores; at most 8 unless max_batches)."""
    from latentlm.data import build_source, load_split, shard_dir
    from latentlm.data.shards import eval_windows

    n = max_batches if max_batches is not None else 8
    batch_size = max(1, cfg.train.batch_size // cfg.train.grad_accum)
    if cfg.data.reasoning is not None:
        batches = build_source(cfg, tokenizer, split).eval_batches(batch_size, n)
    else:
        batches = eval_windows(load_split(shard_dir(cfg), split), cfg.data.seq_len, batch_size, n)
    d = diagnose(model, batches, **kw)
    d["report"] = report_lines(d)
    return d
