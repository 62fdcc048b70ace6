"""THE training loop: every variant trains here, none is special-cased.

Shape: `train` -> `_train` (`_setup` builds a `Run`; `_loop` steps it) -> `train_step` per optimizer step ->
`forward_backward` per micro-batch. Per optimizer step: the data source yields `grad_accum` micro-batches; each
micro-batch loss is weighted by its share of the step's non-ignored label tokens (over all ranks), so k
micro-batches of b rows give exactly the update of one batch of k*b rows. The model's metrics stay on the device
(`MetricSums`): the loop reads the device once per step (loss sum and gradient norm together, for the divergence
check) and once more per log step (all metrics together), never per micro-batch. `train/hooks.py` lets tests
observe or interrupt a run (the crash tests' faults); production installs no hook. A curriculum changes phase through the data source (`phase`,
`begin_phase`) and may reset the optimizer. Non-finite loss or gradient norm stops training before the
update, naming the step; the last checkpoint stays intact. Resume restores model, optimizer, schedule
position, RNG states and data position, so the continued run is bit-identical to an uninterrupted one.

Run integrity: the run directory is locked for the whole training (`train/lock.py`); leftovers of killed writers
are removed at start; a finished run re-run with the same config does nothing and says so; on resume the run's
own tokenizer is used (a data tokenizer that differs is an error), metrics.jsonl is cut back to the checkpoint's
step and TensorBoard purges the steps after it, and `resumed from step N (checkpoint ...)` is printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentlm.config import RunConfig, load_config, to_dict, to_yaml
from latentlm.data import load_tokenizer
from latentlm.data.tokenizer import Tokenizer, check_same_tokenizer
from latentlm.errors import ConfigError, InputError, LatentLMError
from latentlm.eval.perplexity import evaluate
from latentlm.models import build_model, variant_spec
from latentlm.nn.loss import count_targets
from latentlm.train import checkpoint as ckpt_io
from latentlm.train import dcp as dcp_io
from latentlm.train import hooks
from latentlm.train.device import validate_train_device
from latentlm.train.distributed import all_reduce_sum, cleanup, init_distributed, wrap_model
from latentlm.train.distributed import no_sync as dist_no_sync
from latentlm.train.lock import RunLock
from latentlm.train.logging import MetricsLogger
from latentlm.train.optim import build_optimizer, lr_at


class TrainingDiverged(LatentLMError):
    """Loss or gradient became NaN/Inf."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={spec!r} but CUDA is not available; use train.device=cpu")
    return torch.device(spec)


