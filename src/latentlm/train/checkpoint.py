"""Checkpoints and run directories (DESIGN.md "Run directory").

    runs/<name>/config.yaml  metrics.jsonl  tb/  tokenizer.json  train_summary.json  results.json
    runs/<name>/checkpoints/step_000500/{model.safetensors, optimizer.pt, trainer_state.json, config.yaml, tokenizer.json}
    runs/<name>/checkpoints/latest -> step_000500

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
import hashlib
import io
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from latentlm.config import RunConfig, load_config, to_yaml
from latentlm.errors import InputError
from latentlm.train import hooks

CKPT_DIR, LATEST, MANIFEST = "checkpoints", "latest", "manifest.json"


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
        extras = getattr(model, "save_checkpoint_extras", None)  # optional model hook: files beside the weights
        if extras is not None:
            extras(tmp)
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(ckpt: Path) -> None:
    from latentlm import __version__

    files = {p.name: sha256_file(p) for p in sorted(ckpt.iterdir()) if p.is_file() and p.name != MANIFEST}
    (ckpt / MANIFEST).write_text(json.dumps({"latentlm": __version__, "sha256": files}, indent=1))


def read_manifest(ckpt: Path) -> dict | None:
    f = Path(ckpt) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{f} is corrupted (not JSON)") from None


def verify_checkpoint(ckpt: Path, files: tuple[str, ...] | None = None) -> None:
    """Raise InputError if a file of the checkpoint is missing or its sha256 differs from the manifest.
    Checkpoints written before manifests existed are accepted as they are (their loaders still check)."""
    manifest = read_manifest(ckpt)
    names = (files(ckpt) if callable(files) else files) or ("model.safetensors", "config.yaml")
    for name in names:
        if not (ckpt / name).is_file():
            raise InputError(f"checkpoint {ckpt} is incomplete: {name} is missing")
    if manifest is None:
        return
    for name in names:
        want = manifest.get("sha256", {}).get(name)
        if want is not None and sha256_file(ckpt / name) != want:
            raise InputError(
                f"checkpoint file {ckpt / name} is corrupted (sha256 differs from {MANIFEST}; truncated or modified)"
            )


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first (`latest` first when it exists)."""
    root = Path(run_dir) / CKPT_DIR
    steps = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True)
    latest = root / LATEST
    if latest.exists():
        first = latest.resolve()
        steps = [first] + [p for p in steps if p.resolve() != first]
    return steps


def usable_checkpoint(path: str | Path, files: tuple[str, ...] | None = None, check=None) -> Path | None:
    """The newest checkpoint of a run directory that verifies (or the given checkpoint folder, verified); a
    damaged latest checkpoint is skipped for the previous one with a warning on stderr. `check(ckpt)` may add a
    loader's own test (e.g. that optimizer.pt unpickles). None when the run has no checkpoint."""
    path = Path(path)
    if (path / "model.safetensors").is_file() or (path / "trainer_state.json").is_file():
        verify_checkpoint(path, files)
        if check is not None:
            check(path)
        return path
    candidates = checkpoints(path)
    if not candidates:
        return None
    first_error = None
    for ckpt in candidates:
        try:
            verify_checkpoint(ckpt, files)
            if check is not None:
                check(ckpt)
        except InputError as e:
            first_error = first_error or e
            continue
        if first_error is not None:
            print(f"warning: {first_error}; using the previous checkpoint {ckpt}", file=sys.stderr)
        return ckpt
    if len(candidates) == 1:
        raise first_error
    raise InputError(f"{first_error}; no earlier checkpoint of {path} loads either")


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
    ckpt = usable_checkpoint(path, ("model.safetensors", "config.yaml", "tokenizer.json"), check=_check_weights)
    if ckpt is None:
        raise InputError(
            f"{path} holds no checkpoint yet; train it first with `latentlm train CONFIG --train.out_dir={path}`"
        )
    cfg = load_config(ckpt / "config.yaml")
    adopt = getattr(cfg.model, "adopt_checkpoint", None)  # optional config hook: use what the checkpoint holds
    if adopt is not None:
        adopt(ckpt)
    model = build_model(cfg.model)
    load_weights(model, ckpt, device)
    model.to(device).eval()
    model.run_config = cfg  # the resolved config travels with the model for evaluation
    model.checkpoint_path = ckpt  # and where it came from (results.json provenance)
    return model, Tokenizer.load(ckpt)


def _check_weights(ckpt: Path) -> None:
    """The safetensors header parses; without a manifest (older checkpoints) also every tensor is finite (a bit
    flip in an exponent gives Inf/NaN). With one, the sha256 already vouches for every byte."""
    from safetensors import safe_open

    file = ckpt / "model.safetensors"
    full = read_manifest(ckpt) is None
    try:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys() if full else ():
                t = f.get_tensor(name)
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise InputError(f"checkpoint file {file} is corrupted: tensor {name} holds NaN/Inf")
    except InputError:
        raise
    except Exception as e:  # SafetensorError (truncated header/data) or a failed mmap
        raise InputError(f"checkpoint file {file} is corrupted or truncated ({str(e).splitlines()[0]})") from None


def load_weights(model, ckpt: Path, device) -> None:
    """load_model with clear errors: a checkpoint of another architecture names the differing model fields."""
    file = ckpt / "model.safetensors"
    try:
        load_model(model, str(file), device=str(device))
    except RuntimeError as e:
        diff = _model_diff(ckpt, model)
        if diff or "size mismatch" in str(e) or "Missing key" in str(e) or "Unexpected key" in str(e):
            raise InputError(
                f"checkpoint {ckpt} has another architecture than this config ({diff or str(e).splitlines()[0]}); "
                "use the run's own config or another --train.out_dir"
            ) from None
        raise InputError(f"checkpoint file {file} cannot be loaded ({str(e).splitlines()[0]})") from None
    except Exception as e:  # SafetensorError
        raise InputError(f"checkpoint file {file} is corrupted or truncated ({str(e).splitlines()[0]})") from None


def _model_diff(ckpt: Path, model) -> str:
    from latentlm.config import to_dict

    try:
        saved = to_dict(load_config(ckpt / "config.yaml").model)
        now = to_dict(model.config)
    except Exception:
        return ""
    keys = [k for k in saved if k in now and saved[k] != now[k]]
    return ", ".join(f"model.{k}={saved[k]!r} there, {now[k]!r} here" for k in keys[:4])


def load_config_of(path: str | Path) -> RunConfig:
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise InputError(f"{path} holds no checkpoint")
    return load_config(ckpt / "config.yaml")


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


def checkpoint_step(ckpt: Path) -> int:
    try:
        return int(json.loads((Path(ckpt) / "trainer_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return int(Path(ckpt).name.rsplit("_", 1)[-1]) if Path(ckpt).name.startswith("step_") else -1


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
