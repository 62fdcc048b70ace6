"""Run directories and checkpoints, the reading side: find, verify and load what `latentlm train` wrote.

    runs/<name>/config.yaml  metrics.jsonl  tb/  tokenizer.json  train_summary.json  results.json
    runs/<name>/checkpoints/step_000500/{model.safetensors, optimizer.pt, trainer_state.json, config.yaml,
                                         tokenizer.json, manifest.json}
    runs/<name>/checkpoints/latest -> step_000500

Every checkpoint carries `manifest.json`: the latentlm version that wrote it and the sha256 of every file, verified
here on load; a latest checkpoint that fails verification (truncated, corrupted) is skipped for the previous one,
with a warning. The writer (temporary folder, manifest, atomic rename, retention) is train/checkpoint.py; this
module sits below train/ so that `latentlm.load`, the evaluators and the exporter never import the trainer.
`load_run` builds the model through the variant registry (models/) and the variant's `adopt_checkpoint` hook.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_model

from latentlm.config import RunConfig, load_config
from latentlm.errors import InputError

CKPT_DIR, LATEST, MANIFEST = "checkpoints", "latest", "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def find_checkpoint(path: str | Path) -> Path | None:
    """A checkpoint folder, or the latest checkpoint of a run directory; None if the run has none yet."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    latest = path / CKPT_DIR / LATEST
    return latest.resolve() if latest.exists() else None


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


def checkpoint_step(ckpt: Path) -> int:
    try:
        return int(json.loads((Path(ckpt) / "trainer_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return int(Path(ckpt).name.rsplit("_", 1)[-1]) if Path(ckpt).name.startswith("step_") else -1


def load_config_of(path: str | Path) -> RunConfig:
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise InputError(f"{path} holds no checkpoint")
    return load_config(ckpt / "config.yaml")


def load_run(path: str | Path, device: str | torch.device = "cpu", overrides: dict | None = None):
    """(model, tokenizer) from a run directory or a checkpoint folder, needing nothing else. `overrides` (a nested
    dict, e.g. {"model": {"latent_embedding": "soft"}}) change the run's config before the model is built (how it
    decodes; a change of the weights' shapes is refused by the load)."""
    from latentlm.data.tokenizer import Tokenizer
    from latentlm.models import variant_spec

    path = Path(path)
    if not path.exists():
        raise InputError(f"run directory not found: {path}")
    ckpt = usable_checkpoint(path, ("model.safetensors", "config.yaml", "tokenizer.json"), check=_check_weights)
    if ckpt is None:
        raise InputError(
            f"{path} holds no checkpoint yet; train it first with `latentlm train CONFIG --train.out_dir={path}`"
        )
    cfg = load_config(ckpt / "config.yaml", overrides)
    spec = variant_spec(cfg.model)
    if spec.adopt_checkpoint is not None:  # the variant takes what the checkpoint holds (e.g. its base record)
        spec.adopt_checkpoint(cfg.model, ckpt)
    model = spec.build(cfg.model)
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
