"""GSM-style word problems from reasoning-gym's GSM-Symbolic templates (derived from GSM8K; seeded)."""

from __future__ import annotations

import re

from latentlm.data.reasoning.types import ReasoningExample
from latentlm.errors import InputError


def gsm_examples(n: int, seed: int, max_steps: int = 4, max_chars: int = 400) -> list[ReasoningExample]:
    """GSM-style word problems with step-by-step solutions: reasoning-gym's `gsm_symbolic` (templates derived from
    GSM8K; seeded). Steps are the lines of its GSM8K-style solution before `####`; long problems are skipped."""
    try:
        import reasoning_gym
    except ImportError:
        raise InputError(
            "GSM-style data needs reasoning-gym: pip install 'latentlm[reasoning]' (make setup installs it)"
        ) from None
    out: list[ReasoningExample] = []
    size = n * 4
    for item in reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed):
        cot = item["metadata"].get("answer_cot", "").split("####")[0]
        steps = [line.strip() for line in cot.split("\n") if line.strip()]
        question = item["question"].replace(" Give the result as your final answer. Do not include units.", "").strip()
        if not steps or len(steps) > max_steps or len(question) + sum(map(len, steps)) > max_chars:
            continue
        if any(re.match(r"^(\d+\.|\u2022|Let's|Therefore)", s_) for s_ in steps):
            continue  # the few templates with bulleted essays rather than GSM8K-style equations
        out.append(ReasoningExample(question, steps, str(item["answer"])))
        if len(out) == n:
            break
    return out