def autocast_for(cfg: RunConfig, device: torch.device):
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resume_checkpoint(cfg: RunConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, after checking it belongs to the same variant. A latest checkpoint that
    fails verification is skipped for the previous one, with a warning."""
    resume = str(cfg.train.resume)
    if resume == "false":
        if ckpt_io.find_checkpoint(run_dir) is not None:
            raise InputError(
                f"{run_dir} already holds a run; continue it with --train.resume=auto or pick another --train.out_dir"
            )
        return None
    if resume != "auto" and not Path(resume).exists():
        raise InputError(f"train.resume={resume!r}: no checkpoint found there")
    ckpt = ckpt_io.resumable_checkpoint(run_dir if resume == "auto" else resume)
    if ckpt is None:
        if resume != "auto":
            raise InputError(f"train.resume={resume!r}: no checkpoint found there")
        return None
    old = load_config(ckpt / "config.yaml")
    if old.model.variant != cfg.model.variant:
        raise InputError(
            f"cannot resume {ckpt}: it is a {old.model.variant!r} checkpoint and this config builds "
            f"{cfg.model.variant!r}; use another --train.out_dir or --train.resume=false"
        )
    return ckpt


# fields that may differ between a finished run and its re-run without making it another run
_IGNORED = ("log.", "train.device", "train.resume", "train.compile", "train.out_dir")


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Fields (dotted) whose values differ between two configs, ignoring display and placement fields."""

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out

    fa, fb = flat(to_dict(a)), flat(to_dict(b))
    keys = [k for k in dict.fromkeys([*fa, *fb]) if not k.startswith(_IGNORED) and fa.get(k) != fb.get(k)]
    return [f"{k}: {fa.get(k)!r} there, {fb.get(k)!r} here" for k in keys]


def finished_run(cfg: RunConfig, run_dir: Path) -> dict | None:
    """The summary of a run that already reached train.max_steps with this config (nothing to do), else None.
    A finished run asked to train with another config (other than more steps) is an error: it would be overwritten."""
    if str(cfg.train.resume) != "auto":
        return None
    ckpt = ckpt_io.find_checkpoint(run_dir)
    if ckpt is None or not (ckpt / "config.yaml").is_file():
        return None
    step = ckpt_io.checkpoint_step(ckpt)
    if step < cfg.train.max_steps:
        return None  # more steps: a continuation
    diff = config_diff(load_config(ckpt / "config.yaml"), cfg)
    if step > cfg.train.max_steps or diff:
        why = "; ".join(diff[:3]) or f"train.max_steps={cfg.train.max_steps} is below its {step} steps"
        raise InputError(
            f"{run_dir} holds a finished run (step {step}) with another config ({why}); raise --train.max_steps to "
            "continue it, or choose another --train.out_dir"
        )
    summary_file = run_dir / "train_summary.json"
    if not summary_file.is_file():
        return None  # killed after its last checkpoint: finish the bookkeeping
    print(
        f"{run_dir} already finished: step {step} of train.max_steps={cfg.train.max_steps} with this config; "
        "nothing to do (raise --train.max_steps to train further)"
    )
    return json.loads(summary_file.read_text())


def train(cfg: RunConfig, on_end=None) -> dict:
    """Train per cfg; return train_summary.json's dict. `on_end(model)` runs on every rank before teardown."""
    device = resolve_device(cfg.train.device)
    dist = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    validate_train_device(cfg.train, device, dist.world_size)  # precision / compile / dist this machine can run
    run_dir = Path(cfg.train.out_dir)
    lock = RunLock(run_dir) if dist.is_main else None
    try:
        if lock is not None:
            lock.acquire()
            ckpt_io.clean_stale(run_dir)  # leftovers of a killed or disk-full writer; we hold the lock
        return _train(cfg, device, dist, run_dir, on_end)
    finally:
        if lock is not None:
            lock.release()
        cleanup(dist)


@dataclass
class Run:
    """What one training process holds, built once by `_setup` and read by the loop."""

    cfg: RunConfig
    device: torch.device
    dist: Any  # train.distributed.DistInfo
    run_dir: Path
    model: torch.nn.Module  # the unwrapped model (checkpoints, eval, hooks)
    train_model: torch.nn.Module  # what forward/backward runs through (DDP / FSDP2 / compiled)
    tokenizer: Tokenizer
    source: Any  # the data source: next_batch, phase, begin_phase, state_dict
    optimizer: torch.optim.Optimizer
    autocast: Any
    state: dict  # step, tokens_seen, train_time: the counters a checkpoint stores
    params: list = field(default_factory=list)


@dataclass
class StepResult:
    loss: float  # mean over the step's non-ignored label tokens of every rank
    grad_norm: float  # before clipping
    tokens: int  # input tokens of the step, all ranks
    metrics: MetricSums


class MetricSums:
    """The model's metrics of one step, weighted by each micro-batch's label tokens. Tensors stay on the device;
    `means()` reads them all with one device->host copy (done on log steps only)."""

    def __init__(self):
        self.sums: dict = {}
        self.weight = 0

    def add(self, metrics: dict, n: int) -> None:
        self.weight += n
        for k, v in metrics.items():
            v = v.detach().float().reshape(()) if torch.is_tensor(v) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v * n

    def means(self) -> dict[str, float]:
        on_device = [k for k, v in self.sums.items() if torch.is_tensor(v)]
        host = dict(zip(on_device, torch.stack([self.sums[k] for k in on_device]).tolist())) if on_device else {}
        return {k: host.get(k, v) / max(self.weight, 1) for k, v in self.sums.items()}


def _train(cfg: RunConfig, device: torch.device, dist, run_dir: Path, on_end) -> dict:
    done = finished_run(cfg, run_dir) if not dist.enabled else None
    if done is not None:
        return done
    run = _setup(cfg, device, dist, run_dir)
    log = MetricsLogger(
        run_dir,
        enabled=dist.is_main,
        tensorboard=cfg.log.tensorboard,
        progress=cfg.log.progress,
        total=cfg.train.max_steps,
        initial=run.state["step"],
        resume_step=run.state["step"],
        run_config=cfg,  # log.wandb
    )
    track = {"loss": float("nan"), "val": None}  # the last train loss and val result
    try:
        _loop(run, log, track)
    except KeyboardInterrupt:
        last = ckpt_io.find_checkpoint(run_dir)
        where = f"step {ckpt_io.checkpoint_step(last)} ({last})" if last else "the start (no checkpoint yet)"
        raise KeyboardInterrupt(
            f"training stopped at step {run.state['step']}; run the same command again to resume from {where}"
        ) from None
    finally:
        log.close()
    summary = _summary(cfg, run.model, run.state, track["loss"], track["val"])
    if dist.is_main:
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    if on_end is not None:
        on_end(run.model)
    return summary


def _loop(run: Run, log: MetricsLogger, track: dict) -> None:
    cfg, t = run.cfg, run.cfg.train
    phase = None
    window_t, window_tokens = time.perf_counter(), 0
    while run.state["step"] < t.max_steps:
        step = run.state["step"]
        phase = _enter_phase(run, step, phase)
        lr = lr_at(step, t)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if (begin_step := variant_spec(cfg.model).begin_step) is not None:  # step-dependent losses (a KL schedule)
            begin_step(run.model, step)
        step_start = time.perf_counter()
        res = train_step(run, step)
        run.state["step"] = step = step + 1
        run.state["tokens_seen"] += res.tokens
        run.state["train_time"] += time.perf_counter() - step_start
        window_tokens += res.tokens
        track["loss"] = res.loss
        log.advance()
        if _due(step, cfg.log.every, t.max_steps):
            rates = {"tokens_per_s": window_tokens / (time.perf_counter() - window_t)}
            row = {"loss": res.loss, "lr": lr, "grad_norm": res.grad_norm, **rates}
            log.log(step, {**row, "tokens_seen": run.state["tokens_seen"], "phase": phase, **res.metrics.means()})
            window_t, window_tokens = time.perf_counter(), 0
        if cfg.eval.every and _due(step, cfg.eval.every, t.max_steps):
            track["val"] = _validate(run, log, step)
        if _due(step, t.ckpt_every, t.max_steps):
            _checkpoint(run, step)
        hooks.after_step(step)


def train_step(run: Run, step: int) -> StepResult:
    """One optimizer step: `grad_accum` micro-batches through `forward_backward`, each loss weighted by its share
    of the step's label tokens over all ranks; a non-finite loss or gradient norm stops before the update.

    Host syncs: none per micro-batch. The label counts are read from the source's host tensors; the loss sum and
    the gradient norm come back in one device->host copy per step (the divergence check needs them before the
    update); under DDP the global label/token counts add one all-reduce read."""
    accum, dist = run.cfg.train.grad_accum, run.dist
    batches = [run.source.next_batch() for _ in range(accum)]
    counts = [count_targets(b["labels"]) for b in batches]  # the source's host tensors: no device sync
    n_global, n_tokens = _global_sums(run, sum(counts), sum(b["input_ids"].numel() for b in batches))
    loss_sum, metrics = torch.zeros((), device=run.device), MetricSums()
    for i, (batch, n) in enumerate(zip(batches, counts)):
        out = forward_backward(run, batch, n * dist.world_size / max(n_global, 1.0), sync=i == accum - 1)
        loss_sum += out.loss.detach().float() * n
        metrics.add(out.metrics, n)
    max_norm = run.cfg.train.grad_clip if run.cfg.train.grad_clip > 0 else float("inf")
    grad_norm = _local(torch.nn.utils.clip_grad_norm_(run.params, max_norm))
    loss_total, norm = torch.stack([all_reduce_sum(loss_sum, dist), grad_norm.float()]).tolist()  # the one sync
    step_loss = loss_total / max(n_global, 1.0)
    if not math.isfinite(step_loss):
        _diverged(run.run_dir, step, f"loss {step_loss}")
    if not math.isfinite(norm):
        _diverged(run.run_dir, step, f"gradient norm {norm}")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return StepResult(step_loss, norm, int(n_tokens), metrics)


def forward_backward(run: Run, batch: dict, weight: float, sync: bool):
    """Forward one micro-batch and backpropagate `weight` x its loss; gradients are all-reduced (DDP) only when
    `sync` (the step's last micro-batch). Returns the model's LMOutput."""
    batch = {k: v.to(run.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    no_sync = contextlib.nullcontext() if sync or not run.dist.enabled else dist_no_sync(run.train_model)
    with no_sync, run.autocast:
        out = run.train_model(**batch)
        (out.loss * weight).backward()
    return out


def _setup(cfg: RunConfig, device: torch.device, dist, run_dir: Path) -> Run:
    """Tokenizer, model, data source, optimizer and counters, restored from the checkpoint when resuming."""
    if dist.enabled and not dist.is_main:
        torch.distributed.barrier()  # rank 0 prepares data and tokenizer first
    tokenizer = load_tokenizer(cfg)
    if dist.enabled and dist.is_main:
        torch.distributed.barrier()
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg.model).to(device)
    if tokenizer.vocab_size > model.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but model.vocab_size={model.vocab_size}; "
            f"set --model.vocab_size={tokenizer.vocab_size} (or larger)"
        )
    ckpt = resume_checkpoint(cfg, run_dir)
    if ckpt is not None:  # the run's own tokenizer; data tokenized otherwise would train on other ids
        run_tok = Tokenizer.load(ckpt)
        check_same_tokenizer(run_tok, tokenizer, f"the run's tokenizer ({ckpt / 'tokenizer.json'})", _data_where(cfg))
        tokenizer = run_tok
    source = variant_spec(cfg.model).build_source(cfg, tokenizer, "train", dist.rank, dist.world_size)
    optimizer = build_optimizer(model, cfg.train)
    state = {"step": 0, "tokens_seen": 0, "train_time": 0.0}
    if ckpt is not None:
        saved = ckpt_io.load_training_state(ckpt, model, optimizer, device)
        source.load_state_dict(saved["data"])
        state = {k: saved[k] for k in state}
        if dist.is_main:
            print(f"resumed from step {state['step']} (checkpoint {ckpt})", flush=True)
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(to_yaml(cfg))
            if ckpt is None:
                tokenizer.save(run_dir)
        except OSError as e:
            raise InputError(
                f"cannot write into train.out_dir {run_dir} ({e.strerror or e}); free space or fix it"
            ) from None
    train_model, optimizer = dcp_io.wrap_restoring(  # FSDP2: the optimizer is rebuilt on the shards, state kept
        model,
        optimizer,
        ckpt,
        lambda: wrap_model(model, dist, cfg.train.dist, device),
        lambda: build_optimizer(model, cfg.train),
    )
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = autocast_for(cfg, device)
    return Run(cfg, device, dist, run_dir, model, train_model, tokenizer, source, optimizer, autocast, state, params)


def _data_where(cfg) -> str:
    if cfg.data.reasoning is not None:
        return f"the tokenizer of data.tokenizer={cfg.data.tokenizer!r}"
    from latentlm.data import shard_dir

    return f"the data's tokenizer ({shard_dir(cfg) / 'tokenizer.json'})"


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def _enter_phase(run: Run, step: int, phase):
    """The curriculum phase of `step`; entering one (or the first step of this process, fresh or resumed) tells
    the source, and a real phase boundary may reset the optimizer state."""
    now = run.source.phase(step)
    if now != phase:
        run.source.begin_phase(now, run.model)
        if run.cfg.train.reset_optimizer_on_phase and step > 0 and now != run.source.phase(step - 1):
            run.optimizer.state.clear()  # only at a real boundary: a resume mid-phase keeps the restored state
    return now


def _global_sums(run: Run, labels: int, tokens: int) -> tuple[float, int]:
    """The step's label tokens and input tokens summed over ranks (plain host numbers on one rank)."""
    if not run.dist.enabled:
        return float(labels), tokens
    both = all_reduce_sum(torch.tensor([labels, tokens], dtype=torch.float64, device=run.device), run.dist)
    n, t = both.tolist()
    return n, int(t)


def _local(norm: torch.Tensor) -> torch.Tensor:
    """The gradient norm as a plain tensor (under FSDP2 clip_grad_norm_ returns a DTensor)."""
    from torch.distributed.tensor import DTensor

    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def _validate(run: Run, log: MetricsLogger, step: int) -> dict:
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):  # keeps training RNG
        val = evaluate(run.model, run.tokenizer, run.cfg, "val", max_batches=run.cfg.eval.batches, device=run.device)
    log.log(step, {k: v for k, v in val.items() if isinstance(v, (int, float))}, kind="val")
    return val


