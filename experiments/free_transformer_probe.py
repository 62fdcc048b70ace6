"""Why does shared-Z agreement plateau? Cheap measurements on one finished synthetic run (no training).

For a run of experiments/free_transformer_synthetic.py (a directory with a checkpoint):
- **per-Z spread**: `codes` prior Z sequences, `samples` generations each (T = 1, one letter per Z): the
  within-Z agreement (the fraction of sample pairs at the same block start), the modal position's share,
  the number of distinct starts, how often no block is found.
- **hazard without noise**: for the same Z, the exact start distribution on a noise-free prefix,
  P(start at t) = h_t prod_{s<t} (1 - h_s), h_t = P(letter at t | "_" * t, Z) (teacher-forced). Its
  self-agreement sum_t P(t)^2 is what shared-Z pairs would reach if the noise characters did not matter;
  "split" counts positions with 0.1 < h_t < 0.9 (a decision the sampling of that token makes).
- **the same with posterior Z** of val sequences (the codes the decoder was trained on): is the noise-free
  start distribution sharp, and at the source's position?
- **posterior windows**: the encoder's codes kept only in a window before the block start (prior codes
  elsewhere): P(start at the source's position) on the noise-free prefix. Is the position carried by the
  codes just before the block or spread over the whole prefix?
- **aggregate posterior**: the prior's distance from Qbar_t (code usage), and the spread when each Z_t is
  drawn from Qbar_t independently over t instead of uniformly (fixes the marginals, not the correlations).

    python experiments/free_transformer_probe.py RUN_DIR [--codes 64 --samples 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from latentlm.data.reasoning import BlockTask
from latentlm.models.decoder import token_logprobs
from latentlm.nn import SamplingConfig
from latentlm.train.checkpoint import load_run

TASK = BlockTask()


def starts(tok, ids, letter):
    return [BlockTask.block_position(tok.decode(r[2 : 2 + TASK.length].tolist()), letter, TASK.block) for r in ids]


@torch.no_grad()
def start_distribution(model, tok, letters, codes):
    """Noise-free prefix: P(block starts at body index t | "_"*t, Z) for each row -> (N, L - block + 1)."""
    n_pos = TASK.length - TASK.block + 1
    N = len(letters)
    hz = torch.zeros(N, n_pos)
    for t in range(n_pos):  # one teacher-forced pass per candidate start (prefix "_" * t, then the letter)
        ids = torch.tensor([tok.encode(f"{c}>" + "_" * t + c) for c in letters])
        lp = token_logprobs(model(ids, z_codes=codes[:, : ids.shape[1]]).logits, ids)
        hz[:, t] = lp[:, -1].exp()
    surv = torch.cumprod(torch.cat([torch.ones(N, 1), 1 - hz[:, :-1]], 1), 1)
    p = hz * surv
    return hz, p


def per_z(model, tok, codes, letters, samples, seed):
    """Generate `samples` bodies for each code sequence; -> list of start lists."""
    N = codes.shape[0]
    rows = torch.repeat_interleave(torch.arange(N), samples)
    prompt = torch.tensor([tok.encode(f"{letters[i]}>") for i in rows])
    out = []
    for s in range(0, len(rows), 1024):
        sl = slice(s, s + 1024)
        ids = model.generate(
            prompt[sl], TASK.length, SamplingConfig(temperature=1.0, seed=seed + s), z_codes=codes[rows[sl]]
        )
        out += [(int(i), ids[j]) for j, i in enumerate(rows[sl])]
    res = [[] for _ in range(N)]
    texts = [[] for _ in range(N)]
    for i, r in out:
        body = tok.decode(r[2 : 2 + TASK.length].tolist())
        res[i].append(BlockTask.block_position(body, letters[i], TASK.block))
        texts[i].append(body)
    return res, texts


def summarize(res, p_clean=None):
    agree, modal, distinct, missing = [], [], [], []
    for st in res:
        m = len(st)
        same = sum(st[a] is not None and st[a] == st[b] for a in range(m) for b in range(a + 1, m))
        agree.append(same / (m * (m - 1) / 2))
        found = [s for s in st if s is not None]
        missing.append(1 - len(found) / m)
        if found:
            vals, cnt = np.unique(found, return_counts=True)
            modal.append(cnt.max() / m)
            distinct.append(len(vals))
        else:
            modal.append(0.0)
            distinct.append(0)
    out = {
        "within_z_agreement": float(np.mean(agree)),
        "modal_share": float(np.mean(modal)),
        "distinct_starts": float(np.mean(distinct)),
        "no_block": float(np.mean(missing)),
        "agreement_quartiles": [float(q) for q in np.quantile(agree, [0.1, 0.25, 0.5, 0.75, 0.9])],
    }
    if p_clean is not None:
        out["clean_self_agreement"] = float((p_clean**2).sum(1).mean())
        out["clean_max_p"] = float(p_clean.max(1).values.mean())
        out["clean_mass"] = float(p_clean.sum(1).mean())  # < 1: no start before the end on a clean prefix
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--codes", type=int, default=64)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--show", type=int, default=3, help="print the samples of this many Z")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = load_run(Path(args.run))
    model.eval()
    n = 2 + TASK.length
    rng = np.random.default_rng(args.seed)
    letters = [TASK.letters[i] for i in rng.integers(len(TASK.letters), size=args.codes)]
    g = torch.Generator().manual_seed(args.seed)
    prior = model.prior_codes((args.codes, n), g)
    report = {"run": args.run}

    hz, p = start_distribution(model, tok, letters, prior)
    res, texts = per_z(model, tok, prior, letters, args.samples, 10_000 + args.seed)
    report["prior"] = summarize(res, p)
    report["prior"]["split_positions"] = float(((hz > 0.1) & (hz < 0.9)).float().sum(1).mean())
    # correlation between the clean distribution's self-agreement and the sampled within-Z agreement
    clean = (p**2).sum(1).numpy()
    emp = np.array([summarize([r])["within_z_agreement"] for r in res])
    report["prior"]["corr_clean_vs_sampled"] = float(np.corrcoef(clean, emp)[0, 1])
    # does the sampled modal start equal the clean distribution's mode?
    modes = []
    for i, st in enumerate(res):
        f = [s for s in st if s is not None]
        if f:
            modes.append(int(np.bincount(f).argmax()) == int(p[i].argmax()))
    report["prior"]["sampled_mode_is_clean_mode"] = float(np.mean(modes))

    # posterior Z of val-like sequences
    src = [TASK.sample(np.random.default_rng([args.seed + 7, 1, i])) for i in range(args.codes)]
    ids = torch.tensor([tok.encode(t) for t, _, _ in src])[:, :-1]
    post = model.posterior_codes(ids, generator=torch.Generator().manual_seed(args.seed + 3))
    hz_q, p_q = start_distribution(model, tok, [c for _, c, _ in src], post)
    res_q, _ = per_z(model, tok, post, [c for _, c, _ in src], args.samples, 20_000 + args.seed)
    report["posterior"] = summarize(res_q, p_q)
    report["posterior"]["split_positions"] = float(((hz_q > 0.1) & (hz_q < 0.9)).float().sum(1).mean())
    report["posterior"]["clean_mode_is_source"] = float(
        np.mean([int(p_q[i].argmax()) == pos for i, (_, _, pos) in enumerate(src)])
    )
    report["posterior"]["sampled_at_source"] = float(
        np.mean([np.mean([s == pos for s in st]) for st, (_, _, pos) in zip(res_q, src)])
    )

    # where does the posterior keep the position? Keep the encoder's codes only in a window of token positions
    # relative to the block start s = pos + 2 (the first block letter is predicted at position s - 1), prior
    # codes elsewhere; P(start at the source's position) on the noise-free prefix
    win = {}
    starts_q = torch.tensor([pos for _, _, pos in src]) + 2
    tpos = torch.arange(n)[None, :]
    for name, lo, hi in [
        ("none", 0, 0),
        ("s-1 only", -1, 0),
        ("s-2..s-1", -2, 0),
        ("s-4..s-1", -4, 0),
        ("s-8..s-1", -8, 0),
        ("all before s", -n, 0),
        ("before s-8", -n, -8),
        ("all", -n, n),
    ]:
        keep = (tpos >= starts_q[:, None] + lo) & (tpos < starts_q[:, None] + hi)
        mixed = torch.where(keep, post, model.prior_codes(post.shape, g))
        _, p_w = start_distribution(model, tok, [c for _, c, _ in src], mixed)
        win[name] = float(p_w[torch.arange(len(src)), starts_q - 2].mean())
    report["posterior_window_p_source"] = win

    # the aggregate posterior Qbar_t (exact over the 2^H codes, 256 val sequences): how far is the prior from it,
    # and does drawing each Z_t from Qbar_t (independently over t) instead of uniform fix the decoder's decision?
    from latentlm.models.free_transformer.diagnostics import bit_logits
    from latentlm.models.free_transformer.latent import bit_table

    H = model.config.latent_bits
    val = [TASK.sample(np.random.default_rng([args.seed + 11, 1, i])) for i in range(256)]
    vids = torch.tensor([tok.encode(t) for t, _, _ in val])[:, :-1]
    L = bit_logits(model, vids).double()  # (N, T, H)
    U = bit_table(0, 2**H, H, L.device).double()
    logq = L @ U.T - torch.nn.functional.softplus(L).sum(-1, keepdim=True)  # (N, T, 2^H)
    qbar = logq.exp().mean(0)  # (T, 2^H)
    pooled = qbar.mean(0)
    rare = pooled < 0.1 / 2**H
    norms = model.post_sampler.detach().norm(dim=-1)
    report["codes"] = {
        "prior_mass_on_rare_codes": float(rare.double().mean()),  # codes the posterior uses < 1/10 of uniform
        "per_position_prior_mass_below_tenth": float((qbar < 0.1 / 2**H).double().mean()),
        "row_norm_rare": float(norms[rare].mean()) if rare.any() else None,
        "row_norm_common": float(norms[~rare].mean()),
        "qbar_entropy_bits": float(-(qbar * qbar.clamp_min(1e-30).log2()).sum(-1).mean()),
    }
    agg = torch.stack(
        [torch.multinomial(qbar[t].float(), args.codes, replacement=True, generator=g) for t in range(n)], 1
    )
    hz_a, p_a = start_distribution(model, tok, letters, agg)
    res_a, _ = per_z(model, tok, agg, letters, args.samples, 30_000 + args.seed)
    report["aggregate_posterior_z"] = summarize(res_a, p_a)
    report["aggregate_posterior_z"]["split_positions"] = float(((hz_a > 0.1) & (hz_a < 0.9)).float().sum(1).mean())
    print(json.dumps(report, indent=1))
    for i in range(min(args.show, args.codes)):
        print(f"\nZ #{i} letter {letters[i]}: clean P(start) top: ", end="")
        top = torch.topk(p[i], 4)
        print(", ".join(f"t={int(t)}:{float(v):.2f}" for v, t in zip(top.values, top.indices)))
        for body, s in sorted(zip(texts[i], res[i]), key=lambda x: (x[1] is None, x[1] or 0)):
            print(f"  {s!s:>4} {body}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
