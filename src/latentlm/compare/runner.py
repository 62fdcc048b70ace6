"""The grid runner: train (or reuse) every (arm, seed) run, then score it with the library's evaluators.

Each run lives in OUT/runs/ARM/seed_N with a fresh out_dir; a new run trains with train.resume=false. The run's
own record is RUN/compare_run.json (config hash, checkpoint sha256, training summary, metrics), written by this
module only: a finished run whose stored hash equals the spec's is reused without a training step, a folder whose
hash differs is refused. Under torchrun every rank executes the same plan (each training run uses DDP); only
rank 0 evaluates and writes records.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from latentlm.compare.spec import Planned, Spec
from latentlm.errors import InputError

RECORD = "compare_run.json"
GRID = "grid.json"
LEAK_TOL = 1e-4  # nats: a causal model's probe is 0 up to float noise; above this the likelihood leaks


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class DistGroup:
    """Under torchrun: one process group for the whole grid (the trainer joins it and leaves it open), because
    tearing a group down and re-creating it on the same rendezvous store between runs hangs. No-op otherwise."""

    def __init__(self, cfg=None):
        import torch.distributed as dist

        self.dist, self.owned = dist, False
        if cfg is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
            return
        from latentlm.train.trainer import resolve_device

        cuda = resolve_device(cfg.train.device).type == "cuda"
        if cuda:
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        self.owned = True

    def barrier(self) -> None:
        if self.owned:
            self.dist.barrier()

    def close(self) -> None:
        if self.owned and self.dist.is_initialized():
            self.dist.destroy_process_group()


def sha256(path: Path) -> str:
    from latentlm.rundir import sha256_file

    return sha256_file(path)


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean(data), indent=1, default=str))
    os.replace(tmp, path)


def clean(x):
    """JSON-safe: NaN / inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def read_record(run_dir: Path) -> dict | None:
    f = run_dir / RECORD
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{f} is not valid JSON; delete {run_dir} to retrain that run") from None


def eval_hash(spec: Spec) -> str:
    d = {"eval": spec.eval.digest(), "heldout": [str(p) for p in spec.heldout]}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Checks before anything is written.


def check_out(spec: Spec, out: Path) -> None:
    """OUT must be new, empty, or a folder of this same grid (same name)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the grid")
    grid = out / GRID
    if grid.is_file():
        try:
            name = json.loads(grid.read_text()).get("name")
        except json.JSONDecodeError:
            name = None
        if name != spec.name:
            raise InputError(
                f"{out} holds another grid ({name!r}, this spec is {spec.name!r}); use another --out or delete {out}"
            )
        return
    if any(out.iterdir()):
        raise InputError(f"{out} is not empty and holds no {GRID} (not a compare grid); use another --out")


def check_run(run: Planned) -> str:
    """'new', 'resume' (same config, interrupted), or 'done'; refuses a folder made with another config."""
    d = run.run_dir
    if not d.exists() or not any(d.iterdir()):
        return "new"
    rec = read_record(d)
    if rec is None:
        raise InputError(f"{d} is not empty and was not made by latentlm compare; move it away or use another --out")
    if rec.get("config_hash") != run.config_hash:
        raise InputError(
            f"{d} holds a run of another config (hash {str(rec.get('config_hash'))[:12]}, this spec gives "
            f"{run.config_hash[:12]}); never resumed under a different config: use another --out or delete {d}"
        )
    if rec.get("status") != "done":
        return "resume"
    ckpt = d / rec["checkpoint"]["path"]
    if not ckpt.is_file() or sha256(ckpt) != rec["checkpoint"]["sha256"]:
        raise InputError(f"{ckpt} is missing or changed since the run finished; delete {d} to retrain it")
    return "done"


# ---------------------------------------------------------------------------------------------------------
# Training and evaluation of one run.


def train_run(spec: Spec, run: Planned, state: str, arm_cfg_path: str, overrides: dict) -> dict:
    """Train one run (fresh, or continuing an interrupted run of the same config) and record it."""
    from latentlm.config import build, to_dict
    from latentlm.train import trainer

    d = to_dict(run.cfg)
    d["train"]["resume"] = "auto" if state == "resume" else "false"
    cfg = build(type(run.cfg), d)
    rec = {
        "arm": run.arm,
        "seed": run.seed,
        "status": "training",
        "config_hash": run.config_hash,
        "config": arm_cfg_path,
        "overrides": overrides,
        "grid": spec.name,
    }
    if is_main():
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.run_dir / RECORD, rec)
    t0 = time.perf_counter()
    summary = trainer.train(cfg)
    wall = time.perf_counter() - t0
    if not is_main():
        return rec
    from latentlm.rundir import find_checkpoint

    ckpt = find_checkpoint(run.run_dir) / "model.safetensors"
    rec.update(
        status="done",
        train={**{k: v for k, v in summary.items() if k != "val"}, "wall_s": wall},
        checkpoint={"path": os.path.relpath(ckpt, run.run_dir.resolve()), "sha256": sha256(ckpt)},
    )
    write_json(run.run_dir / RECORD, rec)
    return rec


def evaluate_run(spec: Spec, run: Planned, rec: dict) -> dict:
    """Score a finished run with the library's evaluators; metrics go into its compare_run.json."""
    import torch

    from latentlm.eval.perplexity import evaluate
    from latentlm.rundir import load_run
    from latentlm.train.trainer import resolve_device

    device = resolve_device(run.cfg.train.device)
    t0 = time.perf_counter()
    model, tok = load_run(run.run_dir, device=device)
    cfg = model.run_config
    ev = spec.eval
    metrics: dict = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        metrics["val"] = evaluate(model, tok, cfg, "val", max_batches=ev.val_batches, device=device)
        text = cfg.data.reasoning is None
        if text:
            metrics["val"]["unigram_bpb"] = unigram_val_bpb(cfg, tok)
        metrics["heldout"] = {}
        for path in spec.heldout:
            metrics["heldout"][path.stem] = heldout_bpb(model, tok, cfg, path, device)
        if ev.leak:
            metrics["leak"] = leak(model, tok, cfg, device)
        if ev.choice:
            from latentlm.data.corpora import data_root
            from latentlm.eval.choice import evaluate_choice

            metrics["choice"] = {  # a .jsonl task is named by its file stem
                Path(t).stem: evaluate_choice(model, tok, t, data_root(), limit=ev.choice_limit) for t in ev.choice
            }
        if ev.reasoning:
            from latentlm.eval.reasoning import evaluate_run as reasoning_run

            name = ev.reasoning if isinstance(ev.reasoning, str) else None
            metrics["reasoning"] = reasoning_run(model, tok, cfg, name, ev.reasoning_limit, policy=ev.policy)
    note = model.score_note
    leak_max = (metrics.get("leak") or {}).get("max_abs_dlogp")
    rec.update(
        metrics=metrics,
        eval_hash=eval_hash(spec),
        eval_wall_s=time.perf_counter() - t0,
        variant=cfg.model.variant,
        score_note=note,
        flags={
            "leak": bool((leak_max is not None and leak_max > LEAK_TOL) or "leak" in note),
            "prior_z": "prior Z" in note,
        },
    )
    write_json(run.run_dir / RECORD, rec)
    return rec


