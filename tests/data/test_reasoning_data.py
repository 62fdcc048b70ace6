"""Reasoning data for latent thoughts: balanced choice sets, the paper-shaped ProsQA, ProntoQA depth, the k-hop task,
the word-level tokenizer and the file loader's errors."""

import random
from collections import Counter

import pytest

from latentlm.data.reasoning import (
    _distances,
    generated_examples,
    hops_example,
    load_examples,
    parse_task,
    word_tokenizer,
)
from latentlm.errors import ConfigError, InputError


def options(ex):
    a, b = ex.question.rsplit(" Is ", 1)[1].rstrip("?").split(" a ", 1)[1].split(" or ")
    return a, b


def test_gold_position_and_labels_are_balanced_to_exactly_half_per_split():
    for seed in (0, 1):
        pq = generated_examples("prosqa", 40, seed)
        gold = [ex.answer.split(" is a ")[1].rstrip(".") for ex in pq]
        firsts = [options(ex)[0] == g for ex, g in zip(pq, gold)]
        assert all(g in options(ex) for ex, g in zip(pq, gold))
        assert sum(firsts) == 20
        pro = generated_examples("prontoqa:hops=2", 30, seed)
        assert Counter(ex.answer for ex in pro) == {"True": 15, "False": 15}


def rebuild(ex):
    """The graph from the question's facts: node -> children (names), and the root entity."""
    facts = ex.question.rsplit(" Is ", 1)[0].split(". ")
    children = {}
    for f in facts:
        f = f.rstrip(".").removeprefix("Every ")
        x, y = f.split(" is a ")
        children.setdefault(x, []).append(y)
    return children


def test_prosqa_has_the_papers_shape_and_its_steps_are_a_shortest_path():
    exs = generated_examples("prosqa", 60, 3)
    steps = Counter(len(ex.steps) for ex in exs)
    assert set(steps) <= {3, 4, 5, 6} and steps[3] + steps[4] > steps[5] + steps[6]
    nodes, edges = [], []
    for ex in exs:
        ch = rebuild(ex)
        names = set(ch) | {y for ys in ch.values() for y in ys}
        nodes.append(len(names))
        edges.append(sum(map(len, ch.values())))
        entity = ex.answer.split(" is a ")[0]
        target = ex.answer.split(" is a ")[1].rstrip(".")
        index = {n: i for i, n in enumerate(sorted(names))}
        dist = _distances({index[x]: [index[y] for y in ch.get(x, [])] for x in names}, index[entity])
        assert dist[index[target]] == len(ex.steps)  # the chain is a shortest path
        a, b = options(ex)
        other = b if a == target else a
        assert index[other] not in dist  # the distractor is unreachable
    assert 21 <= sum(nodes) / len(nodes) <= 23.5 and 28 <= sum(edges) / len(edges) <= 40
    short = generated_examples("prosqa:n_nodes=12,min_steps=1,max_steps=2", 10, 0)
    assert {len(ex.steps) for ex in short} <= {1, 2}


def test_prontoqa_depth_is_configurable():
    for hops in (1, 4):
        ex = generated_examples(f"prontoqa:hops={hops}", 2, 0)[0]
        assert len(ex.steps) == hops + 1


def test_hops_answer_is_k_lookups_away():
    rng = random.Random(0)
    for _ in range(30):
        ex = hops_example(rng)
        edges = dict(tuple(f.strip().split(" > ")) for f in ex.question.split(" Start ")[0].split(".") if f.strip())
        start, k = ex.question.split(" Start ")[1].rstrip("?").split(" hops ")
        node = start
        for i in range(int(k)):
            assert ex.steps[i] == f"{node} > {edges[node]}"
            node = edges[node]
        assert ex.answer == node and len(ex.steps) == int(k)


def test_task_options_are_checked():
    assert parse_task("prosqa:n_nodes=23,max_steps=6") == ("prosqa", {"n_nodes": 23, "max_steps": 6})
    with pytest.raises(ConfigError, match="bad option 'depth=3'"):
        parse_task("prontoqa:depth=3")
    with pytest.raises(ConfigError, match="unknown reasoning set"):
        generated_examples("nosuch", 2, 0)


def test_word_tokenizer_round_trips_answers_and_keeps_the_vocabulary_small():
    exs = generated_examples("prosqa", 20, 0) + generated_examples("hops", 20, 0)
    tok = word_tokenizer(exs)
    assert tok.vocab_size < 400
    for ex in exs:
        ids = tok.encode("### " + ex.answer)
        assert tok.eos_id not in ids  # nothing unknown
        assert " ".join(tok.decode(ids).split()) == "### " + ex.answer
    assert tok.encode("Tom is a wumpus.\n")[-2:] == [tok.token_id("."), tok.token_id("\n")]


