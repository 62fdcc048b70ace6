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

from latentlm.compare.spec import Planned, Spec, digest
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


def eval_hash(spec: Spec, arm: str | None = None) -> str:
    """What a run's metrics depend on beyond its weights: the (arm's) eval settings and the held-out corpora."""
    ev = spec.arm_eval(arm) if arm else spec.eval
    d = {"eval": ev.digest(), "heldout": [str(p) for p in spec.heldout]}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def bind_source(run: Planned, src: Planned) -> None:
    """The dependent run's config hash from its own and its finished source's: a retrained source (another
    checkpoint sha256) gives another hash, so the dependent run is refused, not silently reused."""
    rec = read_record(src.run_dir)
    run.config_hash = digest(
        {
            "own": run.own_hash,
            "source": {
                "arm": src.arm,
                "config_hash": src.config_hash,
                "checkpoint_sha256": rec["checkpoint"]["sha256"],
            },
        }
    )


def occupied(d: Path) -> bool:
    return d.exists() and any(d.iterdir())


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
    if not occupied(d):
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


def train_run(
    spec: Spec, run: Planned, state: str, arm_cfg_path: str, overrides: dict, src: Planned | None = None
) -> dict:
    """Train one run (fresh, or continuing an interrupted run of the same config) and record it; an init_from
    run starts from its source run's model, exported into the source's folder first."""
    from latentlm.config import build, to_dict
    from latentlm.train import trainer

    init = None
    if src is not None:
        init = ensure_export(src, run.export_dir)
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
    if init is not None:
        rec["init_from"] = init
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
        train={
            **{k: v for k, v in summary.items() if k != "val"},
            "wall_s": wall,
            "last_phase": last_phase_metrics(run.run_dir / "metrics.jsonl"),
        },
        checkpoint={"path": os.path.relpath(ckpt, run.run_dir.resolve()), "sha256": sha256(ckpt)},
    )
    write_json(run.run_dir / RECORD, rec)
    return rec


def ensure_export(src: Planned, dest: Path) -> dict:
    """The source run's model as an HF folder inside its run folder (latentlm export; for a base-model variant,
    the trained base that another run's model.base_model points at). Made once per source checkpoint: a folder
    marked with another checkpoint sha256 is replaced. Rank 0 writes it, the other ranks wait."""
    rec = read_record(src.run_dir)
    sha = rec["checkpoint"]["sha256"]
    marker = dest / "compare_export.json"
    info = {"arm": src.arm, "run_dir": str(src.run_dir), "checkpoint_sha256": sha, "export": str(dest)}
    if is_main():
        ok = marker.is_file() and json.loads(marker.read_text()).get("checkpoint_sha256") == sha
        if not ok:
            import shutil

            from latentlm.hf.export import export_run

            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            export_run(src.run_dir, tmp)
            write_json(tmp / marker.name, {"checkpoint_sha256": sha, "checkpoint": rec["checkpoint"]["path"]})
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
    _barrier()
    return info


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def eval_only_record(spec: Spec, run: Planned, src: Planned, eval_overrides: dict) -> dict:
    """An eval-only run's record: no training (steps, tokens, FLOPs and time 0), the source's checkpoint."""
    src_rec = read_record(src.run_dir)
    ckpt = (src.run_dir / src_rec["checkpoint"]["path"]).resolve()
    params = (src_rec.get("train") or {}).get("params")
    rec = {
        "arm": run.arm,
        "seed": run.seed,
        "status": "done",
        "config_hash": run.config_hash,
        "config": None,
        "overrides": {},
        "grid": spec.name,
        "from": {"arm": src.arm, "run_dir": str(src.run_dir), "eval_overrides": eval_overrides},
        "train": {
            "eval_only": True,
            "steps": 0,
            "tokens_seen": 0,
            "train_flops": 0,
            "wall_s": 0.0,
            "train_time_s": 0.0,
            "params": params,
        },  # fmt: skip
        "checkpoint": {"path": os.path.relpath(ckpt, run.run_dir.resolve()), "sha256": src_rec["checkpoint"]["sha256"]},
    }
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.run_dir / RECORD, rec)
    return rec


def last_phase_metrics(path: Path) -> dict | None:
    """Means of the trainer's logged train metrics over the rows of the last curriculum phase (metrics.jsonl). A
    metric a step does not log is averaged over the rows that have it (e.g. latents_per_row, logged only for
    batches that hold a latent: a stage that inserts none has no such rows)."""
    from latentlm.train.logging import read_metrics

    rows = [r for r in read_metrics(path) if r.get("kind") == "train"]
    if not rows:
        return None
    phase = rows[-1].get("phase")
    last = [r for r in rows if r.get("phase") == phase]
    sums: dict[str, list[float]] = {}
    for r in last:
        for k, v in r.items():
            if k not in ("step", "kind", "phase") and isinstance(v, (int, float)) and not isinstance(v, bool):
                sums.setdefault(k, []).append(float(v))
    return {"phase": phase, "rows": len(last), "means": {k: sum(v) / len(v) for k, v in sums.items()}}


def evaluate_run(spec: Spec, run: Planned, rec: dict) -> dict:
    """Score a finished run with the library's evaluators; metrics go into its compare_run.json."""
    import torch

    from latentlm.eval.perplexity import evaluate
    from latentlm.rundir import load_run
    from latentlm.train.trainer import resolve_device

    device = resolve_device(run.cfg.train.device)
    t0 = time.perf_counter()
    arm = spec.arm(run.arm)
    if run.eval_only:  # the source's checkpoint (as recorded), decoded with the arm's eval_overrides
        ckpt = (run.run_dir / rec["checkpoint"]["path"]).resolve().parent
        model, tok = load_run(ckpt, device=device, overrides=arm.eval_overrides)
    else:
        model, tok = load_run(run.run_dir, device=device)
    cfg = model.run_config
    ev = spec.arm_eval(arm)
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
            kw = {"batch_size": ev.reasoning_batch} if ev.reasoning_batch else {}
            metrics["reasoning"] = reasoning_run(
                model, tok, cfg, name, ev.reasoning_limit, test_seed=ev.reasoning_test_seed, policy=ev.policy, **kw
            )
    note = model.score_note
    leak_max = (metrics.get("leak") or {}).get("max_abs_dlogp")
    rec.update(
        metrics=metrics,
        eval_hash=eval_hash(spec, run.arm),
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
