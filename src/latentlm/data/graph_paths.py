"""Path finding in ProsQA-style graphs, answered directly (no chain of thought): a task with many valid answers.

A layered DAG of single-letter concepts: a start node, `layers` layers of `width` nodes, a target node. The start
links to every node of the first layer; each node links to a random non-empty subset of the next layer (and
has at least one incoming edge); only some nodes of the last layer link to the target, so some branches are
dead ends. Every start -> target path has
the same length, there are usually several, and a path is checked edge by edge. The training answer is one
path drawn uniformly among all valid ones, so the answer distribution is multimodal: a model must commit to one
path and follow it, which is what a latent plan (the Free Transformer's Z) could help with.

Text (character-level): the edges in random order, then `?<start><target>=`, then the path's letters, then a
newline. The prompt is left-padded with spaces to a fixed length so every "=" sits at the same position (prompts
batch without masks); the answer is right-padded. Only the answer and its newline are supervised.

    "        kb un eu ea jf bw jw kj ge bf kg an gf je ?kn=kjean\\n" (layers=3: start k, target n)
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch

from latentlm.data.shards import StreamSource
from latentlm.errors import ConfigError
from latentlm.nn.loss import IGNORE_INDEX


@dataclass
class GraphPathTask:
    layers: int = 3
    """Intermediate layers between start and target."""
    width: int = 3
    """Nodes per layer."""
    edge_p: float = 0.5
    """Probability of each edge between consecutive layers (each node keeps at least one)."""
    target_p: float = 0.0
    """Probability that each last-layer node links to the target; one random node always does (default: only
    that one, so a uniformly random walk along edges reaches the target about 35 % of the time)."""
    letters: str = string.ascii_lowercase

    @property
    def n_edges_max(self) -> int:
        return self.width + (self.layers - 1) * self.width**2 + self.width

    @property
    def prompt_len(self) -> int:
        return 3 * self.n_edges_max + 4  # "xy " per edge, then "?st="

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.layers + 2 + 1  # path letters, newline

    def sample(self, rng: np.random.Generator) -> dict:
        n = 2 + self.layers * self.width
        names = list(rng.choice(list(self.letters), size=n, replace=False))
        start, target = names[0], names[1]
        layer = [names[2 + i * self.width : 2 + (i + 1) * self.width] for i in range(self.layers)]
        edges = [(start, v) for v in layer[0]]
        for a, b in zip(layer, layer[1:]):
            link = rng.random((self.width, self.width)) < self.edge_p  # link[i, j]: a[i] -> b[j]
            link[np.arange(self.width), rng.integers(self.width, size=self.width)] = True  # >= 1 out-edge
            link[rng.integers(self.width, size=self.width), np.arange(self.width)] = True  # >= 1 in-edge
            edges += [(u, v) for i, u in enumerate(a) for j, v in enumerate(b) if link[i, j]]
        to_t = rng.random(self.width) < self.target_p
        to_t[rng.integers(self.width)] = True
        edges += [(u, target) for u, k in zip(layer[-1], to_t) if k]
        order = rng.permutation(len(edges))
        edges = [edges[i] for i in order]
        paths = all_paths(edges, start, target)
        path = paths[rng.integers(len(paths))]
        return {"edges": edges, "start": start, "target": target, "paths": paths, "path": path}

    def prompt(self, ex: dict) -> str:
        body = "".join(f"{u}{v} " for u, v in ex["edges"]) + f"?{ex['start']}{ex['target']}="
        return " " * (self.prompt_len - len(body)) + body

    def text(self, ex: dict) -> str:
        return self.prompt(ex) + "".join(ex["path"]) + "\n"


def all_paths(edges, start: str, target: str) -> list[list[str]]:
    """Every start -> target path of the DAG, by depth-first search (sorted, for determinism)."""
    succ: dict[str, list[str]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    out = []

    def walk(node, path):
        if node == target:
            out.append(path)
            return
        for v in sorted(succ.get(node, [])):
            if v not in path:
                walk(v, path + [v])

    walk(start, [start])
    return sorted(out)


def check_path(answer: str, ex: dict) -> bool:
    """Is the generated answer (text after "=", up to the newline) a start -> target path along listed edges?"""
    nodes = list(answer.split("\n", 1)[0])
    edges = set(ex["edges"])
    return (
        len(nodes) >= 2
        and nodes[0] == ex["start"]
        and nodes[-1] == ex["target"]
        and all((a, b) in edges for a, b in zip(nodes, nodes[1:]))
    )


class GraphPathSource(StreamSource):
    """Seeded stream of path examples for training; a fixed held-out set for evaluation."""

    EVAL_EXAMPLES = 512

    def __init__(self, task: GraphPathTask, tokenizer, micro_batch: int, *, seed: int, split: str, rank=0, world=1):
        self.task, self.tok, self.micro_batch = task, tokenizer, micro_batch
        self.seed, self.split_id = seed, {"train": 0, "val": 1, "test": 2}[split]
        self.rank, self.world_size, self.pos = rank, world, 0
        self.pad = tokenizer.encode(" ")[0]

    def example(self, i: int) -> dict:
        return self.task.sample(np.random.default_rng([self.seed, self.split_id, i]))

    def _batch(self, indices) -> dict[str, torch.Tensor]:
        T = self.task.seq_len
        ids = torch.full((len(indices), T + 1), self.pad, dtype=torch.long)
        labels = torch.full((len(indices), T), IGNORE_INDEX, dtype=torch.long)
        P = self.task.prompt_len
        for r, i in enumerate(indices):
            seq = self.tok.encode(self.task.text(self.example(i)))
            ids[r, : len(seq)] = torch.tensor(seq)
            labels[r, P - 1 : len(seq) - 1] = torch.tensor(seq[P:])  # labels[t] = token t+1: answer + newline
        return {"input_ids": ids[:, :-1].contiguous(), "labels": labels}

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self._batch(self.take())

    def eval_batches(self, batch_size: int, max_batches: int | None = None):
        n = self.EVAL_EXAMPLES if max_batches is None else min(self.EVAL_EXAMPLES, batch_size * max_batches)
        for s in range(0, n, batch_size):
            yield self._batch(range(s, min(n, s + batch_size)))


def build_graph_paths_source(cfg, tokenizer, split, rank=0, world_size=1):
    from latentlm.data import micro_batch_size

    task = GraphPathTask()
    if cfg.data.seq_len < task.seq_len:
        raise ConfigError(f"data.reasoning=graph_paths needs data.seq_len >= {task.seq_len} (got {cfg.data.seq_len})")
    return GraphPathSource(
        task,
        tokenizer,
        micro_batch_size(cfg, world_size),
        seed=cfg.train.seed,
        split=split,
        rank=rank,
        world=world_size,
    )


@torch.no_grad()
def pass_at_1(model, tokenizer, task: GraphPathTask, examples: list[dict], temperature: float, seed: int = 0):
    """Generate one answer per example (prior Z for a Free Transformer) -> (correct flags, answers)."""
    from latentlm.nn import SamplingConfig

    prompts = torch.tensor([tokenizer.encode(task.prompt(ex)) for ex in examples])
    out = model.generate(prompts, task.layers + 3, SamplingConfig(temperature=temperature, seed=seed))
    answers = [tokenizer.decode(row[prompts.shape[1] :].tolist()) for row in out]
    return [check_path(a, ex) for a, ex in zip(answers, examples)], answers
