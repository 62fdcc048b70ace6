"""The generated reasoning sets by name: options parsed from `name:key=value,...`, splits balanced and seeded."""

from __future__ import annotations

import inspect
import random
from pathlib import Path

from latentlm.data.reasoning.files import load_examples
from latentlm.data.reasoning.gsm import gsm_examples
from latentlm.data.reasoning.symbolic import hops_example, perm_example, prontoqa_example, prosqa_example
from latentlm.data.reasoning.types import ReasoningExample
from latentlm.errors import ConfigError

GENERATORS = {"prosqa": prosqa_example, "prontoqa": prontoqa_example, "hops": hops_example, "perm": perm_example}
BALANCE = {"prosqa": "gold_first", "prontoqa": "true_answer"}
"""Choice tasks: the keyword that fixes the gold option's position (ProsQA) or label (ProntoQA), balanced to exactly
50 % per generated split."""


def _balanced(rng: random.Random, n: int) -> list[bool]:
    """n flags, exactly half True (n even; one more False when n is odd), in random order."""
    flags = [True] * (n // 2) + [False] * (n - n // 2)
    rng.shuffle(flags)
    return flags


def parse_task(name: str) -> tuple[str, dict]:
    """`prosqa:n_nodes=23,max_steps=6` -> ("prosqa", {"n_nodes": 23, "max_steps": 6}); options are the generator's
    keyword arguments (integers)."""

    base, _, opts = name.partition(":")
    kwargs = {}
    if base in GENERATORS and opts:
        allowed = [p for p in inspect.signature(GENERATORS[base]).parameters if p not in ("rng", BALANCE.get(base))]
        for item in opts.split(","):
            key, _, value = item.partition("=")
            if key not in allowed or not value.strip().lstrip("-").isdigit():
                raise ConfigError(
                    f"data.reasoning={name!r}: bad option {item!r}; {base} takes integer options {', '.join(allowed)}"
                )
            kwargs[key] = int(value)
    return base, kwargs


def generated_examples(name: str, n: int, seed: int) -> list[ReasoningExample]:
    base, kwargs = parse_task(name)
    if base == "gsm":
        return gsm_examples(n, seed)
    make = GENERATORS.get(base)
    if make is None:
        raise ConfigError(
            f"unknown reasoning set {name!r}; known: gsm, {', '.join(GENERATORS)} (options as prosqa:n_nodes=23), "
            "or a path to a .jsonl/.txt file"
        )
    rng = random.Random(seed)
    if base in BALANCE:
        return [make(rng, **kwargs, **{BALANCE[base]: flag}) for flag in _balanced(rng, n)]
    return [make(rng, **kwargs) for _ in range(n)]


def reasoning_examples(name: str, split: str, n: int, seed: int) -> list[ReasoningExample]:
    """Generated sets get disjoint seeds per split; files are split 90/10 by position."""
    if Path(name).suffix in (".jsonl", ".txt"):
        items = load_examples(name)
        cut = max(1, len(items) * 9 // 10)
        return items[:cut] if split == "train" else items[cut:] or items[-1:]
    return generated_examples(name, n, seed * 7 + {"train": 0, "val": 1, "test": 2}[split])
