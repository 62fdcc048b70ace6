import math

import numpy as np
import pytest
import torch

from latentlm.data.tokenizer import gpt2_tokenizer
from latentlm.eval.perplexity import evaluate_tokens
from latentlm.models.decoder import token_logprobs


class Uniform(torch.nn.Module):
    """A model whose every next-token distribution is uniform over V: loss must be exactly log V."""

    score_note = "uniform"

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def score(self, ids, attention_mask=None):
        return token_logprobs(torch.zeros(*ids.shape, self.vocab), ids)


def test_uniform_model_gives_log_v_and_exact_bits_per_byte():
    tok = gpt2_tokenizer()
    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 20
    tokens = np.asarray(tok.encode(text))
    tb = tok.token_bytes()
    res = evaluate_tokens(Uniform(tok.vocab_size), tokens, tb, seq_len=16, batch_size=3)
    n_windows = len(tokens) // 16
    assert res["tokens"] == n_windows * 15  # every token but the first of each window is predicted
    assert res["loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-6)  # log_softmax runs in fp32
    predicted = np.concatenate([tokens[w * 16 + 1 : (w + 1) * 16] for w in range(n_windows)])
    assert res["bytes"] == int(tb[predicted].sum())
    assert res["bits_per_byte"] == pytest.approx(res["tokens"] * math.log2(tok.vocab_size) / res["bytes"], rel=1e-6)
    assert res["note"] == "uniform"


def test_max_batches_limits_the_windows():
    tok = gpt2_tokenizer()
    tokens = np.arange(1000) % 500
    res = evaluate_tokens(Uniform(500), tokens, tok.token_bytes()[:500], seq_len=10, batch_size=4, max_batches=2)
    assert res["tokens"] == 2 * 4 * 9


def test_dict_batches_count_supervised_tokens_only_whatever_the_padding():
    from latentlm.eval.perplexity import evaluate_batches
    from latentlm.models.gpt import GPT
    from tests.conftest import tiny_gpt_config

    model = GPT(tiny_gpt_config()).eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16]]

    def batch(rows):
        T = max(map(len, rows))
        ids = torch.zeros(len(rows), T, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        labels = torch.full((len(rows), T), -100)
        for r, s in enumerate(rows):
            ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
            labels[r, 1 : len(s) - 1] = torch.tensor(s[2:])  # supervise everything after the first two tokens
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    tb = torch.zeros(64, dtype=torch.long) + 1
    one = evaluate_batches(model, [batch([s]) for s in seqs], tb.numpy())
    together = evaluate_batches(model, [batch(seqs)], tb.numpy())
    assert one["tokens"] == together["tokens"] == sum(len(s) - 2 for s in seqs)
    assert one["loss"] == pytest.approx(together["loss"], abs=1e-6)
