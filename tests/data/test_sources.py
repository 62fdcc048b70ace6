"""Every data source follows one protocol: dict batches, fixed eval batches, exact resume, and the ranks' split of
the stream (one rule, StreamSource.take) equal to one process reading the same micro-batches."""

import numpy as np
import pytest
import torch

from latentlm.data.graph_paths import GraphPathSource, GraphPathTask
from latentlm.data.reasoning import BlockSource, BlockTask, ReasoningExample, ReasoningSource
from latentlm.data.shards import TextSource
from latentlm.data.source import DataSource
from latentlm.data.tokenizer import char_tokenizer

TOK = char_tokenizer()
EXAMPLES = [ReasoningExample(f"{i}+{i % 3}?", [f"{i}+{i % 3}={i + i % 3}"] * (i % 3), str(i + i % 3)) for i in range(7)]


class CoT:
    """A stand-in curriculum: question, steps and answer as characters, stage s drops the first s steps; the
    answer is supervised. Its state is the number of begin_phase calls (to check that it is saved)."""

    name = "cot"

    def __init__(self):
        self.calls = 0

    def render(self, index, ex, stage):
        q = TOK.encode(ex.question + "\n")
        rest = TOK.encode("".join(s + "\n" for s in ex.steps[stage:]) + ex.answer) + [TOK.eos_id]
        ids = q + rest
        return ids, [-100] * (len(q) - 1) + rest + [-100]

    def longest(self, ex):
        return len(self.render(0, ex, 0)[0])

    def phase(self, step):
        return min(step // 2, 2)

    def begin_phase(self, phase, model, examples):
        self.calls += 1

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def make(kind, micro=2, rank=0, world=1):
    if kind == "text":
        return TextSource(np.arange(500) % 90, 8, micro, seed=1, rank=rank, world_size=world)
    if kind == "blocks":
        return BlockSource(
            BlockTask(length=12, block=3), TOK, micro, seed=1, split="train", rank=rank, world_size=world
        )
    if kind == "graph_paths":
        return GraphPathSource(
            GraphPathTask(layers=2, width=2), TOK, micro, seed=1, split="train", rank=rank, world=world
        )
    return ReasoningSource(EXAMPLES, CoT(), TOK, micro, max_seq_len=64, seed=1, rank=rank, world_size=world)


KINDS = ["text", "blocks", "graph_paths", "reasoning"]


def rows(batch):
    """Each row's real tokens (right padding removed) with its labels."""
    mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
    return [
        (ids[m.bool()].tolist(), lab[m.bool()].tolist())
        for ids, lab, m in zip(batch["input_ids"], batch["labels"], mask)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_eval_batches_are_dicts_fixed_and_independent_of_the_training_position(kind):
    src = make(kind)
    assert isinstance(src, DataSource)
    first = list(src.eval_batches(3, 2))
    assert len(first) == 2
    for b in first:
        assert isinstance(b, dict) and b["input_ids"].dtype == torch.long and b["input_ids"].dim() == 2
        assert b["input_ids"].shape[0] == 3
        for key in ("labels", "attention_mask"):
            assert key not in b or b[key].shape == b["input_ids"].shape
    for _ in range(3):
        src.next_batch()
    again = list(src.eval_batches(3, 2))
    assert all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, again))


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_resumes_bit_identically(kind):
    a = make(kind)
    a.begin_phase(a.phase(4), None)
    for _ in range(5):  # past an epoch of the 7 reasoning examples
        a.next_batch()
    b = make(kind)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    for _ in range(6):
        x, y = a.next_batch(), b.next_batch()
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_read_what_one_process_reads(kind):
    """world=2 with micro-batch 1 per rank = one process with micro-batch 2, step after step."""
    single, r0, r1 = make(kind, 2), make(kind, 1, 0, 2), make(kind, 1, 1, 2)
    for _ in range(5):
        assert rows(single.next_batch()) == rows(r0.next_batch()) + rows(r1.next_batch())


def test_reasoning_examples_with_a_variant_that_has_no_curriculum_is_one_config_error():
    from latentlm.config import load_config
    from latentlm.data import build_source
    from latentlm.errors import ConfigError

    cfg = load_config(None, ["--model.variant=gpt", "--data.reasoning=prontoqa:hops=1", "--data.reasoning_examples=8"])
    with pytest.raises(ConfigError, match=r"data.reasoning='prontoqa:hops=1' .* model.variant='gpt' does not have"):
        build_source(cfg, TOK, "train")
