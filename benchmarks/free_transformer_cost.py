"""Cost of the Free Transformer: ours vs the baseline GPT (same L and dims) and vs x-transformers' FreeTransformer.

Step = forward + backward + AdamW step on (B, T) tokens, H = 16 latent bits (65,536 codes per token).
- overhead = step_time(FT) / step_time(GPT) - 1, beside the floor 1/L (one extra block: the encoder);
- speed_vs_xt = step_time(x-transformers FreeTransformer) / step_time(ours), same dims, heads, depth split, H;
- mem_vs_xt = peak training memory (ours) / peak (x-transformers). Peak training memory = the highest live C heap
  (glibc mallinfo2, which PyTorch's CPU allocator draws from), sampled after every ATen op of one training
  step (a TorchDispatchMode), minus the heap before the model was built: weights, gradients, AdamW state and
  activations. Each configuration runs in a fresh child process.
Also printed: the FLOP overhead from model.flops_per_token (encoder block + the exact Eq. 8 backward, a
D x 2^H matmul per token), which is what sets the time overhead at small widths, and
- overhead_over_flops = (step_time(FT) / step_time(GPT)) / (flops(FT) / flops(GPT)): 1.0 means the latent machinery
  costs exactly its FLOPs (target <= 1.05);
- paper_overhead_1p5b, paper_overhead_8b: the analytic FLOP overhead flops(FT) / flops(GPT) - 1 at the paper's
  shapes (configs/free_transformer/paper_{1p5b,8b}.yaml, built on the meta device: nothing is allocated), beside
  paper_encoder_only_*: the same without the mapper's Eq. 8 backward, i.e. the one extra block the paper's 3.6 % /
  3.1 % (= 1/L) counts.
Times come from interleaved, paired repetitions (benchmarks/_measure.py): every ratio is the median of per-round
ratios, with its interquartile range as `*_iqr`.

    python benchmarks/free_transformer_cost.py [--quick]
Last line: {"bench": "free_transformer_cost", "overhead": ..., "overhead_over_flops": ..., "paper_overhead_1p5b": ...}
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from _measure import load_avg, load_note, median_iqr, paired, speed_ratio
from torch.utils._python_dispatch import TorchDispatchMode

from latentlm.config import TrainConfig, load_config
from latentlm.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]

SIZES = {
    "default": dict(d=256, L=4, heads=4, V=2048, T=128, B=8, H=16, reps=5),
    "quick": dict(d=128, L=4, heads=4, V=1024, T=64, B=4, H=16, reps=3),
}


def build(kind: str, s: dict):
    torch.manual_seed(0)
    if kind == "xt":
        from x_transformers.free_transformer import FreeTransformer as XT

        model = XT(
            num_tokens=s["V"],
            dim=s["d"],
            dec_head_depth=s["L"] // 2,
            dec_tail_depth=s["L"] - s["L"] // 2,
            max_seq_len=s["T"] + 1,
            heads=s["heads"],
            attn_dim_head=s["d"] // s["heads"],
            latent_bits=s["H"],
        )
        return model, lambda x: model(x)
    from latentlm.models import build_model
    from latentlm.models.free_transformer import Config

    cfg = Config(
        variant="free_transformer",
        vocab_size=s["V"],
        d_model=s["d"],
        n_layers=s["L"],
        n_heads=s["heads"],
        max_seq_len=s["T"] + 1,
        latent_bits=s["H"],
        latent=kind == "ours",
    )
    model = build_model(cfg)
    return model, lambda x: model(x[:, :-1], labels=x[:, 1:]).loss


def step_fn(kind: str, s: dict, device: str = "cpu"):
    model, loss_fn = build(kind, s)
    model.to(device)
    # the trainer's AdamW for every model alike; the peer is no latentlm variant, so it has no spec exemptions
    opt = build_optimizer(model, TrainConfig(lr=1e-4), no_decay_params=() if kind == "xt" else None)
    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1), device=device)

    def step():  # the trainer's order: gradients are freed after the update, so none are live in the forward
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_bytes() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd  # bytes in use: small-block arenas + mmap'ed large blocks


class PeakHeap(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.peak = heap_bytes()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, heap_bytes())
        return out


def child(kind: str, size: str, device: str = "cpu") -> None:
    """Peak training memory of one step after two warm-up steps (optimizer state exists), in this process."""
    base = heap_bytes()
    if device != "cpu":  # on CUDA the caching allocator keeps the peak itself (same quantity: from before the model)
        base = torch.cuda.memory_allocated()
        _, step = step_fn(kind, SIZES[size], device)
        step(), step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        return print(json.dumps({"peak_delta": torch.cuda.max_memory_allocated() - base}))
    _, step = step_fn(kind, SIZES[size])
    step()
    step()
    with PeakHeap() as mode:
        step()
    print(json.dumps({"peak_delta": mode.peak - base}))


def peak_memory(kind: str, size: str, device: str = "cpu") -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--size", size, "--device", device],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta"]


def paper_overheads() -> dict:
    """Analytic FLOP overheads at the paper's shapes, from flops_per_token on meta-device models."""
    import dataclasses

    from latentlm.models import build_model

    out = {}
    for tag in ("1p5b", "8b"):
        cfg = load_config(REPO / f"configs/free_transformer/paper_{tag}.yaml")
        c, T = cfg.model, cfg.data.seq_len
        with torch.device("meta"):
            ft, gpt = build_model(c), build_model(dataclasses.replace(c, latent=False))
        base = gpt.flops_per_token(T)
        mapper = 2 * 2**c.latent_bits * (c.d_model + 2 * c.latent_bits)  # Eq. 8 backward, per token
        out[f"paper_overhead_{tag}"] = round(ft.flops_per_token(T) / base - 1, 4)
        out[f"paper_encoder_only_{tag}"] = round((ft.flops_per_token(T) - mapper) / base - 1, 4)
        out[f"paper_one_over_L_{tag}"] = round(1 / c.n_layers, 4)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--size", default="default")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (peak memory: the CUDA allocator's on cuda)")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.size, args.device)
    size = "quick" if args.quick else "default"
    s = SIZES[size]
    models, steps = {}, {}
    for kind in ("gpt", "ours", "xt"):
        models[kind], steps[kind] = step_fn(kind, s, args.device)
    print(f"before: {load_note()}")
    load_before = load_avg()
    times = paired(steps, s["reps"])
    med = {k: median_iqr(v)[0] for k, v in times.items()}
    mem = {k: peak_memory(k, size, args.device) for k in ("gpt", "ours", "xt")}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    flop_ratio = models["ours"].flops_per_token(s["T"]) / models["gpt"].flops_per_token(s["T"])
    time_ratio, time_iqr = median_iqr([o / g for o, g in zip(times["ours"], times["gpt"])])
    over_flops, over_flops_iqr = median_iqr([o / g / flop_ratio for o, g in zip(times["ours"], times["gpt"])])
    speed_xt, speed_xt_iqr = speed_ratio(times, "ours", "xt")
    print(f"size={s} threads={torch.get_num_threads()}; after: {load_note()}")
    for k in med:
        print(
            f"{k:5s} step {med[k] * 1e3:8.1f} ms   peak mem {mem[k] / 2**20:8.1f} MiB   params {params[k] / 1e6:6.2f}M"
        )
    print(f"FLOP overhead of ours over GPT (flops_per_token): {flop_ratio - 1:.3f}; floor 1/L = {1 / s['L']:.3f}")
    paper = paper_overheads()
    print(
        "paper shapes (analytic): "
        + ", ".join(
            f"{t}: {paper[f'paper_overhead_{t}']:.2%} (encoder block alone {paper[f'paper_encoder_only_{t}']:.2%}, "
            f"1/L {paper[f'paper_one_over_L_{t}']:.2%})"
            for t in ("1p5b", "8b")
        )
    )
    r = lambda v: round(v, 3)  # noqa: E731
    result = {
        "bench": "free_transformer_cost",
        "overhead": r(time_ratio - 1),
        "overhead_iqr": r(time_iqr),
        "overhead_floor": r(1 / s["L"]),
        "flop_overhead": r(flop_ratio - 1),
        "overhead_over_flops": r(over_flops),
        "overhead_over_flops_iqr": r(over_flops_iqr),
        "mem_overhead": r(mem["ours"] / mem["gpt"] - 1),
        "speed_vs_xt": r(speed_xt),
        "speed_vs_xt_iqr": r(speed_xt_iqr),
        "mem_vs_xt": r(mem["ours"] / mem["xt"]),
        **paper,
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load_avg(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
