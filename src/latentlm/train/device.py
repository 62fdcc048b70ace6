"""What this machine can run: train.precision / train.compile / train.dist checked before any work starts.

Each check raises one ConfigError naming the field, the value asked for and what the machine supports, so the
CLI prints one `error:` line and exits 2 instead of failing deep inside autocast, inductor or a process group.
"""

from __future__ import annotations

import shutil

import torch
import torch.distributed as dist

from latentlm.errors import ConfigError


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # native bf16 arithmetic (AVX512-BF16 or AMX); emulated bf16 is ~30x slower
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()) or bool(
            getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def compile_supported(device: torch.device) -> tuple[bool, str]:
    """(ok, why not): inductor generates C++ on CPU and Triton kernels on CUDA."""
    if device.type == "cpu":
        cxx = next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        return cxx is not None, "no C++ compiler (g++/clang++) on PATH for inductor's CPU backend"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "triton is not installed (inductor's CUDA backend)"
        return True, ""
    return False, f"torch.compile is untested on {device.type}"


def supported(device: torch.device) -> dict:
    """A summary of what the machine supports, as printed in the error lines."""
    return {
        "precision": ["fp32", "bf16"] if bf16_supported(device) else ["fp32"],
        "compile": [False, True] if compile_supported(device)[0] else [False],
        "dist": ["ddp (gloo)", "fsdp (gloo)"] if device.type == "cpu" else ["ddp (nccl)", "fsdp (nccl)"],
    }


def validate_train_device(train_cfg, device: torch.device, world_size: int = 1) -> None:
    """Raise ConfigError if train.precision / train.compile / train.dist cannot run on `device`."""
    if train_cfg.precision == "bf16" and not bf16_supported(device):
        what = "this CPU has no native bf16 (AVX512-BF16/AMX)" if device.type == "cpu" else "this GPU lacks bf16"
        raise ConfigError(f"train.precision=bf16 but {what}; this machine supports train.precision=fp32 (or auto)")
    if train_cfg.compile:
        ok, why = compile_supported(device)
        if not ok:
            raise ConfigError(f"train.compile=true but {why}; this machine supports train.compile=false")
    if world_size > 1:
        if device.type == "cuda" and not dist.is_nccl_available():
            raise ConfigError(
                f"train.dist={train_cfg.dist} on CUDA needs the nccl backend, which this torch build lacks; "
                "use train.device=cpu (gloo)"
            )
        if device.type == "cpu" and not dist.is_gloo_available():
            raise ConfigError(
                f"train.dist={train_cfg.dist} on CPU needs the gloo backend, which this torch build lacks"
            )
