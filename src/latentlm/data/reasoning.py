"""Reasoning and synthetic-task data, generated offline, and the trainer data sources that serve them.

`build_reasoning_source(cfg, tokenizer, split, rank, world_size)` picks the task named by `data.reasoning`
from REASONING_TASKS. Every source follows the data-source protocol of latentlm.data and can also yield
held-out batches for evaluation (`eval_batches`).

Sections:
1. The Free Transformer's synthetic task (Fleuret 2025, §4; see shared/research/free_transformer.md §7).
2. Reasoning examples (question, steps, answer) for latent thoughts: GSM-style word problems from reasoning-gym's
   GSM-Symbolic templates, ProsQA-style graph reasoning and ProntoQA-style deduction generated here, and a loader
   for user-supplied GSM8K / GSM8k-Aug files (jsonl, or the iCoT `question||<<a=b>> <<c=d>> #### answer` lines).
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentlm.data.shards import StreamSource
from latentlm.errors import ConfigError, InputError

# ---------------------------------------------------------------------------------------------------------
# 1. Blocks: a run of one repeated letter at a random position in noise, the letter given as prompt.
#    "K>__!____KKKKKKKK___!___..." The position is the global decision a latent Z can carry.


@dataclass(frozen=True)
class BlockTask:
    length: int = 64
    """Characters after the prompt (the sequence is `<letter>>` + body + newline)."""
    block: int = 8
    """Length of the run of the prompt letter."""
    noise: float = 1 / 16
    """Probability that a background character is replaced by the noise character."""
    background: str = "_"
    noise_char: str = "!"
    letters: str = string.ascii_uppercase

    def sample(self, rng: np.random.Generator) -> tuple[str, str, int]:
        """-> (text, letter, block start within the body)."""
        letter = self.letters[rng.integers(len(self.letters))]
        pos = int(rng.integers(self.length - self.block + 1))
        body = np.where(rng.random(self.length) < self.noise, self.noise_char, self.background).astype("<U1")
        body[pos : pos + self.block] = letter
        return f"{letter}>" + "".join(body) + "\n", letter, pos

    @staticmethod
    def block_position(body: str, letter: str, block: int) -> int | None:
        """Start of the first run of `letter` at least `block` long in a generated body (None if absent)."""
        run = 0
        for i, ch in enumerate(body):
            run = run + 1 if ch == letter else 0
            if run == block:
                return i - block + 1
        return None


class BlockSource(StreamSource):
    """Endless seeded stream of block sequences for training; a fixed held-out set for evaluation."""

    EVAL_EXAMPLES = 512

    def __init__(
        self, task: BlockTask, tokenizer, micro_batch: int, *, seed: int, split: str, rank: int = 0, world_size: int = 1
    ):
        self.task, self.tok, self.micro_batch = task, tokenizer, micro_batch
        self.seed, self.split_id = seed, {"train": 0, "val": 1}[split]
        self.rank, self.world_size, self.pos = rank, world_size, 0

    def example(self, i: int) -> torch.Tensor:
        text, _, _ = self.task.sample(np.random.default_rng([self.seed, self.split_id, i]))
        return torch.tensor(self.tok.encode(text))

    def _batch(self, indices) -> dict[str, torch.Tensor]:
        seqs = torch.stack([self.example(i) for i in indices])  # (B, length + 3)
        return {"input_ids": seqs[:, :-1].contiguous(), "labels": seqs[:, 1:].contiguous()}

    def next_batch(self) -> dict[str, torch.Tensor]:
        start = self.pos + self.rank * self.micro_batch
        self.pos += self.micro_batch * self.world_size
        return self._batch(range(start, start + self.micro_batch))

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        n = self.EVAL_EXAMPLES if max_batches is None else min(self.EVAL_EXAMPLES, batch_size * max_batches)
        for s in range(0, n, batch_size):
            yield self._batch(range(s, min(n, s + batch_size)))["input_ids"]


def build_blocks_source(cfg, tokenizer, split, rank, world_size):
    from latentlm.data import micro_batch_size

    if cfg.data.seq_len < 12:
        raise ConfigError(f"data.reasoning=blocks needs data.seq_len >= 12 (got {cfg.data.seq_len})")
    task = BlockTask(length=cfg.data.seq_len - 2)  # prompt (2) + body + newline = seq_len + 1 tokens
    return BlockSource(
        task,
        tokenizer,
        micro_batch_size(cfg, world_size),
        seed=cfg.train.seed,
        split=split,
        rank=rank,
        world_size=world_size,
    )


# ---------------------------------------------------------------------------------------------------------
# 2. Reasoning examples for latent thoughts.


@dataclass
class ReasoningExample:
    question: str
    steps: list[str] = field(default_factory=list)
    answer: str = ""


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


PEOPLE = ["Tom", "Sally", "Alex", "Mia", "Sam", "Lena", "Max", "Zoe", "Ben", "Ivy", "Leo", "Ada"]
SYLLABLES = ["wum", "gor", "zel", "yim", "brim", "tum", "jom", "fex", "lor", "quim", "vap", "dor", "kes", "rax"]


def _concept(rng: random.Random, used: set[str]) -> str:
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(2)) + "pus"
        if name not in used:
            used.add(name)
            return name


def prosqa_example(rng: random.Random, n_nodes: int = 10) -> ReasoningExample:
    """ProsQA-style (Coconut App. A.2): a random DAG from two roots; is the entity (root 0) an A or a B, where A is a
    leaf reachable only from root 0 and B one reachable only from root 1? Steps: one path, one sentence per edge."""
    while True:
        labels, depth, parents = [1, 2], [0, 0], [[], []]
        for _ in range(2, n_nodes):
            u = rng.random()
            allowed = (0, 1) if u <= 0.35 else (0, 2) if u <= 0.7 else (0, 1, 2, 3)
            cand = [i for i, lab in enumerate(labels) if lab in allowed]
            m = max(1, min(len(cand), np.random.default_rng(rng.getrandbits(32)).poisson(1.5)))
            chosen = []
            pool = cand[:]
            for _ in range(m):  # weighted sampling without replacement, favouring deep parents
                w = [1.5 * depth[c] + 1 for c in pool]
                pick = rng.choices(pool, weights=w)[0]
                chosen.append(pick)
                pool.remove(pick)
            parents.append(chosen)
            labels.append(np.bitwise_or.reduce([labels[c] for c in chosen]))
            depth.append(1 + max(depth[c] for c in chosen))
        children = {i: [j for j in range(n_nodes) if i in parents[j]] for i in range(n_nodes)}
        leaves_a = [i for i in range(2, n_nodes) if labels[i] == 1 and not children[i]]
        leaves_b = [i for i in range(2, n_nodes) if labels[i] == 2 and not children[i]]
        if leaves_a and leaves_b:
            break
    used: set[str] = set()
    people = rng.sample(PEOPLE, 2)
    names = people + [_concept(rng, used) for _ in range(2, n_nodes)]

    def fact(p: int, c: int) -> str:
        return f"{names[p]} is a {names[c]}." if p < 2 else f"Every {names[p]} is a {names[c]}."

    facts = [fact(p, c) for c in range(n_nodes) for p in parents[c]]
    rng.shuffle(facts)
    a, b = rng.choice(leaves_a), rng.choice(leaves_b)
    path = _path(children, 0, a)
    opts = [names[a], names[b]]
    rng.shuffle(opts)
    question = " ".join(facts) + f" Is {names[0]} a {opts[0]} or {opts[1]}?"
    steps = [fact(p, c) for p, c in zip(path, path[1:])]
    return ReasoningExample(question, steps, f"{names[0]} is a {names[a]}.")


def _path(children: dict, src: int, dst: int) -> list[int]:
    """A shortest path src -> dst (breadth first)."""
    prev, frontier = {src: None}, [src]
    while frontier:
        nxt = []
        for u in frontier:
            for v in children[u]:
                if v not in prev:
                    prev[v] = u
                    nxt.append(v)
        frontier = nxt
    path, node = [], dst
    while node is not None:
        path.append(node)
        node = prev[node]
    return path[::-1]


def prontoqa_example(rng: random.Random, hops: int = 3) -> ReasoningExample:
    """ProntoQA-style deduction: a chain of fictional concepts, a property at its end, distractor rules; is the
    statement about the entity true or false? Steps: pairs of sentences, as Coconut's preprocessing makes them."""
    used: set[str] = set()
    chain = [_concept(rng, used) for _ in range(hops + 1)]
    prop, other = rng.sample(["red", "bright", "small", "sour", "wooden", "liquid"], 2)
    negated = rng.random() < 0.5
    person = rng.choice(PEOPLE)
    rules = [f"Every {x} is a {y}." for x, y in zip(chain, chain[1:])]
    rules.append(f"Every {chain[-1]} is {'not ' if negated else ''}{prop}.")
    rules += [f"Every {_concept(rng, used)} is a {rng.choice(chain)}." for _ in range(2)]
    rules.append(f"Every {rng.choice(chain[:-1])} is {other}.")
    rng.shuffle(rules)
    asked_negated = rng.random() < 0.5
    question = (
        " ".join(rules)
        + f" {person} is a {chain[0]}. True or false: {person} is {'not ' if asked_negated else ''}{prop}."
    )
    steps = [f"{person} is a {x}. Every {x} is a {y}." for x, y in zip(chain, chain[1:])]
    steps.append(f"{person} is a {chain[-1]}. Every {chain[-1]} is {'not ' if negated else ''}{prop}.")
    return ReasoningExample(question, steps, "True" if negated == asked_negated else "False")


