import numpy as np
import pytest
import torch

from latentlm.data.shards import TextSource
from latentlm.errors import InputError

TOKENS = np.arange(1000, dtype=np.uint16)


def first_tokens(src, n):
    return [int(x) for _ in range(n) for x in src.next_batch()["input_ids"][:, 0]]


def test_labels_are_inputs_shifted_by_one():
    b = TextSource(TOKENS, 10, 3, seed=1).next_batch()
    assert torch.equal(b["labels"][:, :-1], b["input_ids"][:, 1:])
    assert torch.equal(b["labels"][:, -1], b["input_ids"][:, -1] + 1)


def test_one_epoch_visits_every_window_once():
    src = TextSource(TOKENS, 10, 3, seed=1)  # 99 windows of 11 tokens at stride 10
    starts = first_tokens(src, 33)
    assert sorted(starts) == list(range(0, 990, 10))
    assert starts != sorted(starts)  # shuffled
    assert sorted(first_tokens(src, 33)) == list(range(0, 990, 10))  # the next epoch, again all


def test_ranks_split_the_stream_like_micro_batches():
    """2 ranks x 1 micro-batch of 2 see the same windows as 1 rank x 2 micro-batches of 2."""
    single = TextSource(TOKENS, 10, 2, seed=3)
    r0, r1 = (
        TextSource(TOKENS, 10, 2, seed=3, rank=0, world_size=2),
        TextSource(TOKENS, 10, 2, seed=3, rank=1, world_size=2),
    )
    for _ in range(5):
        expected = first_tokens(single, 2)
        assert first_tokens(r0, 1) + first_tokens(r1, 1) == expected


def test_state_dict_resumes_exactly():
    a = TextSource(TOKENS, 10, 4, seed=7)
    first_tokens(a, 30)  # crosses an epoch boundary
    b = TextSource(TOKENS, 10, 4, seed=7)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.next_batch()["input_ids"], b.next_batch()["input_ids"]) for _ in range(40))


def test_corpus_shorter_than_one_sequence():
    with pytest.raises(
        InputError, match=r"corpus 'tiny' has 50 training tokens, fewer than one sequence of data.seq_len\+1=65"
    ):
        TextSource(TOKENS[:50], 64, 2, name="tiny")
