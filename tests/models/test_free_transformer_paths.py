"""The path-finding stand-in task (latentlm.data.graph_paths): graphs, checker and supervision."""

import itertools

import numpy as np

from latentlm.data.corpora import build_tokenizer
from latentlm.data.graph_paths import GraphPathSource, GraphPathTask, all_paths, check_path


def brute_force_paths(ex):
    nodes = sorted({n for e in ex["edges"] for n in e})
    edges = set(ex["edges"])
    out = []
    for k in range(len(nodes) - 1):
        for mid in itertools.permutations([n for n in nodes if n not in (ex["start"], ex["target"])], k):
            p = [ex["start"], *mid, ex["target"]]
            if all((a, b) in edges for a, b in zip(p, p[1:])):
                out.append(p)
    return sorted(out)


def test_every_graph_has_a_path_and_dfs_finds_exactly_the_valid_ones():
    task = GraphPathTask(layers=2, width=3)
    for i in range(30):
        ex = task.sample(np.random.default_rng([0, 0, i]))
        paths = all_paths(ex["edges"], ex["start"], ex["target"])
        assert paths and paths == brute_force_paths(ex)
        assert all(check_path("".join(p) + "\n", ex) for p in paths)
        assert ex["path"] in paths


def test_checker_rejects_wrong_endpoints_missing_edges_and_garbage():
    ex = {"edges": [("a", "b"), ("b", "c"), ("a", "d")], "start": "a", "target": "c"}
    assert check_path("abc\n", ex) and check_path("abc\nzz", ex)
    for bad in ("ac\n", "bc\n", "ab\n", "adc\n", "abcc\n", "", "a\n", "xyz"):
        assert not check_path(bad, ex), bad


def test_only_the_answer_and_its_newline_are_supervised_and_prompts_align():
    task = GraphPathTask()
    tok = build_tokenizer("chars", 97)
    src = GraphPathSource(task, tok, 4, seed=0, split="train")
    b = src.next_batch()
    assert b["input_ids"].shape == (4, task.seq_len)
    for r in range(4):
        ex = src.example(r)
        sup = [t for t in b["labels"][r].tolist() if t != -100]
        assert tok.decode(sup) == "".join(ex["path"]) + "\n"
        assert tok.decode(b["input_ids"][r, : task.prompt_len].tolist()).endswith("=")  # "=" at a fixed position
