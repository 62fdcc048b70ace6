"""The reasoning example: a question, its chain of steps, the answer (every task and file loader produces these)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReasoningExample:
    question: str
    steps: list[str] = field(default_factory=list)
    answer: str = ""
