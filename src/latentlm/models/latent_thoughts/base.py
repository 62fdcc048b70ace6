"""The pretrained causal LM under latent thoughts: locating it, loading it, special tokens.

A base model is a local folder (save_pretrained layout) or an HF hub id, resolved by huggingface_hub as transformers
does (the local cache; downloaded only when online: tests and CI use local folders with HF_HUB_OFFLINE=1), or a
name prepared under the data root by `latentlm data prepare smollm2` (latentlm.data.pretrained).
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentlm.data.pretrained import PREPARED_MODELS
from latentlm.errors import InputError

SPECIAL_TOKENS = ("<bot>", "<eot>", "<latent>", "<thinking>")
NAMED = PREPARED_MODELS
BASE_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]  # what a hub snapshot needs here


def resolve_base(spec: str) -> Path:
    from latentlm.data.corpora import data_root

    if spec in NAMED:
        path = data_root() / NAMED[spec]
        if not (path / "config.json").is_file():
            raise InputError(f"base model {spec!r} is not prepared at {path}; run `latentlm data prepare {spec}`")
        return path
    from latentlm.data.tokenizer import HUB_ID, resolve_pretrained

    if not Path(spec).exists() and not HUB_ID.match(str(spec)):
        raise InputError(
            f"model.base_model={spec!r}: no HF model folder there and not a hub id; give a local path, an HF hub id "
            f"(org/name) or one of {', '.join(NAMED)} (prepared with `latentlm data prepare NAME`)"
        )
    path = resolve_pretrained(spec, "model.base_model", BASE_FILES)  # a local folder, or the snapshot in the HF cache
    if not (path / "config.json").is_file():
        raise InputError(
            f"model.base_model={spec!r}: no HF model folder (config.json) at {path}; give a local path, an HF hub id "
            f"or one of {', '.join(NAMED)} (prepared with `latentlm data prepare NAME`)"
        )
    return path


WEIGHTS = ("*.safetensors", "*.bin", "*.gguf")


def save_base_record(model, out_dir: Path) -> Path:
    """out_dir/base: what a latent_thoughts checkpoint needs to be loaded without its base model folder.

    The checkpoint's model.safetensors already holds every weight (base and adapter); this adds the base's
    architecture (config.json, generation_config.json), its tokenizer, and source.json naming the base by spec, path
    and the sha256 of its weight files (the reference by hash). `load_base` on such a folder builds the architecture
    only, and the checkpoint supplies the weights."""
    import json

    out = Path(out_dir) / "base"
    out.mkdir(parents=True, exist_ok=True)
    model.base.config.save_pretrained(out)
    if getattr(model.base, "generation_config", None) is not None:
        model.base.generation_config.save_pretrained(out)
    model.tokenizer.save(out)
    cached = getattr(model, "_base_source", None)  # the base's files do not change during a run: hash them once
    if cached is None or cached[0] != model.config.base_model:
        src = resolve_base(model.config.base_model)
        if (Path(src) / "source.json").is_file():  # loaded from a record: keep the reference to the original base
            source = json.loads((Path(src) / "source.json").read_text())
        else:
            source = {"spec": model.config.base_model, "path": str(Path(src).resolve()), "sha256": _weights_sha256(src)}
        cached = model._base_source = (model.config.base_model, source)
    (out / "source.json").write_text(json.dumps(cached[1], indent=1))
    return out


def _weights_sha256(folder) -> dict[str, str]:
    import hashlib

    out = {}
    for pattern in WEIGHTS:
        for f in sorted(Path(folder).glob(pattern)):
            st = f.stat()
            key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
            if key not in _SHA_CACHE:
                h = hashlib.sha256()
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                _SHA_CACHE[key] = h.hexdigest()
            out[f.name] = _SHA_CACHE[key]
    return out


_SHA_CACHE: dict[tuple, str] = {}


def load_base(path: Path):
    """An HF causal LM in fp32 from a local folder; a clear error if the folder is not a causal LM.
    A folder without weight files (a checkpoint's base record, save_base_record) gives the architecture only."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cfg = AutoConfig.from_pretrained(path)
    if cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InputError(
            f"{path} is not a causal LM (its config is {type(cfg).__name__}, model_type {cfg.model_type!r})"
        )
    if (Path(path) / "source.json").is_file() and not any(any(Path(path).glob(w)) for w in WEIGHTS):
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)  # the checkpoint brings the weights
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load the causal LM at {path}: {str(e).splitlines()[0]}") from None


def add_special_tokens(
    model, tokenizer, tokens=SPECIAL_TOKENS, init_from: str = "<<", jitter: float = 1e-2
) -> list[int]:
    """Add tokens (idempotent) and give new embedding rows the embedding of `init_from` (Coconut's choice).

    Rows copied from one source give the new tokens exactly equal logits, so a greedy argmax among them would be
    decided by float noise (batched vs single-row kernels disagree). The output rows therefore get a fixed,
    seeded perturbation of relative size `jitter` (each row its own), which makes the ties strict and
    reproducible; with tied embeddings the input rows share it."""
    old = model.get_input_embeddings().weight.shape[0]
    ids = tokenizer.add_special_tokens(tokens)
    if tokenizer.vocab_size > old:
        model.resize_token_embeddings(tokenizer.vocab_size, mean_resizing=False)
        src = tokenizer.encode(init_from)[0] if tokenizer.encode(init_from) else (tokenizer.eos_id or 0)
        out = model.get_output_embeddings()
        with torch.no_grad():
            for emb in {model.get_input_embeddings(), out}:
                emb.weight[old:] = emb.weight[src]
            if out is not None and jitter > 0:
                g = torch.Generator().manual_seed(len(tokens))
                row = out.weight[src].float()
                noise = (
                    torch.randn(out.weight.shape[0] - old, row.numel(), generator=g) * row.norm() / row.numel() ** 0.5
                )
                out.weight[old:] += (jitter * noise).to(out.weight.dtype)
    return ids


def check_special_tokens(tokenizer, tokens=SPECIAL_TOKENS) -> dict[str, int]:
    missing = [t for t in tokens if tokenizer.tok.token_to_id(t) is None]
    if missing:
        raise InputError(
            f"the tokenizer is missing the special tokens {', '.join(missing)}; use the tokenizer saved "
            "with this run (latentlm.load) or add them with Tokenizer.add_special_tokens"
        )
    return {t: tokenizer.token_id(t) for t in tokens}
