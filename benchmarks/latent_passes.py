"""Latent passes: our batched per-row frontier vs a Coconut-style loop, and batched vs one-by-one generation.

Training step (forward + backward of the loss) on one tiny random Llama and one batch whose rows carry latents at
ragged positions. Default: LT-Tuning stage-3 density (up to 8 insertion points of 1-2 <thinking> each: 8-16 per row,
scattered); --quick: a milder batch (1-5 per row).
- ours: passes = max latents in a row + 1, one K/V buffer per layer growing in place (passes.py);
- Coconut-style (the official code's scheme): one pass per distinct latent position in the batch (the union), the HF
  cache sliced and rebuilt (copied) before every pass.
Both give the same loss (checked). Times: interleaved paired rounds (benchmarks/_measure.py); each speedup is the
median of per-round ratios with its interquartile range as `*_iqr`. Generation: 8 prompts in one batched, cached call with a latent policy vs 8
batch-1 calls.

    python benchmarks/latent_passes.py [--quick]
Last line: {"bench": "latent_passes", "train_speedup": ..., "gen_speedup_b8": ..., "passes_ours": ..., "passes_loop": ...}
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_llama: the random tiny Llama

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _measure import load_note, median_iqr, paired, speed_ratio  # noqa: E402
from transformers import DynamicCache  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from latentlm.data.tokenizer import char_tokenizer  # noqa: E402
from latentlm.models.latent_thoughts import Config, Model  # noqa: E402
from tests.tiny_llama import save_tiny_llama  # noqa: E402

hf_logging.set_verbosity_error()
SIZES = {
    "default": dict(hidden=256, layers=4, heads=4, kv=2, B=8, T=200, latents=(8, 16), new=48, reps=3),
    "quick": dict(hidden=128, layers=2, heads=4, kv=2, B=8, T=96, latents=(1, 5), new=24, reps=2),
}


def build(s):
    d = save_tiny_llama(
        tempfile.mkdtemp(),
        char_tokenizer(),
        s["hidden"],
        s["layers"],
        s["heads"],
        s["kv"],
        max_position_embeddings=1024,
    )
    return Model(Config(base_model=str(d), method="lt_tuning", max_seq_len=1024, latent_embedding="fusion"))


def batch(model, s):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 90, (s["B"], s["T"]), generator=g)
    th = model.ids["<thinking>"]
    lo, hi = s["latents"]
    for b in range(s["B"]):
        k = lo + b % (hi - lo + 1)  # ragged: lo..hi latents per row, at different positions
        pos = torch.randperm(s["T"] - 8, generator=g)[:k] + 4
        ids[b, pos] = th
    labels = torch.roll(ids, -1, 1)
    labels[:, -1] = -100
    return ids, labels


def coconut_loop_logits(model, ids):
    """One pass per distinct latent column of the batch; the cache is sliced and rebuilt (copied) every pass."""
    base, builder = model.base, model.builder(2)
    E = base.get_input_embeddings()
    latent = model.latent_mask(ids, None)
    cols = sorted({int(c) for c in torch.nonzero(latent)[:, 1]})
    embeds = E(ids)
    rows = [embeds[b] for b in range(ids.shape[0])]
    logits_parts, past, start = [], None, 0
    for stop in cols + [ids.shape[1]]:
        chunk = torch.stack([r[start:stop] for r in rows])
        if past is not None:  # the official code slices the cache tuples into a fresh cache every pass
            legacy = [(k[:, :, :start].clone(), v[:, :, :start].clone()) for k, v in past]
            past = DynamicCache()
            for i, (k, v) in enumerate(legacy):
                past.update(k, v, i)
        pos = torch.arange(start, stop)[None].expand(ids.shape[0], -1)
        out = base(
            inputs_embeds=chunk, past_key_values=past, position_ids=pos, use_cache=True, output_hidden_states=True
        )
        logits_parts.append(out.logits)
        past = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        if stop < ids.shape[1]:  # replace the latent at column `stop` in the rows that have one (list rebuild)
            h, lg = out.hidden_states[-1][:, -1], out.logits[:, -1]
            rows = [
                torch.cat([r[:stop], builder(h[b], lg[b])[None], r[stop + 1 :]]) if latent[b, stop] else r
                for b, r in enumerate(rows)
            ]
        start = stop
    return torch.cat(logits_parts, 1), len(cols) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the default size, on that device)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    s = SIZES["quick" if args.quick else "default"]
    model = build(s).to(dev)
    model.train()
    ids, labels = (t.to(dev) for t in batch(model, s))

    def ours():
        out = model(ids, labels=labels, stage=torch.tensor(2, device=dev))
        out.loss.backward()
        return out

    def loop():
        logits, _ = coconut_loop_logits(model, ids)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
        return loss

    with torch.no_grad():
        a = model(ids, labels=labels, stage=torch.tensor(2, device=dev))
        lg, n_loop = coconut_loop_logits(model, ids)
        b = F.cross_entropy(lg.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert abs(a.loss.item() - b.item()) < 1e-4, (a.loss.item(), b.item())
    tt = paired({"ours": ours, "loop": loop}, s["reps"])  # interleaved rounds: load hits both alike
    t_ours, t_loop = median_iqr(tt["ours"])[0], median_iqr(tt["loop"])[0]

    model.eval()
    prompts = ids[:, :24].clone()
    prompts[prompts == model.ids["<thinking>"]] = 5
    gen = {
        "b8": lambda: model.generate(prompts, s["new"], policy="threshold"),
        "b1": lambda: [model.generate(prompts[i : i + 1], s["new"], policy="threshold") for i in range(s["B"])],
    }
    gt = paired(gen, s["reps"])
    g = {k: median_iqr(v)[0] for k, v in gt.items()}
    train_speedup, train_iqr = speed_ratio(tt, "ours", "loop")
    gen_speedup, gen_iqr = speed_ratio(gt, "b8", "b1")
    print(f"size={s} threads={torch.get_num_threads()}; {load_note()}")
    print(
        f"train step: ours {t_ours * 1e3:.0f} ms ({int(a.metrics['n_latent_passes'])} passes) vs Coconut-style loop "
        f"{t_loop * 1e3:.0f} ms ({n_loop} passes); same loss ({a.loss.item():.5f} vs {b.item():.5f})"
    )
    print(
        f"generation of {s['B']} x {s['new']} steps: batched {g['b8'] * 1e3:.0f} ms vs batch-1 loop {g['b1'] * 1e3:.0f} ms"
    )
    print(
        json.dumps(
            {
                "bench": "latent_passes",
                "train_speedup": round(train_speedup, 3),
                "train_speedup_iqr": round(train_iqr, 3),
                "gen_speedup_b8": round(gen_speedup, 3),
                "gen_speedup_b8_iqr": round(gen_iqr, 3),
                "passes_ours": int(a.metrics["n_latent_passes"]),
                "passes_loop": n_loop,
            }
        )
    )


if __name__ == "__main__":
    main()
