"""Data parallelism under torchrun: DDP or FSDP2 (gloo on CPU, nccl on CUDA); FSDP2 checkpoints go through train/dcp.py.

The model stays plain PyTorch; parallelism is applied from outside (torchtitan style).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from latentlm.models import variant_spec


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # created by init_distributed (a caller's own process group is left alone)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE set); no-op otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def wrap_model(model: torch.nn.Module, info: DistInfo, strategy: str, device: torch.device) -> torch.nn.Module:
    """The variant's spec names what to wrap: its FSDP units (the transformer blocks; for latent thoughts the base
    model's decoder layers) and whether DDP must look for parameters a step leaves unused."""
    if not info.enabled:
        return model
    spec = variant_spec(model.config)
    if strategy == "fsdp":  # FSDP2: shard each unit, then the root (gloo on CPU, nccl on CUDA; train/dcp.py saves)
        from torch.distributed.fsdp import fully_shard

        for unit in fsdp_units(model):
            fully_shard(unit)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    unused = bool(spec.ddp_find_unused_parameters(model))  # e.g. an adapter in a batch without latents
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)


def fsdp_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The submodules FSDP2 shards one by one before the root, from the variant's spec."""
    units = list(variant_spec(model.config).shard_units(model))
    if not units:
        raise ValueError(f"variant {model.config.variant!r} names no FSDP units (VariantSpec.shard_units)")
    return units


@contextlib.contextmanager
def no_sync(model: torch.nn.Module):
    """Skip the gradient all-reduce of this micro-batch: DDP's no_sync, FSDP2's set_requires_gradient_sync."""
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel as DDP

    if isinstance(model, DDP):
        with model.no_sync():
            yield
    elif isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def cleanup(info: DistInfo) -> None:
    if info.enabled and info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