def test_reasoning_file_errors_name_the_line_and_the_field(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text('{"question": "q", "answer": "1", "steps": ["a"]}\n{"question": "q2", "steps": []}\n')
    with pytest.raises(InputError, match=r"data.jsonl:2: missing field 'answer'"):
        load_examples(f)
    f.write_text('{"question": "q", "answer": "  ", "steps": ["a"]}\n')
    with pytest.raises(InputError, match=r"data.jsonl:1: empty 'answer'"):
        load_examples(f)
    t = tmp_path / "icot.txt"
    t.write_text("q||<<1+1=2>> #### 2\nno separator here\n")
    with pytest.raises(InputError, match=r"icot.txt:2: malformed"):
        load_examples(t)


def test_perm_task_tracks_the_state_and_its_operations_generate_s5():
    from latentlm.data.reasoning import PERM_OPS, perm_example

    group, frontier = {tuple(range(5))}, [tuple(range(5))]
    while frontier:  # closure of the five permutations under composition
        nxt = []
        for g in frontier:
            for p in PERM_OPS.values():
                h = tuple(p[g[i]] for i in range(5))
                if h not in group:
                    group.add(h)
                    nxt.append(h)
        frontier = nxt
    assert len(group) == 120  # all of S5: a non-solvable group, so the word problem is NC1-complete
    rng = random.Random(1)
    for _ in range(20):
        ex = perm_example(rng, k=5)
        tokens = ex.question.rstrip(" ?").split(" ")
        x, ops = int(tokens[0]), tokens[1::2]
        assert len(ops) == 5 and all(t == "," for t in tokens[2::2])
        for op, step in zip(ops, ex.steps):
            x = PERM_OPS[op][x]
            assert step == str(x)
        assert ex.answer == ex.steps[-1]
    for stride in (2, 3):  # a strided chain writes every stride-th running state of the same draw
        full, short = perm_example(random.Random(7), k=6), perm_example(random.Random(7), k=6, stride=stride)
        assert short.question == full.question and short.answer == full.answer
        assert short.steps == full.steps[stride - 1 :: stride] and len(short.steps) == 6 // stride
    with pytest.raises(ConfigError, match="stride must be >= 1 and divide k"):
        perm_example(rng, k=5, stride=2)


def _cfg(reasoning, exclude, seed=0):
    from types import SimpleNamespace

    return SimpleNamespace(
        data=SimpleNamespace(reasoning=reasoning, reasoning_exclude=str(exclude)), train=SimpleNamespace(seed=seed)
    )


def _write(path, examples):
    import json

    path.write_text("".join(json.dumps({"question": e.question, "steps": e.steps, "answer": e.answer}) + "\n"
                            for e in examples))  # fmt: skip
    return path


def test_excluded_questions_never_reach_training_and_the_count_is_kept(tmp_path):
    from latentlm.data.reasoning import reasoning_examples
    from latentlm.data.reasoning.source import excluding

    # perm:k=1 has only 25 distinct questions, so 60 draws repeat most of them
    test = reasoning_examples("perm:k=1", "test", 60, 3)
    banned = {e.question for e in test[:12]}
    assert 5 <= len(banned) < 25
    cfg = _cfg("perm:k=1", _write(tmp_path / "test.jsonl", test[:12]))
    drawn = reasoning_examples("perm:k=1", "train", 40, 0)
    assert any(e.question in banned for e in drawn)  # the exclusion has something to remove
    kept = excluding(cfg, drawn, "train", 40)
    assert len(kept) == 40 and not any(e.question in banned for e in kept)
    # the first n allowed items in draw order: a prefix of the larger draw, filtered
    ref = [e for e in reasoning_examples("perm:k=1", "train", 400, 0) if e.question not in banned][:40]
    assert [(e.question, e.answer) for e in kept] == [(e.question, e.answer) for e in ref]


def test_excluding_every_question_is_one_input_error_naming_the_fix(tmp_path):
    from latentlm.data.reasoning import reasoning_examples
    from latentlm.data.reasoning.source import excluding

    every = [e for e in reasoning_examples("perm:k=1", "test", 2000, 5)]
    assert len({e.question for e in every}) == 25
    cfg = _cfg("perm:k=1", _write(tmp_path / "all.jsonl", every))
    with pytest.raises(InputError, match=r"only 0 of 10 train examples .* lower data.reasoning_examples"):
        excluding(cfg, reasoning_examples("perm:k=1", "train", 10, 0), "train", 10)
    user = _write(tmp_path / "user.jsonl", every[:5])
    cfg = _cfg(str(user), user)
    with pytest.raises(InputError, match=r"every train example of .* nothing is left"):
        excluding(cfg, load_examples(user), "train", 5)
