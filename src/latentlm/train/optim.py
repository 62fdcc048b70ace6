"""AdamW with decay / no-decay parameter groups, and learning-rate schedules."""

from __future__ import annotations

import math

import torch

from latentlm.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, no_decay_params=None) -> torch.optim.AdamW:
    """Weight decay on matrices (linears, embeddings); none on norms, biases, scalars, vectors and the matrices
    in `no_decay_params`: by default those the variant's spec exempts (`VariantSpec.no_weight_decay`; pass () for a
    module that is not a registered variant)."""
    if no_decay_params is None:
        from latentlm.models import variant_spec

        if not isinstance(getattr(getattr(model, "config", None), "variant", None), str):
            raise TypeError(
                f"build_optimizer: {type(model).__name__} is not a latentlm variant (no config.variant), so it has no "
                "spec to read weight-decay exemptions from; pass no_decay_params=() (or the parameters to exempt)"
            )
        no_decay_params = variant_spec(model.config).no_weight_decay(model)
    exempt = {id(p) for p in no_decay_params}
    decay, no_decay = [], []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in exempt else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel (CPU and CUDA) updates each tensor in one pass with no temporaries: 4x faster than foreach on
    # CPU and no optimizer-step memory peak. FSDP2's sharded (DTensor) parameters keep the foreach path.
    params = decay + no_decay
    fused = all(type(p) is torch.nn.Parameter and p.device.type in ("cpu", "cuda") for p in params)
    kind = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **kind)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then the chosen schedule."""
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    # wsd: warmup, stable at peak, linear decay over the final decay_fraction of training
    decay_steps = max(1, round(cfg.max_steps * cfg.decay_fraction))
    decay_start = cfg.max_steps - decay_steps
    if step < decay_start:
        return peak
    return peak + (floor - peak) * min(1.0, (step - decay_start + 1) / decay_steps)
