"""Cost of the Free Transformer: ours vs the baseline GPT (same L and dims) and vs x-transformers' FreeTransformer.

Step = forward + backward + AdamW step on (B, T) tokens, H = 16 latent bits (65,536 codes per token).
- overhead = step_time(FT) / step_time(GPT) - 1, beside the floor 1/L (one extra block: the encoder);
- speed_vs_xt = step_time(x-transformers FreeTransformer) / step_time(ours), same dims, heads, depth split, H;
- mem_vs_xt = peak training memory (ours) / peak (x-transformers). Peak training memory = the highest live C heap
  (glibc mallinfo2, which PyTorch's CPU allocator draws from), sampled after every ATen op of one training
  step (a TorchDispatchMode), minus the heap before the model was built: weights, gradients, AdamW state and
  activations. Each configuration runs in a fresh child process.
Also printed: the FLOP overhead from model.flops_per_token (encoder block + the exact Eq. 8 backward, a
D x 2^H matmul per token), which is what sets the time overhead at small widths.

    python benchmarks/free_transformer_cost.py [--quick]
Last line: {"bench": "free_transformer_cost", "overhead": ..., "overhead_floor": ..., "speed_vs_xt": ..., "mem_vs_xt": ...}
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from latentlm.config import TrainConfig
from latentlm.train.optim import build_optimizer

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


def step_fn(kind: str, s: dict):
    model, loss_fn = build(kind, s)
    opt = build_optimizer(model, TrainConfig(lr=1e-4))  # the trainer's AdamW, for every model alike
    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1))

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


def child(kind: str, size: str) -> None:
    """Peak training memory of one step after two warm-up steps (optimizer state exists), in this process."""
    base = heap_bytes()
    _, step = step_fn(kind, SIZES[size])
    step()
    step()
    with PeakHeap() as mode:
        step()
    print(json.dumps({"peak_delta": mode.peak - base}))


def peak_memory(kind: str, size: str) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--size", size],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--size", default="default")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.size)
    size = "quick" if args.quick else "default"
    s = SIZES[size]
    models, steps = {}, {}
    for kind in ("gpt", "ours", "xt"):
        models[kind], steps[kind] = step_fn(kind, s)
        steps[kind]()  # warm-up
    times = {k: [] for k in steps}
    for _ in range(s["reps"]):
        for k, fn in steps.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: peak_memory(k, size) for k in ("gpt", "ours", "xt")}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    flop_overhead = models["ours"].flops_per_token(s["T"]) / models["gpt"].flops_per_token(s["T"]) - 1
    print(f"size={s} threads={torch.get_num_threads()}")
    for k in med:
        print(
            f"{k:5s} step {med[k] * 1e3:8.1f} ms   peak mem {mem[k] / 2**20:8.1f} MiB   params {params[k] / 1e6:6.2f}M"
        )
    print(f"FLOP overhead of ours over GPT (flops_per_token): {flop_overhead:.3f}; floor 1/L = {1 / s['L']:.3f}")
    result = {
        "bench": "free_transformer_cost",
        "overhead": round(med["ours"] / med["gpt"] - 1, 3),
        "overhead_floor": round(1 / s["L"], 3),
        "flop_overhead": round(flop_overhead, 3),
        "mem_overhead": round(mem["ours"] / mem["gpt"] - 1, 3),
        "speed_vs_xt": round(med["xt"] / med["ours"], 3),
        "mem_vs_xt": round(mem["ours"] / mem["xt"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