def generated_examples(name: str, n: int, seed: int) -> list[ReasoningExample]:
    if name == "gsm":
        return gsm_examples(n, seed)
    rng = random.Random(seed)
    make = {"prosqa": prosqa_example, "prontoqa": prontoqa_example}.get(name)
    if make is None:
        raise ConfigError(
            f"unknown reasoning set {name!r}; known: gsm, prosqa, prontoqa, or a path to a .jsonl/.txt file"
        )
    return [make(rng) for _ in range(n)]


def load_examples(path: str | Path) -> list[ReasoningExample]:
    """User files. jsonl: {"question", "answer", "steps": [...]} (Coconut), or "reasoning_chain" (LT-Tuning), or a
    GSM8K "answer" holding the chain and "#### answer". txt: iCoT lines `question||<<16-3-4=9>> <<9*2=18>> #### 18`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"reasoning data file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(_icot(line) if path.suffix == ".txt" else _json_example(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(
                f"{path}:{n}: malformed reasoning example ({type(e).__name__}: {e}); expected "
                '{"question", "answer", "steps"} per jsonl line or question||steps #### answer'
            ) from None
    if not out:
        raise InputError(f"{path} holds no reasoning examples")
    return out


def _json_example(row: dict) -> ReasoningExample:
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
    question, rest = line.split("||", 1)
    chain, answer = rest.rsplit("####", 1)
    return ReasoningExample(question.strip(), [s for s in chain.split(" ") if s.strip()], answer.strip())


def reasoning_examples(name: str, split: str, n: int, seed: int) -> list[ReasoningExample]:
    """Generated sets get disjoint seeds per split; files are split 90/10 by position."""
    if Path(name).suffix in (".jsonl", ".txt"):
        items = load_examples(name)
        cut = max(1, len(items) * 9 // 10)
        return items[:cut] if split == "train" else items[cut:] or items[-1:]
    return generated_examples(name, n, seed * 7 + {"train": 0, "val": 1, "test": 2}[split])


# ---------------------------------------------------------------------------------------------------------


def build_examples_source(cfg, tokenizer, split, rank, world_size):
    """Latent-thought curricula over generated or user reasoning examples (models/latent_thoughts/curriculum.py)."""
    from latentlm.data import micro_batch_size
    from latentlm.models.latent_thoughts.curriculum import ReasoningSource

    n = cfg.data.reasoning_examples if split == "train" else max(8, cfg.data.reasoning_examples // 8)
    examples = reasoning_examples(cfg.data.reasoning, split, n, cfg.train.seed)
    return ReasoningSource(
        examples,
        cfg,
        tokenizer,
        micro_batch_size(cfg, world_size),
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        split=split,
    )


REASONING_TASKS = {
    "blocks": build_blocks_source,
    "gsm": build_examples_source,
    "prosqa": build_examples_source,
    "prontoqa": build_examples_source,
}


def build_reasoning_source(cfg, tokenizer, split: str, rank: int = 0, world_size: int = 1):
    name = cfg.data.reasoning
    if Path(name).suffix in (".jsonl", ".txt"):
        return build_examples_source(cfg, tokenizer, split, rank, world_size)
    if name not in REASONING_TASKS:
        raise ConfigError(f"unknown data.reasoning={name!r}; known: {', '.join(REASONING_TASKS)}")
    return REASONING_TASKS[name](cfg, tokenizer, split, rank, world_size)
