"""Our GPT vs transformers' LlamaForCausalLM with the same dimensions and weights, fp32 on CPU, one process.

Every ratio comes from interleaved, paired repetitions (ours, HF, HF, ours, ...; benchmarks/_measure.py) and is
reported as the median of the per-pair ratios with its interquartile range (`*_iqr`):
- train_ratio: training-step time (forward + backward + the trainer's fused AdamW step, same for both), HF / ours;
- fused_loss_gain: the same step with the logits materialised (Decoder.fused_loss = False) / with the fused head +
  cross-entropy of nn/loss.py (the default in training);
- gen_ratio_b1, gen_ratio_b8: KV-cached greedy generation tokens/s at batch 1 and 8, ours / HF `generate`.
Limits are measured in the same run, as the best rate over several sizes and over rounds before, between and
after the timed work (load only ever slows a kernel down):
- mfu: our training FLOP/s (model.flops_per_token) / the sgemm limit (torch.mm at square and the model's shapes);
- decode_b1_of_limit: the DRAM-bound time of one batch-1 decode step, (bytes of weights + KV cache read per
  token) / the bandwidth limit (copies and sums of 64-256 MiB), over our measured time per decoded token (the
  prompt's prefill excluded: timed between the callbacks of the first and the last new token).
Both utilisations are asserted <= 1. Both models hold identical weights (ours copied into HF's layout); the
logits are checked to agree and the greedy outputs to be identical first.

    python benchmarks/gpt_vs_hf.py [--quick] [--profile]

--profile adds a torch.profiler breakdown of one training step (ours fused, ours unfused, HF) and one batch-1
generation: self CPU time in GEMMs, attention kernels, the vocabulary softmax / log-sum-exp, and everything else,
then our top ops by self CPU time in each.
--compile adds compile_decode_gain: batch-1 generation with the decode step through torch.compile
(Decoder.compile_decode) vs eager, paired, beside the first compiled call's wall time (compile_warmup_s).
The JSON records the load averages before and after (load_before, load_after) and the torch thread count.
Last line: {"bench": "gpt_vs_hf", "train_ratio": ..., "train_ratio_iqr": ..., "mfu": ..., "decode_b1_of_limit": ...}
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from _measure import (  # noqa: E402  (benchmarks/ is on sys.path when a benchmark runs as a script)
    bandwidth_limit,
    check_utilisation,
    load_avg,
    load_note,
    median_iqr,
    paired,
    sgemm_limit,
    speed_ratio,
)
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from latentlm.config import TrainConfig  # noqa: E402
from latentlm.models.gpt import GPT, GPTConfig  # noqa: E402
from latentlm.train.optim import build_optimizer  # noqa: E402

hf_logging.set_verbosity_error()

SIZES = {
    # d_model, n_layers, n_heads, vocab, seq_len, batch, prompt, new tokens, train reps, gen reps
    "default": dict(d=384, L=6, H=6, V=8192, T=256, B=16, prompt=32, new=128, reps=7, gen_reps=5),
    "quick": dict(d=128, L=4, H=4, V=2048, T=128, B=8, prompt=16, new=48, reps=5, gen_reps=3),
    "gpu": dict(d=1024, L=12, H=16, V=32768, T=1024, B=16, prompt=64, new=256, reps=7, gen_reps=3),
}


def build_pair(s):
    ours = GPT(
        GPTConfig(
            vocab_size=s["V"],
            d_model=s["d"],
            n_layers=s["L"],
            n_heads=s["H"],
            max_seq_len=s["T"] + s["new"] + s["prompt"],
        )
    )
    c = ours.config
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.d_model,
            intermediate_size=c.ffn_dim,
            num_hidden_layers=c.n_layers,
            num_attention_heads=c.n_heads,
            num_key_value_heads=c.kv_heads,
            max_position_embeddings=c.max_seq_len,
            rms_norm_eps=c.norm_eps,
            rope_theta=c.rope_base,
            tie_word_embeddings=True,
            attention_bias=False,
            mlp_bias=False,
            attn_implementation="sdpa",
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=0,
        )
    )
    copy_weights(ours, hf)
    return ours, hf


@torch.no_grad()
def copy_weights(ours: GPT, hf: LlamaForCausalLM) -> None:
    c = ours.config
    q, kv = c.n_heads * c.head_dim, c.kv_heads * c.head_dim
    hf.model.embed_tokens.weight.copy_(ours.tok_emb.weight)
    hf.model.norm.weight.copy_(ours.norm.weight)
    for blk, layer in zip(ours.blocks, hf.model.layers):
        wq, wk, wv = blk.attn.wqkv.weight.split((q, kv, kv))
        layer.self_attn.q_proj.weight.copy_(to_rotate_half(wq, c.head_dim))
        layer.self_attn.k_proj.weight.copy_(to_rotate_half(wk, c.head_dim))
        layer.self_attn.v_proj.weight.copy_(wv)
        layer.self_attn.o_proj.weight.copy_(blk.attn.wo.weight)
        gate, up = blk.mlp.w13.weight.split(c.ffn_dim)
        layer.mlp.gate_proj.weight.copy_(gate)
        layer.mlp.up_proj.weight.copy_(up)
        layer.mlp.down_proj.weight.copy_(blk.mlp.w2.weight)
        layer.input_layernorm.weight.copy_(blk.attn_norm.weight)
        layer.post_attention_layernorm.weight.copy_(blk.mlp_norm.weight)


def to_rotate_half(w: torch.Tensor, hd: int) -> torch.Tensor:
    """Reorder q/k projection rows from our interleaved RoPE pairs (2i, 2i+1) to HF's halves (i, i + hd/2)."""
    return w.view(-1, hd // 2, 2, w.shape[-1]).transpose(1, 2).reshape(w.shape)


def train_step_fn(model, x, y, hf: bool, fused: bool = True):
    # the trainer's AdamW for every model alike; HF's Llama is no latentlm variant, so it has no spec exemptions
    opt = build_optimizer(model, TrainConfig(lr=1e-4), no_decay_params=() if hf else None)

    def step():
        if not hf:
            model.fused_loss = fused
        if hf:  # HF shifts labels internally: give it the unshifted sequence, same number of predictions
            loss = model(input_ids=x, labels=x).loss
        else:
            loss = model(x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def gen_fn(model, prompt, new, hf: bool):
    if hf:
        mask = torch.ones_like(prompt)  # explicit: HF would otherwise treat prompt ids equal to pad_token_id as padding
        return lambda: model.generate(
            prompt,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            use_cache=True,
        )
    return lambda: model.generate(prompt, new)


def decode_time_per_token(model, prompt, new) -> float:
    """Seconds per decoded token after the first (the prefill and first step excluded), from callback times."""
    stamps = []
    sync = torch.cuda.synchronize if prompt.is_cuda else (lambda: None)
    model.generate(prompt, new, callback=lambda tok: (sync(), stamps.append(time.perf_counter())))
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def decode_bytes_per_token(model: GPT, prompt_len: int, new: int) -> float:
    """Bytes one batch-1 decode step must read: every weight once (a tied head counts once) and the KV cache
    so far, averaged over the timed steps (cache lengths prompt + 1 ... prompt + new - 1)."""
    c = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    mean_len = prompt_len + new / 2
    kv = 2 * c.n_layers * c.kv_heads * c.head_dim * mean_len * model.tok_emb.weight.element_size()
    return weights + kv


CATEGORIES = {
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv"),
    "attention": ("aten::_scaled_dot_product",),
    "vocab_softmax": ("aten::_log_softmax", "aten::nll_loss", "aten::_softmax", "aten::logsumexp", "aten::exp"),
}


def profile_breakdown(fn) -> dict:
    """Self CPU seconds of one call of fn, by category."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    out = dict.fromkeys([*CATEGORIES, "other"], 0.0)
    for e in prof.key_averages():
        cat = next((c for c, prefixes in CATEGORIES.items() if e.key.startswith(prefixes)), "other")
        out[cat] += e.self_cpu_time_total / 1e6
    return out


def top_ops(fn, n: int = 12) -> str:
    """The n ops with the most self CPU time in one call of fn (after a warm-up call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:n]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return "\n".join(
        f"    {e.key[:48]:48s} {e.self_cpu_time_total / 1e3:9.1f} ms {100 * e.self_cpu_time_total / total:5.1f} %"
        f"  calls {e.count}"
        for e in rows
    )


def print_profile(name: str, parts: dict[str, dict]) -> None:
    """One line per implementation: self CPU seconds by category, and the bound HF's total / our inherent time."""
    print(f"profile {name} (self CPU s):")
    for impl, p in parts.items():
        print(f"  {impl:13s} " + "  ".join(f"{k} {v:.3f}" for k, v in p.items()) + f"  total {sum(p.values()):.3f}")
    ours = parts["ours"]
    inherent = ours["gemm"] + ours["attention"] + ours["vocab_softmax"]
    print(
        f"  bound on HF/ours from our inherent (gemm+attention+softmax) time: {sum(parts['hf'].values()) / inherent:.2f}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true", help="explain the ratios with an op-category profile")
    ap.add_argument("--compile", action="store_true", help="also measure the torch.compile'd decode step")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (cuda runs the 'gpu' size unless --quick)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    s = SIZES["quick" if args.quick else "gpu" if dev.type == "cuda" else "default"]
    torch.manual_seed(0)
    ours, hf = build_pair(s)
    ours.to(dev), hf.to(dev)
    c = ours.config
    print(f"threads={torch.get_num_threads()} size={s} params={ours.num_params() / 1e6:.2f}M")
    print(f"before: {load_note()}")
    load_before = load_avg()
    n = s["B"] * s["T"]
    gemm_shapes = ((n, c.d_model, 3 * c.d_model), (n, c.d_model, 2 * c.ffn_dim), (n, c.d_model, c.vocab_size))
    squares = ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048)) + (((8192,) * 3,) if dev.type == "cuda" else ())
    sgemm = sgemm_limit((*squares, *gemm_shapes), reps=2, device=dev)
    bandwidth = bandwidth_limit((64, 128, 256) + ((1024, 4096) if dev.type == "cuda" else ()), reps=3, device=dev)
    sgemm.sample(), bandwidth.sample()

    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1), device=dev)
    with torch.no_grad():
        diff = (ours(x[:, :-1]).logits - hf(input_ids=x[:, :-1]).logits).abs().max().item()
    print(f"logits max |ours - hf| = {diff:.2e}")
    assert diff < 1e-3, "the two models are not the same function; the comparison would be meaningless"

    # training: ours predicts T targets from T inputs; HF predicts T from T+1 inputs (it drops the last logit)
    ours.train(), hf.train()
    tt = paired(
        {
            "ours": train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False),
            "ours_unfused": train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False, fused=False),
            "hf": train_step_fn(hf, x, None, hf=True),
        },
        s["reps"],
    )
    ours.fused_loss = True
    sgemm.sample(), bandwidth.sample()
    train_tps = {k: n / median_iqr(v)[0] for k, v in tt.items()}
    print("train tokens/s (median): " + "  ".join(f"{k} {v:.0f}" for k, v in train_tps.items()))

    ours.eval(), hf.eval()
    copy_weights(ours, hf)  # training updated each side with its own optimizers: make them one function again
    gen, gen_iqr, identical = {}, {}, {}
    for b in (1, 8):
        prompt = torch.randint(0, s["V"], (b, s["prompt"]), device=dev)
        with torch.no_grad():
            a = ours.generate(prompt, 8)
            h = hf.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0
            )
        same = torch.equal(a, h)
        if not same:  # allowed only where the two candidates tie to float rounding (random weights: flat logits)
            r, j = (a != h).nonzero()[0].tolist()
            with torch.no_grad():
                logits = ours(h[r : r + 1, :j]).logits[0, -1]
            margin = (logits[a[r, j]] - logits[h[r, j]]).abs().item()
            print(f"greedy outputs differ at batch {b}, row {r}, column {j}: a near-tie, logit margin {margin:.1e}")
            assert margin < 1e-4, f"greedy outputs differ from HF's at batch {b} beyond a float tie ({margin:.1e})"
        gt = paired(
            {"ours": gen_fn(ours, prompt, s["new"], False), "hf": gen_fn(hf, prompt, s["new"], True)}, s["gen_reps"]
        )
        gen[b], gen_iqr[b] = speed_ratio(gt, "ours", "hf")
        tps = {k: b * s["new"] / median_iqr(v)[0] for k, v in gt.items()}
        print(
            f"generate b={b}: ours {tps['ours']:.0f} tok/s  hf {tps['hf']:.0f} tok/s  (greedy outputs identical: {same})"
        )
        identical[b] = same

    prompt = torch.randint(0, s["V"], (1, s["prompt"]), device=dev)
    per_token = []
    for _ in range(s["gen_reps"]):
        per_token.append(decode_time_per_token(ours, prompt, s["new"]))
        bandwidth.sample()
    sgemm.sample()
    bytes_tok = decode_bytes_per_token(ours, s["prompt"], s["new"])
    limit_s = bytes_tok / bandwidth.value
    decode_util = [limit_s / t for t in per_token]

    if args.profile and dev.type == "cpu":
        ours.train(), hf.train()
        steps = {
            "ours": profile_breakdown(train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False)),
            "ours_unfused": profile_breakdown(train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False, fused=False)),
            "hf": profile_breakdown(train_step_fn(hf, x, None, hf=True)),
        }
        ours.fused_loss = True
        print_profile("train step", steps)
        print("  ours, top ops by self CPU time:\n" + top_ops(train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False)))
        ours.eval(), hf.eval()
        with torch.no_grad():
            print_profile(
                "generate b=1",
                {
                    "ours": profile_breakdown(gen_fn(ours, prompt, s["new"], False)),
                    "hf": profile_breakdown(gen_fn(hf, prompt, s["new"], True)),
                },
            )

        print("  ours generate b=1, top ops by self CPU time:\n" + top_ops(gen_fn(ours, prompt, s["new"], False)))

    compiled = {}
    if args.compile:
        ref = ours.generate(prompt, s["new"])  # eager
        ours.compile_decode = True
        t0 = time.perf_counter()
        same = torch.equal(ours.generate(prompt, s["new"]), ref)
        warm = time.perf_counter() - t0
        gen_b1 = gen_fn(ours, prompt, s["new"], False)

        def flag(on):
            def run():
                ours.compile_decode = on
                return gen_b1()

            return run

        ct = paired({"eager": flag(False), "compiled": flag(True)}, s["gen_reps"], warmup=0)
        ours.compile_decode = False
        gain, gain_iqr = speed_ratio(ct, "compiled", "eager")
        compiled = {"compile_decode_gain": round(gain, 3), "compile_decode_gain_iqr": round(gain_iqr, 3)}
        compiled["compile_warmup_s"] = round(warm, 1)
        print(f"compiled decode b=1: {gain:.3f} x eager (IQR {gain_iqr:.3f}); first call {warm:.0f} s; same ids {same}")

    flops = ours.flops_per_token(s["T"]) * n
    mfus = [flops / t / sgemm.value for t in tt["ours"]]
    mfu, mfu_iqr = median_iqr(mfus)
    check_utilisation("mfu (best rep)", max(mfus), sgemm)
    check_utilisation("decode_b1_of_limit (best rep)", max(decode_util), bandwidth)
    dec, dec_iqr = median_iqr(decode_util)
    print(
        f"sgemm limit {sgemm.value / 1e9:.1f} GFLOP/s ({sgemm.argmax}); training achieves "
        f"{flops / median_iqr(tt['ours'])[0] / 1e9:.1f} GFLOP/s"
    )
    print(
        f"bandwidth limit {bandwidth.value / 1e9:.1f} GB/s ({bandwidth.argmax}); decode reads {bytes_tok / 1e6:.1f} MB "
        f"per token -> limit {limit_s * 1e3:.2f} ms/token, ours {median_iqr(per_token)[0] * 1e3:.2f} ms/token"
    )
    print(f"after: {load_note()}")
    train_ratio, train_iqr = speed_ratio(tt, "ours", "hf")
    fused_gain, fused_iqr = speed_ratio(tt, "ours", "ours_unfused")
    r = lambda v: round(v, 3)  # noqa: E731
    result = {
        "bench": "gpt_vs_hf",
        "train_ratio": r(train_ratio),
        "train_ratio_iqr": r(train_iqr),
        "fused_loss_gain": r(fused_gain),
        "fused_loss_gain_iqr": r(fused_iqr),
        "gen_ratio_b1": r(gen[1]),
        "gen_ratio_b1_iqr": r(gen_iqr[1]),
        "gen_ratio_b8": r(gen[8]),
        "gen_ratio_b8_iqr": r(gen_iqr[8]),
        "greedy_identical_b1": identical[1],
        "greedy_identical_b8": identical[8],
        "mfu": r(mfu),
        "mfu_iqr": r(mfu_iqr),
        "decode_b1_of_limit": r(dec),
        "decode_b1_of_limit_iqr": r(dec_iqr),
        "sgemm_gflops": round(sgemm.value / 1e9, 1),
        "bandwidth_gbs": round(bandwidth.value / 1e9, 1),
        **compiled,
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load_avg(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
