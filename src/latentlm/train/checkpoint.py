"""Checkpoints, the writing side (and the trainer's resume); the reading side is latentlm/rundir.py, re-exported here.

A checkpoint is written into a temporary folder and renamed into place; `latest` is then swapped atomically,
so a crash at any moment leaves the previous checkpoint intact and pointed to. Each checkpoint carries
`manifest.json`: the latentlm version that wrote it and the sha256 of every file, verified on load; a latest
checkpoint that fails verification (truncated, corrupted) is skipped for the previous one, with a warning. A write
that fails (disk full, permissions) removes its partial `.tmp-*` folder and raises one InputError; stale `.tmp-*`
folders of killed processes are removed when the next training starts (`clean_stale`).
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model

from latentlm.config import RunConfig, to_yaml
from latentlm.errors import InputError
from latentlm.models import variant_spec
from latentlm.rundir import (  # noqa: F401  (the reading side, re-exported for the trainer and older imports)
    CKPT_DIR,
    LATEST,
    MANIFEST,
    _check_weights,
    checkpoint_step,
    checkpoints,
    find_checkpoint,
    load_config_of,
    load_run,
    load_weights,
    read_manifest,
    sha256_file,
    usable_checkpoint,
    verify_checkpoint,
)
from latentlm.train import hooks


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path, step: int, model, optimizer, state: dict, cfg: RunConfig, tokenizer, keep: int
) -> Path:
    root = Path(run_dir) / CKPT_DIR
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        hooks.checkpoint_writing(step, tmp)  # installed hooks only (the crash tests' faults); none in production
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        (tmp / "config.yaml").write_text(to_yaml(cfg))
        tokenizer.save(tmp)
        if (extras := variant_spec(model.config).save_checkpoint_extras) is not None:  # files beside the weights
            extras(model, tmp)
        write_manifest(tmp)
    except Exception as e:  # OSError; safetensors (SafetensorError) and torch.save (RuntimeError) wrap write errors
        shutil.rmtree(tmp, ignore_errors=True)
        prev = find_checkpoint(run_dir)
        kept = f"the previous checkpoint {prev} is intact" if prev else "no earlier checkpoint exists"
        why = "disk full" if _is_enospc(e) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise InputError(
            f"could not write the checkpoint of step {step} to {root} ({why}); {kept}; free space or fix the "
            "folder, then rerun the same command to resume"
        ) from None
    return publish(tmp, final, keep)


def publish(tmp: Path, final: Path, keep: int) -> Path:
    """Rename a fully written checkpoint folder into place, point `latest` at it (atomic), apply retention."""
    root = final.parent
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


def _is_enospc(e: BaseException) -> bool:
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e) or "os error 28" in str(e)


def clean_stale(run_dir: Path) -> list[Path]:
    """Remove the leftovers of killed writers (`.tmp-*`, `.old-*`, `.latest.tmp` under checkpoints/). Call only
    while holding the run-directory lock, so no live writer's folder is removed."""
    root = Path(run_dir) / CKPT_DIR
    gone = []
    for p in list(root.glob(".tmp-*")) + list(root.glob(".old-*")) + list(root.glob(f".{LATEST}.tmp")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


# --- integrity -----------------------------------------------------------------------------------------------


def write_manifest(ckpt: Path) -> None:
    from latentlm import __version__

    files = {p.name: sha256_file(p) for p in sorted(ckpt.iterdir()) if p.is_file() and p.name != MANIFEST}
    (ckpt / MANIFEST).write_text(json.dumps({"latentlm": __version__, "sha256": files}, indent=1))


def _retain(root: Path, keep: int) -> None:
    latest = (root / LATEST).resolve().name
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)


TRAINING_FILES = ("model.safetensors", "optimizer.pt", "trainer_state.json", "config.yaml", "tokenizer.json")


def _check_training_files(ckpt: Path) -> None:
    from latentlm.train import dcp as dcp_io

    _check_weights(ckpt)
    if dcp_io.is_dcp(ckpt):  # FSDP2: the optimizer state lives in the torch.distributed.checkpoint shards
        return
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"checkpoint file {ckpt / 'trainer_state.json'} is corrupted (not JSON)") from None
    if read_manifest(ckpt) is None:  # no checksums: at least the optimizer state must unpickle
        try:
            torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(
                f"checkpoint file {ckpt / 'optimizer.pt'} is corrupted ({str(e).splitlines()[0]})"
            ) from None


def resumable_checkpoint(path: str | Path) -> Path | None:
    """The newest checkpoint whose every training file verifies; falls back past damaged ones with a warning."""
    from latentlm.train import dcp as dcp_io

    def files_of(ckpt):  # a sharded (DCP) checkpoint has no optimizer.pt
        return tuple(f for f in TRAINING_FILES if f != "optimizer.pt") if dcp_io.is_dcp(ckpt) else TRAINING_FILES

    return usable_checkpoint(path, files_of, check=_check_training_files)


def load_training_state(ckpt: Path, model, optimizer, device) -> dict:
    from latentlm.train import dcp as dcp_io  # FSDP2 checkpoints: torch.distributed.checkpoint shards

    if dcp_io.is_dcp(ckpt):
        return dcp_io.load_training_state(ckpt, model, optimizer, device)
    load_weights(model, ckpt, device)
    try:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    except ValueError as e:  # another parameter layout
        raise InputError(
            f"the optimizer state of {ckpt} does not fit this model ({str(e).splitlines()[0]}); "
            "use the run's own config or another --train.out_dir"
        ) from None
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
