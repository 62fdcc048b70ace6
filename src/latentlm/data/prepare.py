"""`latentlm data prepare NAME`: one entry point for everything that must be prepared offline.

Corpora (shakespeare, or a path) are tokenized into shards. Everything else (a pretrained base model, task sets) is
a preparer in PREPARERS: NAME -> a function of the data root that writes its files and returns where. Data-only
preparers live in data/ and are listed here; a layer above (an evaluator's task sets, a variant's assets) adds its
own with `register_preparer` when it is imported, so this module imports nothing above data/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from latentlm.data.corpora import data_root, prepare_tokens
from latentlm.data.pretrained import prepare_smollm2

Preparer = Callable[[Path], Path]
"""data root -> what it wrote."""

PREPARERS: dict[str, Preparer] = {"smollm2": prepare_smollm2}


def register_preparer(name: str, fn: Preparer) -> None:
    """Make `latentlm data prepare NAME` run fn(data root). A name already taken by a function defined elsewhere is
    an error (re-importing the registering module is not)."""
    old = PREPARERS.get(name)
    if old is not None and _origin(old) != _origin(fn):
        raise ValueError(f"data preparer {name!r} is already registered by {_origin(old)}")
    PREPARERS[name] = fn


def _origin(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def prepare(
    name: str, tokenizer: str = "bpe", vocab_size: int = 2048, val_fraction: float = 0.05, force: bool = False
) -> Path:
    if name in PREPARERS:
        return PREPARERS[name](data_root())
    return prepare_tokens(name, tokenizer, vocab_size, val_fraction, force=force)
