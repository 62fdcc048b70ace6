"""Checkpoints of FSDP2-sharded training through `torch.distributed.checkpoint` (DCP), resumable at any world size.

Under FSDP2 every parameter is a DTensor holding 1/world of the weights, so no single rank can write the model
with safetensors. Every rank instead writes its own shards of the model and the optimizer into one DCP folder; DCP
records each shard's global offsets, so a later run with a different number of ranks (or one process, unsharded)
reads back exactly the pieces it owns. Beside the shards, rank 0 writes the full weights as model.safetensors
(gathered once at save time), so `load_run`, evaluation and export keep working on an FSDP checkpoint as on any
other.

    step_000500/{dcp/{.metadata, __0_0.distcp, ...}, model.safetensors, trainer_state.json, config.yaml, tokenizer.json}

The folder is written under a temporary name and renamed into place by rank 0 after every rank has finished,
then `latest` is swapped, as in `checkpoint.save_checkpoint` (a crash leaves the previous checkpoint pointed to).
DDP and single-process runs keep the plain format of `checkpoint.py` (and its bit-exact resume).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    get_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)

DCP_DIR = "dcp"


def is_sharded(model: torch.nn.Module) -> bool:
    """True when FSDP2 (fully_shard) has turned the parameters into DTensors."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def is_dcp(ckpt: str | Path) -> bool:
    return (Path(ckpt) / DCP_DIR / ".metadata").is_file()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) weights on CPU on rank 0 (a collective: every rank calls it), tied copies dropped."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if _rank() != 0:
        return None
    seen, keep = set(), {}
    for name, p in model.named_parameters(remove_duplicate=False):  # tied weights (head = embedding) once
        if id(p) in seen:
            full.pop(name, None)
        seen.add(id(p))
    for name, t in full.items():
        keep[name] = t.contiguous()
    return keep


def save_checkpoint(
    run_dir: Path, step: int, model, optimizer, state: dict, cfg, tokenizer, keep: int, name: str | None = None
) -> Path:
    """Every rank calls this. Writes checkpoints/step_N/ (see the module docstring) and points `latest` at it."""
    from latentlm.config import to_yaml
    from latentlm.train import checkpoint as ckpt_io

    root = Path(run_dir) / ckpt_io.CKPT_DIR
    final = root / (name or ckpt_io.step_name(step))
    tmp = root / f".tmp-dcp-{final.name}"  # one name for all ranks (a pid would differ between them)
    if _rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)  # sharded (DTensor) views, no copy
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR))
    weights = full_weights(model)
    if _rank() == 0:
        save_file(weights, str(tmp / "model.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        (tmp / "config.yaml").write_text(to_yaml(cfg))
        tokenizer.save(tmp)
        ckpt_io.write_manifest(tmp)  # version + sha256 of the rank-0 files, verified on load like any checkpoint
        ckpt_io.publish(tmp, final, keep)
    _barrier()
    return final


def load_sharded(ckpt: str | Path, model: torch.nn.Module, optimizer) -> None:
    """Read model and optimizer state from a DCP checkpoint into this run's layout, whatever its world size:
    FSDP2-sharded at any number of ranks, or a plain module in one process. Every rank calls it."""
    model_sd, optim_sd = get_state_dict(model, optimizer)  # the target layout: DCP fills these in place
    target = {"model": model_sd, "optim": optim_sd}
    dcp.load(target, checkpoint_id=str(Path(ckpt) / DCP_DIR))
    set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"])


def load_training_state(ckpt: Path, model, optimizer, device) -> dict:
    """`checkpoint.load_training_state` for a DCP checkpoint: weights, optimizer state, trainer state and RNG."""
    from latentlm.train.checkpoint import set_rng_state

    load_sharded(ckpt, model, optimizer)
    state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    set_rng_state(state["rng"])
    return state


def wrap_restoring(model: torch.nn.Module, optimizer, ckpt: Path | None, wrap, build_optimizer):
    """(train_model, optimizer) = wrap(), keeping the resumed optimizer state when wrapping shards the model.

    FSDP2 replaces the parameters by DTensor shards, so an optimizer built on the plain parameters is rebuilt on
    the shards (`build_optimizer()`) and its state restored: from the DCP shards of an FSDP checkpoint (any world
    size), or, for a plain checkpoint (a DDP or one-process run resumed under FSDP), by sharding the full state
    that was loaded before wrapping. DDP and one-process runs get `optimizer` back untouched.
    """
    full_osd = None
    if ckpt is not None and not is_dcp(ckpt) and optimizer.state:  # FQN-keyed views of the loaded state, no copy
        full_osd = get_optimizer_state_dict(model, optimizer)
    train_model = wrap()
    if not is_sharded(model):
        return train_model, optimizer
    optimizer = build_optimizer()
    if ckpt is not None and is_dcp(ckpt):
        load_sharded(ckpt, model, optimizer)
    elif full_osd is not None:
        opts = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, optimizer, optim_state_dict=full_osd, options=opts)
    return train_model, optimizer
