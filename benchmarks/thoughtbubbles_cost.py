"""Cost of Thoughtbubbles: how close the step time is to its FLOP count, and what the attention path saves.

- time_over_flops = (step_time(thoughtbubbles) / step_time(GPT)) / (flops_per_token(TB) / flops_per_token(GPT)),
  same dims; TB's FLOPs come from the actual stream counts (global top-k keeps exactly k streams per fork
  layer). 1.0 means the forking machinery (scores, top-k, gathers, fractional RoPE, merge) is free.
- speedup_vs_masked = attention time with a materialised (B, H, N, N) additive mask built per layer (causal +
  key bias, as in the authors' PyTorch code) / ours (the bias in a head channel of SDPA's causal kernel), forward
  + backward, at the model's stream count N after forking. Also printed: the same kernel causal vs unmasked
  (`kernel_causal_gain`); on CPU the fused kernel skips little of the upper triangle, which bounds what any
  causal path can gain there (on CUDA flash attention, causal halves the work and the mask memory is avoided).

    python benchmarks/thoughtbubbles_cost.py [--quick]
Times: interleaved paired rounds (benchmarks/_measure.py); each ratio is the median of per-round ratios, with its
interquartile range as `*_iqr`.
Last line: {"bench": "thoughtbubbles_cost", "time_over_flops": ..., "speedup_vs_masked": ...}
"""

import argparse
import json

import torch
import torch.nn.functional as F
from _measure import load_note, median_iqr, paired, speed_ratio

from latentlm.config import TrainConfig
from latentlm.models.gpt import GPT, GPTConfig
from latentlm.models.thoughtbubbles import Config, Model
from latentlm.nn.attention import attend
from latentlm.train.optim import build_optimizer

SIZES = {
    "default": dict(d=256, L=6, heads=4, V=2048, T=256, B=8, forks=[2, 3, 4], reps=5),
    "quick": dict(d=128, L=4, heads=4, V=2048, T=128, B=4, forks=[1, 2], reps=4),
}


def train_step(model, x):
    opt = build_optimizer(model, TrainConfig(lr=1e-4))  # the trainer's AdamW, for every model alike

    def step():
        loss = model(x[:, :-1], labels=x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def masked_attention(q, k, v, key_bias):
    """The materialised-mask version of the same maths: a (B, H, N, N) float mask, causal + bias."""
    B, H, N, _ = q.shape
    causal = torch.full((N, N), float("-inf"), device=q.device).triu(1)
    mask = (causal[None, None] + key_bias[:, None, None, :]).expand(B, H, N, N).contiguous()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the default size, on that device)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    s = SIZES["quick" if args.quick else "default"]
    torch.manual_seed(0)
    common = dict(vocab_size=s["V"], d_model=s["d"], n_layers=s["L"], n_heads=s["heads"], max_seq_len=s["T"])
    gpt = GPT(GPTConfig(**common))
    gpt.fused_loss = (
        False  # the same materialised head + cross-entropy as Thoughtbubbles' merge, so only forking differs
    )
    tb = Model(Config(variant="thoughtbubbles", fork_layers=s["forks"], budget=2.0, **common))
    gpt.to(dev), tb.to(dev)
    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1), device=dev)
    tt = paired({"gpt": train_step(gpt, x), "tb": train_step(tb, x)}, s["reps"])
    t = {k: median_iqr(v)[0] for k, v in tt.items()}
    flop_ratio = tb.flops_per_token(s["T"]) / gpt.flops_per_token(s["T"])
    time_ratio = t["tb"] / t["gpt"]
    tof, tof_iqr = median_iqr([b / a / flop_ratio for a, b in zip(tt["gpt"], tt["tb"])])

    N = int(max(tb.stream_multipliers(s["T"])) * s["T"])
    hd = s["d"] // s["heads"]
    q, k, v = (torch.randn(s["B"], s["heads"], N, hd, device=dev, requires_grad=True) for _ in range(3))
    bias = (torch.rand(s["B"], N, device=dev) * -10).requires_grad_()

    def run(fn):
        def go():
            out = fn()
            out.sum().backward()

        return go

    at = paired(
        {
            "ours": run(lambda: attend(q, k, v, causal=True, key_bias=bias * hd**-0.5)),
            "masked": run(lambda: masked_attention(q, k, v, bias * hd**-0.5)),
            "kernel_causal": run(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
            "kernel_full": run(lambda: F.scaled_dot_product_attention(q, k, v)),
        },
        s["reps"] * 2,
    )
    a = {k: median_iqr(v)[0] for k, v in at.items()}
    vs_masked, vs_masked_iqr = speed_ratio(at, "ours", "masked")
    causal_gain, causal_gain_iqr = speed_ratio(at, "kernel_causal", "kernel_full")
    with torch.no_grad():
        err = (attend(q, k, v, key_bias=bias * hd**-0.5) - masked_attention(q, k, v, bias * hd**-0.5)).abs().max()
    print(f"size={s} streams per token {tb.stream_multipliers(s['T'])}; {load_note()}")
    print(
        f"step: gpt {t['gpt'] * 1e3:.0f} ms, thoughtbubbles {t['tb'] * 1e3:.0f} ms -> time x{time_ratio:.2f} for FLOPs x{flop_ratio:.2f}"
    )
    print(
        f"attention fwd+bwd at N={N}: ours {a['ours'] * 1e3:.1f} ms, materialised mask {a['masked'] * 1e3:.1f} ms "
        f"(max |diff| {err:.1e}); the fused kernel itself: causal {a['kernel_causal'] * 1e3:.1f} ms vs unmasked "
        f"{a['kernel_full'] * 1e3:.1f} ms (kernel_causal_gain {a['kernel_full'] / a['kernel_causal']:.2f})"
    )
    print(
        json.dumps(
            {
                "bench": "thoughtbubbles_cost",
                "time_over_flops": round(tof, 3),
                "time_over_flops_iqr": round(tof_iqr, 3),
                "speedup_vs_masked": round(vs_masked, 3),
                "speedup_vs_masked_iqr": round(vs_masked_iqr, 3),
                "kernel_causal_gain": round(causal_gain, 3),
                "kernel_causal_gain_iqr": round(causal_gain_iqr, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
