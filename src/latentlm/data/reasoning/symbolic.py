"""Symbolic multi-hop tasks generated here: ProsQA-style graphs (Coconut), ProntoQA-style deduction, k-hop pointer
chasing, and k-step state tracking in S5. Each generator takes a `random.Random` and keyword options (integers)."""

from __future__ import annotations

import random

import numpy as np

from latentlm.data.reasoning.types import ReasoningExample
from latentlm.errors import ConfigError

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


def perm_example(rng: random.Random, k: int = 5, stride: int = 1) -> ReasoningExample:
    """k-step state tracking in S5, the task on which a small model needs its chain: a start state in 0..4 and k
    permutations from PERM_OPS applied left to right, `3 A , C , B , E , D ?`; the steps are the k running
    states, the answer the last. Why a chain is needed: the answer is the word problem of S5 (a non-solvable
    group), NC1-complete (Barrington 1989), which constant-depth transformers cannot solve in one forward pass
    unless TC0 = NC1 (Merrill & Sabharwal 2023; Liu et al. 2023 "Transformers learn shortcuts to automata"); with
    k = 5 there are 5^5 op words x 5 starts, far more than a training set covers. With the chain, each step is one
    look-up in a 5 x 5 table from two tokens at fixed offsets (the previous state, 2 back; its operation, at a
    constant distance because the operations are comma-separated and k is fixed). `stride` > 1 writes only every
    stride-th state (k / stride steps), so each step composes `stride` operations in one forward pass: a chain
    whose steps are hard for a small model, where a latent thought has something to add."""
    if not 1 <= k <= 12:
        raise ConfigError(f"perm: k must be in 1..12 (got {k})")
    if stride < 1 or k % stride:
        raise ConfigError(f"perm: stride must be >= 1 and divide k (got k={k}, stride={stride})")
    x = rng.randrange(5)
    ops = [rng.choice(sorted(PERM_OPS)) for _ in range(k)]
    question, values = f"{x} " + " , ".join(ops) + " ?", []
    for op in ops:
        x = PERM_OPS[op][x]
        values.append(str(x))
    return ReasoningExample(question, values[stride - 1 :: stride], values[-1])