def _checkpoint(run: Run, step: int) -> None:
    sharded = dcp_io.is_sharded(run.model)  # FSDP2: every rank writes its shards (torch.distributed.checkpoint)
    if sharded or run.dist.is_main:
        full = {**run.state, "data": run.source.state_dict(), "rng": ckpt_io.rng_state()}
        save = dcp_io.save_checkpoint if sharded else ckpt_io.save_checkpoint
        save(run.run_dir, step, run.model, run.optimizer, full, run.cfg, run.tokenizer, run.cfg.train.keep_checkpoints)
    if run.dist.enabled:
        torch.distributed.barrier()


def _summary(cfg, model, state, last_loss, last_val) -> dict:
    spec = variant_spec(cfg.model)
    fpt, n_params = spec.flops(model, cfg.data.seq_len), spec.num_params(model)
    return {
        "variant": cfg.model.variant,
        "params": n_params,
        "flops_per_token": fpt,
        "train_flops": None if fpt is None else fpt * state["tokens_seen"],
        "seq_len": cfg.data.seq_len,
        "steps": state["step"],
        "tokens_seen": state["tokens_seen"],
        "train_time_s": state["train_time"],
        "tokens_per_s": state["tokens_seen"] / max(state["train_time"], 1e-9),
        "final_train_loss": last_loss,
        "val": last_val,
    }


def _diverged(run_dir: Path, step: int, what: str):
    last = ckpt_io.find_checkpoint(run_dir)
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise TrainingDiverged(f"training diverged: non-finite {what} at step {step + 1}; {where} (try a lower train.lr)")
