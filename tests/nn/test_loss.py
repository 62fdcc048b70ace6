import pytest
import torch
import torch.nn.functional as F

from latentlm.nn.loss import linear_cross_entropy
from tests.conftest import tiny_gpt_config


@pytest.mark.parametrize("rows", [3, 16, 1000])  # several chunks with a ragged last one, and a single chunk
def test_fused_head_cross_entropy_matches_float64_reference(rows):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 24, generator=g, requires_grad=True)
    w = (0.3 * torch.randn(50, 24, generator=g)).requires_grad_()
    y = torch.randint(0, 50, (37,), generator=g)
    y[[0, 5, 36]] = -100
    loss = linear_cross_entropy(h, w, y, rows=rows)
    loss.backward()
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, y, ignore_index=-100)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h.grad.double(), h64.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.grad.double(), w64.grad, atol=1e-6, rtol=1e-5)
    assert h.grad[[0, 5, 36]].abs().max() == 0  # ignored rows get no gradient


def test_fused_loss_all_ignored_is_nan_like_cross_entropy():
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    y = torch.full((4,), -100)
    assert torch.isnan(linear_cross_entropy(h, w, y)) and torch.isnan(F.cross_entropy(h @ w.T, y))


def test_gpt_training_loss_and_gradients_unchanged_by_the_fused_head():
    from latentlm.models.gpt import GPT

    model = GPT(tiny_gpt_config(vocab_size=97)).train()  # tied head: the weight gradient sums head and embedding parts
    x = torch.randint(0, 97, (3, 20))
    y = x.roll(-1, 1)
    y[:, -1] = -100
    out = model(x, labels=y)
    assert out.logits is None  # the fused path ran
    out.loss.backward()
    fused = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    logits = model(x).logits
    ref = model.lm_loss(logits, y)
    ref.backward()
    torch.testing.assert_close(out.loss, ref, atol=1e-6, rtol=1e-6)
    for k, p in model.named_parameters():
        torch.testing.assert_close(fused[k], p.grad, atol=1e-6, rtol=1e-4, msg=k)


def test_hf_labels_shifted_once_give_the_naive_next_token_loss():
    """HF-style labels (labels == input_ids, some ignored) through shift_labels + lm_loss equal a naive loop over
    positions: mean over t of -log softmax(logits[b, t])[labels[b, t + 1]] where labels[b, t + 1] is kept."""
    from latentlm.nn.loss import IGNORE_INDEX, count_targets, lm_loss, shift_labels

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 11, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 11, (2, 6), generator=g)
    labels[0, 2] = labels[1, 5] = IGNORE_INDEX
    terms = [
        -logits[b, t].log_softmax(-1)[labels[b, t + 1]]
        for b in range(2)
        for t in range(5)
        if labels[b, t + 1] != IGNORE_INDEX
    ]
    shifted = shift_labels(labels)
    assert shifted.shape == labels.shape and (shifted[:, -1] == IGNORE_INDEX).all()
    assert count_targets(shifted) == len(terms) == 8
    torch.testing.assert_close(lm_loss(logits, shifted).double(), torch.stack(terms).mean(), rtol=1e-6, atol=1e-6)
