"""User-supplied reasoning files (GSM8K / GSM8k-Aug / Coconut / LT-Tuning jsonl, iCoT txt), validated line by line."""

from __future__ import annotations

import json
from pathlib import Path

from latentlm.data.reasoning.types import ReasoningExample
from latentlm.errors import InputError


def load_examples(path: str | Path) -> list[ReasoningExample]:
    """User files. jsonl: {"question", "answer", "steps": [...]} (Coconut), or "reasoning_chain" (LT-Tuning), or a
    GSM8K "answer" holding the chain and "#### answer". txt: iCoT lines `question||<<16-3-4=9>> <<9*2=18>> #### 18`.
    A missing field, an empty question or an empty answer is an InputError naming file:line and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"reasoning data file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            ex = _icot(line) if path.suffix == ".txt" else _json_example(json.loads(line))
        except KeyError as e:
            raise InputError(
                f'{where}: missing field {e}; each jsonl line needs "question" and "answer" (and "steps" or '
                '"reasoning_chain")'
            ) from None
        except (ValueError, TypeError, AttributeError) as e:
            raise InputError(
                f"{where}: malformed reasoning example ({type(e).__name__}: {e}); expected "
                '{"question", "answer", "steps"} per jsonl line or question||steps #### answer'
            ) from None
        for field_name in ("question", "answer"):
            if not getattr(ex, field_name).strip():
                raise InputError(f"{where}: empty {field_name!r}; every example needs a non-empty {field_name}")
        out.append(ex)
    if not out:
        raise InputError(f"{path} holds no reasoning examples")
    return out


def _json_example(row: dict) -> ReasoningExample:
    if not isinstance(row, dict):
        raise TypeError(f"a JSON object per line, got {type(row).__name__}")
    q, a = str(row["question"]), str(row["answer"])
    if "steps" in row:
        steps = [str(x) for x in row["steps"] if str(x).strip()]
    elif "reasoning_chain" in row:
        steps = [x.strip() for x in str(row["reasoning_chain"]).split("\n") if x.strip()]
    elif "####" in a:
        chain, a = a.rsplit("####", 1)
        steps = [x.strip() for x in chain.split("\n") if x.strip()]
    else:
        steps = []
    return ReasoningExample(q, steps, a.strip().replace(",", ""))


def _icot(line: str) -> ReasoningExample:
    if "||" not in line or "####" not in line:
        raise ValueError("an iCoT line is question||steps #### answer")
    question, rest = line.split("||", 1)
    chain, answer = rest.rsplit("####", 1)
    return ReasoningExample(question.strip(), [s for s in chain.split(" ") if s.strip()], answer.strip())