def heldout_bpb(model, tok, cfg, path: Path, device) -> dict:
    """Bits per byte on a whole user file/folder (.txt / .jsonl "text"), tokenized with the run's tokenizer."""
    from latentlm.data.corpora import read_documents
    from latentlm.eval.perplexity import evaluate_tokens

    docs = read_documents(Path(path))
    eos = tok.eos_id if tok.eos_id is not None else tok.pad_id
    tokens = np.asarray([t for doc in docs if doc for t in tok.encode(doc) + [eos]], dtype=np.int64)
    seq_len = cfg.data.seq_len
    if len(tokens) < seq_len:  # a short file: score it as one window
        seq_len = max(2, len(tokens))
    batch = max(1, cfg.train.batch_size // cfg.train.grad_accum)
    out = evaluate_tokens(model, tokens, tok.token_bytes(), seq_len, batch, None, device)
    out.update(corpus=str(path), split="all", unigram_bpb=_unigram_from_train(cfg, tok, tokens, seq_len))
    return out


def leak(model, tok, cfg, device, sequences: int = 8, probes: int = 8) -> dict:
    """The causality probe (eval/leak.py) on the run's validation windows, on the model's device."""
    from latentlm.data import build_source, load_split, shard_dir
    from latentlm.data.shards import eval_windows
    from latentlm.eval.leak import measure_leak

    if cfg.data.reasoning is not None:
        batch = next(iter(build_source(cfg, tok, "val").eval_batches(sequences, 1)))["input_ids"]
    else:
        batch = next(iter(eval_windows(load_split(shard_dir(cfg), "val"), cfg.data.seq_len, sequences, 1)))
    return measure_leak(model, batch.to(device), probes)


def unigram_val_bpb(cfg, tok) -> float | None:
    """Trivial baseline: the train split's add-one unigram token frequencies scored on the validation windows."""
    from latentlm.data import load_split, shard_dir

    return _unigram_from_train(cfg, tok, np.asarray(load_split(shard_dir(cfg), "val")), cfg.data.seq_len)


def _unigram_from_train(cfg, tok, eval_tokens: np.ndarray, seq_len: int) -> float | None:
    if cfg.data.reasoning is not None:
        return None
    from latentlm.data import load_split, shard_dir

    train = np.asarray(load_split(shard_dir(cfg), "train"), dtype=np.int64)
    counts = np.bincount(train, minlength=tok.vocab_size).astype(np.float64)[: tok.vocab_size] + 1.0
    logp = np.log2(counts / counts.sum())
    n = len(eval_tokens) // seq_len
    if n == 0:
        return None
    win = np.asarray(eval_tokens[: n * seq_len], dtype=np.int64).reshape(n, seq_len)[:, 1:]  # as evaluate_tokens
    nbytes = tok.token_bytes()[win].sum()
    return float(-logp[win].sum() / max(nbytes, 1))
