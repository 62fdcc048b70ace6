import pytest
import torch

from latentlm.nn.sampling import SamplingConfig, filter_logits, sample_next


def test_greedy_and_degenerate_filters_are_argmax():
    logits = torch.randn(8, 50)
    argmax = logits.argmax(-1)
    assert torch.equal(sample_next(logits, SamplingConfig(temperature=0)), argmax)
    assert torch.equal(sample_next(logits, SamplingConfig(top_k=1, seed=0), torch.Generator().manual_seed(0)), argmax)
    assert torch.equal(sample_next(logits, SamplingConfig(top_p=1e-6), torch.Generator().manual_seed(0)), argmax)


def test_top_k_and_top_p_keep_the_right_sets():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # nucleus 0.75: 0.5 alone is below, 0.5 + 0.3 reaches it -> keep two
    assert torch.isinf(filter_logits(logits, top_p=0.75)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.85)).tolist() == [[False, False, False, True]]


def test_sampling_frequencies_follow_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, 4)
    cfg = SamplingConfig(temperature=0.7, seed=3)
    ids = sample_next(logits, cfg, cfg.generator())
    freq = torch.bincount(ids, minlength=4).float() / ids.numel()
    torch.testing.assert_close(freq, (logits[0] / 0.7).softmax(-1), atol=0.015, rtol=0)


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(4, 100)
    cfg = SamplingConfig(temperature=1.0, top_p=0.9, seed=11)
    g1, g2 = cfg.generator(), cfg.generator()
    a = [sample_next(logits, cfg, g1) for _ in range(5)]
    b = [sample_next(logits, cfg, g2) for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_sampling_values_raise():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1)
