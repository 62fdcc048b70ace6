"""Our GPT vs transformers' LlamaForCausalLM with the same dimensions and weights, fp32 on CPU, one process.

Measures (medians, interleaving ours and HF's repetitions so background load hits both alike):
- train_ratio: training-step tokens/s (forward + backward + the trainer's fused AdamW step, same for both), ours / HF;
- gen_ratio_b1, gen_ratio_b8: KV-cached greedy generation tokens/s at batch 1 and 8, ours / HF `generate`;
- mfu: our training FLOP/s (model.flops_per_token) over the sgemm peak measured here (large fp32 torch.mm).
Both models hold identical weights (ours copied into HF's layout) and the logits are checked to agree first.

    python benchmarks/gpt_vs_hf.py [--quick] [--profile]

--profile adds a torch.profiler breakdown of one training step and one batch-1 generation for both models:
self CPU time in GEMMs, attention kernels, the vocabulary softmax, and everything else. Both implementations
must pay the first three; `bound` = HF's total / our inherent time is the best ratio any implementation of
ours could reach on this machine if all of our remaining overhead vanished.
Last line: {"bench": "gpt_vs_hf", "train_ratio": ..., "gen_ratio_b1": ..., "gen_ratio_b8": ..., "mfu": ...}
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
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


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns: dict, reps: int) -> dict:
    """Median seconds of each fn, measured round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def train_step_fn(model, x, y, hf: bool):
    opt = build_optimizer(model, TrainConfig(lr=1e-4))  # the trainer's AdamW, for every model alike

    def step():
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
        return lambda: model.generate(
            prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0, use_cache=True
        )
    return lambda: model.generate(prompt, new)


def sgemm_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = interleaved({"mm": lambda: torch.mm(a, b)}, reps)["mm"]
    return 2 * n**3 / t


CATEGORIES = {
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv"),
    "attention": ("aten::_scaled_dot_product",),
    "vocab_softmax": ("aten::_log_softmax", "aten::nll_loss", "aten::_softmax"),
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


def print_profile(name: str, ours: dict, hf: dict) -> None:
    print(f"profile {name} (self CPU s):  " + "  ".join(f"{k} {ours[k]:.3f}/{hf[k]:.3f}" for k in ours) + "  [ours/hf]")
    inherent = ours["gemm"] + ours["attention"] + ours["vocab_softmax"]
    print(
        f"  ours total {sum(ours.values()):.3f}, hf total {sum(hf.values()):.3f}; inherent (gemm+attention+softmax) "
        f"{inherent:.3f} -> bound on the ratio: {sum(hf.values()) / inherent:.2f}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true", help="explain the ratios with an op-category profile")
    args = ap.parse_args()
    s = SIZES["quick" if args.quick else "default"]
    torch.manual_seed(0)
    ours, hf = build_pair(s)
    print(f"threads={torch.get_num_threads()} size={s} params={ours.num_params() / 1e6:.2f}M")

    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1))
    with torch.no_grad():
        diff = (ours(x[:, :-1]).logits - hf(input_ids=x[:, :-1]).logits).abs().max().item()
    print(f"logits max |ours - hf| = {diff:.2e}")
    assert diff < 1e-3, "the two models are not the same function; the comparison would be meaningless"

    # training: ours predicts T targets from T inputs; HF predicts T from T+1 inputs (it drops the last logit)
    ours.train(), hf.train()
    tt = interleaved(
        {
            "ours": train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False),
            "hf": train_step_fn(hf, x, None, hf=True),
        },
        s["reps"],
    )
    tokens = s["B"] * s["T"]
    train_tps = {k: tokens / v for k, v in tt.items()}
    print(f"train tokens/s: ours {train_tps['ours']:.0f}  hf {train_tps['hf']:.0f}")

    ours.eval(), hf.eval()
    gen = {}
    for b in (1, 8):
        prompt = torch.randint(0, s["V"], (b, s["prompt"]))
        with torch.no_grad():
            same = torch.equal(
                ours.generate(prompt, 8), hf.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
            )
        gt = interleaved(
            {"ours": gen_fn(ours, prompt, s["new"], False), "hf": gen_fn(hf, prompt, s["new"], True)}, s["gen_reps"]
        )
        gen[b] = {k: b * s["new"] / v for k, v in gt.items()}
        print(
            f"generate b={b}: ours {gen[b]['ours']:.0f} tok/s  hf {gen[b]['hf']:.0f} tok/s  (greedy outputs identical: {same})"
        )

    if args.profile:
        ours.train(), hf.train()
        print_profile(
            "train step",
            profile_breakdown(train_step_fn(ours, x[:, :-1], x[:, 1:], hf=False)),
            profile_breakdown(train_step_fn(hf, x, None, hf=True)),
        )
        ours.eval(), hf.eval()
        prompt = torch.randint(0, s["V"], (1, s["prompt"]))
        with torch.no_grad():
            print_profile(
                "generate b=1",
                profile_breakdown(gen_fn(ours, prompt, s["new"], False)),
                profile_breakdown(gen_fn(hf, prompt, s["new"], True)),
            )

    peak = sgemm_peak(1024 if args.quick else 2048)
    achieved = ours.flops_per_token(s["T"]) * train_tps["ours"]
    print(f"sgemm peak {peak / 1e9:.1f} GFLOP/s; ours achieves {achieved / 1e9:.1f} GFLOP/s in training")
    result = {
        "bench": "gpt_vs_hf",
        "train_ratio": round(train_tps["ours"] / train_tps["hf"], 3),
        "gen_ratio_b1": round(gen[1]["ours"] / gen[1]["hf"], 3),
        "gen_ratio_b8": round(gen[8]["ours"] / gen[8]["hf"], 3),
        "mfu": round(achieved / peak, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
