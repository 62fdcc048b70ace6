"""Reasoning and synthetic-task data, generated offline, and the trainer data sources that serve them.

`build_reasoning_source(cfg, tokenizer, split, rank, world_size)` picks the task named by `data.reasoning`
from REASONING_TASKS. Every source follows the data-source protocol of latentlm.data and can also yield
held-out batches for evaluation (`eval_batches`).

Sections:
1. The Free Transformer's synthetic task (Fleuret 2025, "The Free Transformer", §4).
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
        return self._batch(self.take())

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
NODES = [a + b for a in SYLLABLES for b in SYLLABLES if a != b]  # 182 one-word symbols for the k-hop task


def _concept(rng: random.Random, used: set[str]) -> str:
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(2)) + "pus"
        if name not in used:
            used.add(name)
            return name


PROSQA_STEPS = {3: 202, 4: 217, 5: 69, 6: 12}
"""Shortest-path lengths of the answer in Coconut's ProsQA test set (counts over its 500 items)."""


def _balanced(rng: random.Random, n: int) -> list[bool]:
    """n flags, exactly half True (n even; one more False when n is odd), in random order."""
    flags = [True] * (n // 2) + [False] * (n - n // 2)
    rng.shuffle(flags)
    return flags


def prosqa_example(
    rng: random.Random,
    n_nodes: int = 23,
    min_steps: int = 3,
    max_steps: int = 6,
    gold_first: bool | None = None,
) -> ReasoningExample:
    """ProsQA-style (Coconut App. A.2, Alg. 1): a random DAG grown from two roots; is the entity (root 0) an A or a
    B, where A is a leaf reachable only from root 0 and B one reachable only from root 1? Steps: one shortest path
    root -> A, one sentence per edge; its length is drawn in [min_steps, max_steps] (the paper's test set: 3-6,
    mean 3.8; 23 nodes and 36 edges on average). `gold_first` puts A first among the options (random if None)."""
    if not 1 <= min_steps <= max_steps or n_nodes < 4:
        raise ConfigError(
            f"prosqa: need 1 <= min_steps <= max_steps and n_nodes >= 4 (got {n_nodes}, {min_steps}, {max_steps})"
        )
    dists = [d for d in PROSQA_STEPS if min_steps <= d <= max_steps] or list(range(min_steps, max_steps + 1))
    weights = [PROSQA_STEPS.get(d, 1.0) for d in dists]
    want = rng.choices(dists, weights=weights)[0]  # the answer's path length, as distributed in the paper's test set
    for _ in range(10000):
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
            labels.append(int(np.bitwise_or.reduce([labels[c] for c in chosen])))
            depth.append(1 + max(depth[c] for c in chosen))
        children = {i: [j for j in range(n_nodes) if i in parents[j]] for i in range(n_nodes)}
        dist = _distances(children, 0)
        leaves_a = [i for i in range(2, n_nodes) if labels[i] == 1 and not children[i]]
        leaves_a = [i for i in leaves_a if dist.get(i, -1) == want]
        leaves_b = [i for i in range(2, n_nodes) if labels[i] == 2 and not children[i]]
        if leaves_a and leaves_b:
            break
    else:
        raise ConfigError(
            f"prosqa: no graph with a {min_steps}-{max_steps}-step answer in 10000 tries at {n_nodes} nodes"
        )
    used: set[str] = set()
    people = rng.sample(PEOPLE, 2)
    names = people + [_concept(rng, used) for _ in range(2, n_nodes)]

    def fact(p: int, c: int) -> str:
        return f"{names[p]} is a {names[c]}." if p < 2 else f"Every {names[p]} is a {names[c]}."

    facts = [fact(p, c) for c in range(n_nodes) for p in parents[c]]
    rng.shuffle(facts)
    a, b = rng.choice(leaves_a), rng.choice(leaves_b)
    path = _path(children, 0, a)
    first = rng.random() < 0.5 if gold_first is None else gold_first
    opts = [names[a], names[b]] if first else [names[b], names[a]]
    question = " ".join(facts) + f" Is {names[0]} a {opts[0]} or {opts[1]}?"
    steps = [fact(p, c) for p, c in zip(path, path[1:])]
    return ReasoningExample(question, steps, f"{names[0]} is a {names[a]}.")


def _distances(children: dict, src: int) -> dict[int, int]:
    dist, frontier = {src: 0}, [src]
    while frontier:
        nxt = []
        for u in frontier:
            for v in children[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


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


def prontoqa_example(rng: random.Random, hops: int = 3, true_answer: bool | None = None) -> ReasoningExample:
    """ProntoQA-style deduction: a chain of `hops` + 1 fictional concepts, a property at its end, distractor rules;
    is the statement about the entity true or false? Steps: pairs of sentences, as Coconut's preprocessing makes
    them (Coconut's ProntoQA is 5-hop). `true_answer` fixes the label (random if None)."""
    if hops < 1:
        raise ConfigError(f"prontoqa: hops must be >= 1 (got {hops})")
    used: set[str] = set()
    chain = [_concept(rng, used) for _ in range(hops + 1)]
    prop, other = rng.sample(["red", "bright", "small", "sour", "wooden", "liquid"], 2)
    negated = rng.random() < 0.5
    true = rng.random() < 0.5 if true_answer is None else true_answer
    asked_negated = negated if true else not negated
    person = rng.choice(PEOPLE)
    rules = [f"Every {x} is a {y}." for x, y in zip(chain, chain[1:])]
    rules.append(f"Every {chain[-1]} is {'not ' if negated else ''}{prop}.")
    rules += [f"Every {_concept(rng, used)} is a {rng.choice(chain)}." for _ in range(2)]
    rules.append(f"Every {rng.choice(chain[:-1])} is {other}.")
    rng.shuffle(rules)
    question = (
        " ".join(rules)
        + f" {person} is a {chain[0]}. True or false: {person} is {'not ' if asked_negated else ''}{prop}."
    )
    steps = [f"{person} is a {x}. Every {x} is a {y}." for x, y in zip(chain, chain[1:])]
    steps.append(f"{person} is a {chain[-1]}. Every {chain[-1]} is {'not ' if negated else ''}{prop}.")
    return ReasoningExample(question, steps, "True" if true else "False")


def hops_example(
    rng: random.Random, chains: int = 3, length: int = 5, min_hops: int = 3, max_hops: int = 5
) -> ReasoningExample:
    """k-hop pointer chasing, the task on which a small model needs its chain: `chains` disjoint chains of `length`
    edges over one-word symbols, written as shuffled facts `x > y.`; the question names a chain's head and k (drawn
    in [min_hops, max_hops]); the answer is the node k edges further. Each hop is one lookup whose key is the
    previous hop's result, so the k lookups are strictly sequential: with the chain written out (steps `x > y`, one
    per hop) every step is a single copy from the context, without it the model must compose k dependent lookups
    inside one forward pass (an L-layer transformer resolves O(2^L) hops at best, Sanford, Hsu & Telgarsky 2024)."""
    if not 1 <= min_hops <= max_hops <= length or chains < 1 or chains * (length + 1) > len(NODES):
        raise ConfigError(
            f"hops: need 1 <= min_hops <= max_hops <= length and chains * (length + 1) <= {len(NODES)} "
            f"(got chains={chains}, length={length}, hops {min_hops}-{max_hops})"
        )
    nodes = rng.sample(NODES, chains * (length + 1))
    paths = [nodes[i * (length + 1) : (i + 1) * (length + 1)] for i in range(chains)]
    facts = [f"{x} > {y}." for p in paths for x, y in zip(p, p[1:])]
    rng.shuffle(facts)
    head, k = paths[0], rng.randint(min_hops, max_hops)
    question = " ".join(facts) + f" Start {head[0]} hops {k}?"
    return ReasoningExample(question, [f"{x} > {y}" for x, y in zip(head[:k], head[1 : k + 1])], head[k])


PERM_OPS = {  # five fixed permutations of 0..4 (image of 0, 1, 2, 3, 4); together they generate S5
    "A": (1, 2, 3, 4, 0),
    "B": (1, 0, 2, 3, 4),
    "C": (0, 2, 4, 1, 3),
    "D": (3, 1, 0, 4, 2),
    "E": (4, 3, 2, 0, 1),
}


def perm_example(rng: random.Random, k: int = 5) -> ReasoningExample:
    """k-step state tracking in S5, the task on which a small model needs its chain: a start state in 0..4 and k
    permutations from PERM_OPS applied left to right, `3 A , C , B , E , D ?`; the steps are the k running
    states, the answer the last. Why a chain is needed: the answer is the word problem of S5 (a non-solvable
    group), NC1-complete (Barrington 1989), which constant-depth transformers cannot solve in one forward pass
    unless TC0 = NC1 (Merrill & Sabharwal 2023; Liu et al. 2023 "Transformers learn shortcuts to automata"); with
    k = 5 there are 5^5 op words x 5 starts, far more than a training set covers. With the chain, each step is one
    look-up in a 5 x 5 table from two tokens at fixed offsets (the previous state, 2 back; its operation, at a
    constant distance because the operations are comma-separated and k is fixed)."""
    if not 1 <= k <= 12:
        raise ConfigError(f"perm: k must be in 1..12 (got {k})")
    x = rng.randrange(5)
    ops = [rng.choice(sorted(PERM_OPS)) for _ in range(k)]
    question, values = f"{x} " + " , ".join(ops) + " ?", []
    for op in ops:
        x = PERM_OPS[op][x]
        values.append(str(x))
    return ReasoningExample(question, values, values[-1])


GENERATORS = {"prosqa": prosqa_example, "prontoqa": prontoqa_example, "hops": hops_example, "perm": perm_example}
BALANCE = {"prosqa": "gold_first", "prontoqa": "true_answer"}
"""Choice tasks: the keyword that fixes the gold option's position (ProsQA) or label (ProntoQA), balanced to exactly
50 % per generated split."""


def parse_task(name: str) -> tuple[str, dict]:
    """`prosqa:n_nodes=23,max_steps=6` -> ("prosqa", {"n_nodes": 23, "max_steps": 6}); options are the generator's
    keyword arguments (integers)."""
    import inspect

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


WORD_PUNCT = ".?,:;!"


def word_tokenizer(examples, specials=("<bot>", "<eot>", "<latent>", "<thinking>")):
    """A word-level tokenizer over the words of `examples` (questions, steps, answers, `###`, newline): words split
    on spaces, the punctuation marks .?,:;! and newlines their own tokens; `<|endoftext|>` is id 0 (also unknown),
    then `specials`. Decoding joins words with spaces and re-attaches punctuation (WordPiece clean-up), so a decoded
    answer equals the gold text up to whitespace."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    from latentlm.data.tokenizer import EOS, Tokenizer

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"[\n.?,:;!]"), behavior="isolated"),
        ]
    )
    words: dict[str, None] = {"###": None, "\n": None}
    for ex in examples:
        for text in (ex.question, *ex.steps, ex.answer):
            for w, _ in split.pre_tokenize_str(text):
                words[w] = None
    vocab = {EOS: 0, **{t: i + 1 for i, t in enumerate(specials)}}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = split
    tok.decoder = decoders.WordPiece(prefix="\u0000", cleanup=True)
    tok.add_special_tokens([EOS, *specials])
    return Tokenizer(tok, eos_token=EOS)


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
    "hops": build_examples_source,
    "perm": build_examples_source,
}


def build_reasoning_source(cfg, tokenizer, split: str, rank: int = 0, world_size: int = 1):
    name = cfg.data.reasoning
    if Path(name).suffix in (".jsonl", ".txt"):
        return build_examples_source(cfg, tokenizer, split, rank, world_size)
    if parse_task(name)[0] not in REASONING_TASKS:
        raise ConfigError(f"unknown data.reasoning={name!r}; known: {', '.join(REASONING_TASKS)}")
    return REASONING_TASKS[parse_task(name)[0]](cfg, tokenizer, split, rank, world_size)
