"""FSDP2 save -> resume round trip in one process (world size 1): part of benchmarks/gpu_check.sh, CPU-testable.

Shards a small GPT with fully_shard on a one-rank process group (nccl on CUDA, gloo on CPU), trains two steps,
saves through train/dcp.py (torch.distributed.checkpoint), builds a fresh sharded model and optimizer, loads, and
checks that the weights and AdamW state are identical and that one more step gives identical weights on both.

    python benchmarks/_fsdp_roundtrip.py [--device cuda] [--dir DIR]
Last line: {"bench": "fsdp_roundtrip", "device": ..., "weights_equal": true, "optimizer_equal": true, "next_step_equal": true}
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist


def build(device, seed=0):
    from torch.distributed.fsdp import fully_shard

    from latentlm.config import TrainConfig
    from latentlm.models.gpt import GPT, GPTConfig
    from latentlm.train.optim import build_optimizer

    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)).to(device)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model, build_optimizer(model, TrainConfig(lr=1e-3))


def step(model, opt, x):
    model(x[:, :-1], labels=x[:, 1:]).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def full(model):
    return {k: v.full_tensor().detach().cpu().clone() for k, v in model.state_dict().items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    from latentlm.train import dcp as dcp_io

    class _Tok:  # the checkpoint writes a tokenizer beside the weights; this check needs none
        def save(self, path):
            (Path(path) / "tokenizer.json").write_text("{}")

    from latentlm.config import RunConfig

    root = Path(args.dir or tempfile.mkdtemp(prefix="fsdp-roundtrip-"))
    x = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(1)).to(device)
    model, opt = build(device)
    step(model, opt, x), step(model, opt, x)
    state = {"step": 2, "rng": {}}
    ckpt = dcp_io.save_checkpoint(root, 2, model, opt, state, RunConfig(), _Tok(), keep=1)
    model2, opt2 = build(device, seed=123)  # different initial weights: everything must come from the checkpoint
    dcp_io.load_sharded(ckpt, model2, opt2)
    weights_equal = all(torch.equal(a, b) for a, b in zip(full(model).values(), full(model2).values()))
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    optimizer_equal = s1.keys() == s2.keys() and all(
        torch.equal(
            (a.full_tensor() if hasattr(a, "full_tensor") else a).cpu(),
            (b.full_tensor() if hasattr(b, "full_tensor") else b).cpu(),
        )
        for k in s1
        for a, b in zip(s1[k].values(), s2[k].values())
    )
    step(model, opt, x), step(model2, opt2, x)
    next_equal = all(torch.equal(a, b) for a, b in zip(full(model).values(), full(model2).values()))
    dist.destroy_process_group()
    ok = weights_equal and optimizer_equal and next_equal
    print(
        json.dumps(
            {
                "bench": "fsdp_roundtrip",
                "device": str(device),
                "weights_equal": weights_equal,
                "optimizer_equal": optimizer_equal,
                "next_step_equal": next_equal,
                "checkpoint": str(ckpt),
            }
        )
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
