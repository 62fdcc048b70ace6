"""Checkpoints and run directories (DESIGN.md "Run directory").

    runs/<name>/config.yaml  metrics.jsonl  tb/  tokenizer.json  train_summary.json  results.json
    runs/<name>/checkpoints/step_000500/{model.safetensors, optimizer.pt, trainer_state.json, config.yaml, tokenizer.json}
    runs/<name>/checkpoints/latest -> step_000500

A checkpoint is written into a temporary folder and renamed into place; `latest` is then swapped atomically,
so a crash at any moment leaves the previous checkpoint intact and pointed to.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from latentlm.config import RunConfig, load_config, to_yaml
from latentlm.errors import InputError

CKPT_DIR, LATEST = "checkpoints", "latest"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path, step: int, model, optimizer, state: dict, cfg: RunConfig, tokenizer, keep: int
) -> Path:
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    _fault("kill_in_checkpoint", step)  # test hook: die mid-write
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    (tmp / "config.yaml").write_text(to_yaml(cfg))
    tokenizer.save(tmp)
    if getattr(cfg.model, "variant", None) == "latent_thoughts":  # the base's architecture + hash, beside the weights
        from latentlm.models.latent_thoughts.base import save_base_record

        save_base_record(model, tmp)
    if final.exists():  # re-saving a step (after a resume): move the old one aside first
        old = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    link = root / f".{LATEST}.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(final.name)
    os.replace(link, root / LATEST)
    _retain(root, keep)
    return final


def _retain(root: Path, keep: int) -> None:
    latest = (root / LATEST).resolve().name
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path | None:
    """A checkpoint folder, or the latest checkpoint of a run directory; None if the run has none yet."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    latest = path / CKPT_DIR / LATEST
    return latest.resolve() if latest.exists() else None


def load_run(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a run directory or a checkpoint folder, needing nothing else."""
    from latentlm.data.tokenizer import Tokenizer
    from latentlm.models import build_model

    path = Path(path)
    if not path.exists():
        raise InputError(f"run directory not found: {path}")
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise InputError(
            f"{path} holds no checkpoint yet; train it first with `latentlm train CONFIG --train.out_dir={path}`"
        )
    cfg = load_config(ckpt / "config.yaml")
    if (ckpt / "base" / "source.json").is_file():  # latent_thoughts: the checkpoint's own base record
        cfg.model.base_model = str(ckpt / "base")
    model = build_model(cfg.model)
    load_model(model, str(ckpt / "model.safetensors"), device=str(device))
    model.to(device).eval()
    model.run_config = cfg  # the resolved config travels with the model for evaluation
    return model, Tokenizer.load(ckpt)


def load_config_of(path: str | Path) -> RunConfig:
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise InputError(f"{path} holds no checkpoint")
    return load_config(ckpt / "config.yaml")


def load_training_state(ckpt: Path, model, optimizer, device) -> dict:
    load_model(model, str(ckpt / "model.safetensors"), device=str(device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    set_rng_state(state["rng"])
    return state


# --- RNG state as JSON ---------------------------------------------------------------------------------------


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": _b64(_tensor_bytes(torch.get_rng_state())),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(_tensor_bytes(s)) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_bytes_tensor(s) for s in state["cuda"]])


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, t.numpy())
    return buf.getvalue()


def _bytes_tensor(s: str) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(base64.b64decode(s)), allow_pickle=False))


def _fault(name: str, step: int) -> None:
    """Fault injection for the crash tests: LATENTLM_FAULT=kill_in_checkpoint:4 SIGKILLs at that point."""
    spec = os.environ.get("LATENTLM_FAULT", "")
    if spec == f"{name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
