"""A look-up drill for pretraining a tiny model before CoT-SFT on the `hops` task (data/reasoning.py).

A `hops` example supervises about four look-ups (`x > y`: find the fact whose head is x, copy its tail) per row,
the rest of its targets being copies; a randomly initialised model sees too few of them to form the in-context
look-up circuit (an induction head with offset 2) in the steps a CPU allows. The drill writes the same facts
(same vocabulary, same `x > y.` format, same shuffling) and walks *every* chain to its end, from the heads named in
the question (in the words of `hops` questions, so a `hops` tokenizer covers it), so each row supervises
chains x length look-ups in exactly the step format of `hops`:

    a > b. d > e. b > c. e > f. Start a hops 2? Start d hops 2?
    a > b / b > c / d > e / e > f / ### f

It is pretraining data only (the papers start from a pretrained LM that already has look-up heads); the study's
train and test items are plain `hops` examples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from latentlm.data.reasoning import NODES, ReasoningExample


def drill_example(rng: random.Random, chains: int = 3, length: int = 5) -> ReasoningExample:
    nodes = rng.sample(NODES, chains * (length + 1))
    paths = [nodes[i * (length + 1) : (i + 1) * (length + 1)] for i in range(chains)]
    facts = [f"{x} > {y}." for p in paths for x, y in zip(p, p[1:])]
    rng.shuffle(facts)
    question = " ".join(facts) + "".join(f" Start {p[0]} hops {length}?" for p in paths)
    steps = [f"{x} > {y}" for p in paths for x, y in zip(p, p[1:])]
    return ReasoningExample(question, steps, paths[-1][-1])


def write_drill(path: str | Path, n: int, seed: int, **kwargs) -> Path:
    """n drill examples as a reasoning jsonl file ({"question", "steps", "answer"} per line)."""
    rng, path = random.Random(seed), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            ex = drill_example(rng, **kwargs)
            f.write(json.dumps({"question": ex.question, "steps": ex.steps, "answer": ex.answer}) + "\n")
    return path
