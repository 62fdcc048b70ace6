"""RUN_DIR/results.json: every evaluation merges its results under its own key ("val", "choice:piqa", ...).

A key names what was measured and on how much of it: a partial evaluation (`--max-batches`, `--limit`) carries its
scope in the key, `val[max_batches=2]`, so it sits beside the full `val` instead of replacing it; lm-eval results
are keyed by their task set (`lm_eval:a,b`). Each entry records its provenance (`provenance()`): the checkpoint,
its step and the sha256 of its weights, the split and scope, the tokenizer's fingerprint and the latentlm version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def result_key(base: str, **scope) -> str:
    """`base` for a full evaluation; `base[limit=5]` etc. when a scope argument limits it."""
    parts = [f"{k}={v}" for k, v in scope.items() if v is not None]
    return f"{base}[{','.join(parts)}]" if parts else base


def is_partial(key: str) -> bool:
    return key.endswith("]") and "[" in key


def provenance(model, tokenizer=None, **scope) -> dict:
    """Where a result came from: checkpoint, step, sha256 of model.safetensors, scope, tokenizer hash, version."""
    from latentlm import __version__
    from latentlm.rundir import checkpoint_step, read_manifest, sha256_file

    ckpt = model.checkpoint_path  # set by latentlm.load (None for an exported folder)
    out: dict = {"checkpoint": None if ckpt is None else str(ckpt)}
    if ckpt is not None:
        manifest = read_manifest(ckpt) or {}
        sha = manifest.get("sha256", {}).get("model.safetensors")
        out["step"] = checkpoint_step(ckpt)
        out["model_sha256"] = sha or sha256_file(Path(ckpt) / "model.safetensors")
    out.update(scope)
    if tokenizer is not None:
        out["tokenizer_sha256"] = tokenizer.fingerprint()
    out["latentlm"] = __version__
    return out


def merge_results(run_dir: str | Path, key: str, value, provenance: dict | None = None) -> Path:
    path = Path(run_dir) / "results.json"
    data = read_results(run_dir)
    if provenance is not None and isinstance(value, dict):
        value = {**value, "provenance": provenance}
    data[key] = value
    tmp = path.with_name(f".results.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
    return path


def read_results(run_dir: str | Path) -> dict:
    from latentlm.errors import InputError

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is corrupted (not JSON); move it aside and evaluate again") from None
    return data if isinstance(data, dict) else {}
