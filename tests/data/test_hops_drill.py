import json
import random

from latentlm.data.hops_drill import drill_example, write_drill
from latentlm.data.reasoning import load_examples, reasoning_examples, word_tokenizer


def test_drill_walks_every_chain_through_the_facts_in_hops_words(tmp_path):
    ex = drill_example(random.Random(3), chains=3, length=5)
    facts = dict(f.rstrip(".").split(" > ") for f in ex.question.split("Start")[0].strip().split(". "))
    heads = [w.split()[0] for w in ex.question.split("Start ")[1:]]
    assert len(facts) == 15 and len(ex.steps) == 15 and len(heads) == 3
    walk = []
    for h in heads:  # an independent walk through the stated facts
        for _ in range(5):
            walk.append(f"{h} > {facts[h]}")
            h = facts[h]
    assert ex.steps == walk and ex.answer == h
    tok = word_tokenizer(reasoning_examples("hops", "val", 2000, 4242))  # a hops vocabulary covers the drill
    ids = tok.encode(ex.question + " " + " ".join(ex.steps))
    assert 0 not in ids  # no unknown word (id 0 is end-of-text / unknown)
    path = write_drill(tmp_path / "d.jsonl", 4, seed=1)
    assert [e.steps for e in load_examples(path)] == [json.loads(x)["steps"] for x in path.read_text().splitlines()]
