import pytest
import torch

from latentlm.config import build
from latentlm.errors import ConfigError, InputError
from latentlm.models.decoder import token_logprobs
from latentlm.models.gpt import GPT, GPTConfig
from latentlm.nn import SamplingConfig
from tests.conftest import tiny_gpt_config


def full_recompute_greedy(model, ids, n):
    """Reference decoding without a cache: re-run the whole sequence for every new token."""
    for _ in range(n):
        nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_cached_decode_equals_full_forward(kv_heads):
    model = GPT(tiny_gpt_config(n_kv_heads=kv_heads, vocab_size=97)).eval()
    prompt = torch.randint(0, 97, (3, 5))
    got = model.generate(prompt, 40)
    assert torch.equal(got, full_recompute_greedy(model, prompt, 40))
    # logits of every cached step equal the full forward's logits at that position
    cache = model.new_cache(3, 45)
    steps = [model.step(got[:, :5], torch.arange(5)[None].expand(3, 5), cache, None)]
    for t in range(5, 44):
        steps.append(model.step(got[:, t : t + 1], torch.full((3, 1), t), cache, None))
    full = model(got[:, :44]).logits[:, 4:]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=2e-5, rtol=0)


def test_left_padded_batch_generates_like_each_row_alone():
    model = GPT(tiny_gpt_config()).eval()
    a, b = torch.randint(0, 64, (1, 7)), torch.randint(0, 64, (1, 3))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    mask = torch.tensor([[1] * 7, [0] * 4 + [1] * 3])
    out = model.generate(batch, 12, attention_mask=mask)
    assert torch.equal(out[0, 7:], model.generate(a, 12)[0, 7:])
    assert torch.equal(out[1, 7:], model.generate(b, 12)[0, 3:])


def test_score_handles_left_padding_like_unpadded_rows(tiny_gpt):
    x = torch.randint(0, 64, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    torch.testing.assert_close(tiny_gpt.score(padded, mask)[:, 3:], tiny_gpt.score(x), atol=1e-5, rtol=0)
    assert tiny_gpt.score(padded, mask)[:, :4].abs().sum() == 0  # pads and the first real token: no prediction


def test_score_is_next_token_log_softmax(tiny_gpt):
    x = torch.randint(0, 64, (2, 10))
    logits = tiny_gpt(x).logits.double()
    ref = torch.stack([logits[b, t - 1].log_softmax(-1)[x[b, t]] for b in range(2) for t in range(1, 10)]).view(2, 9)
    got = tiny_gpt.score(x)
    assert torch.all(got[:, 0] == 0)
    torch.testing.assert_close(got[:, 1:].double(), ref, atol=1e-5, rtol=0)


def test_causality_future_tokens_do_not_change_past_logprobs(tiny_gpt):
    x = torch.randint(0, 64, (2, 20))
    for t in (0, 7, 18):
        y = x.clone()
        y[:, t + 1 :] = torch.randint(0, 64, y[:, t + 1 :].shape)
        a, b = tiny_gpt(x).logits[:, : t + 1], tiny_gpt(y).logits[:, : t + 1]
        assert (a - b).abs().max() < 1e-5
    # and the probe is sensitive: changing token t does change position t's output
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 64
    assert (tiny_gpt(x).logits[:, 10] - tiny_gpt(y).logits[:, 10]).abs().max() > 1e-3


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(d_model=64, n_layers=2))
    x = torch.randint(0, 64, (4, 32))
    labels = torch.roll(x, -1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        loss = model(x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_loss_ignores_masked_labels_and_matches_manual_ce(tiny_gpt):
    x = torch.randint(0, 64, (2, 8))
    labels = torch.roll(x, -1, 1)
    labels[:, :3] = -100
    out = tiny_gpt(x, labels=labels)
    logp = out.logits.log_softmax(-1)
    manual = -logp[:, 3:].gather(-1, labels[:, 3:, None]).mean()
    torch.testing.assert_close(out.loss, manual, atol=1e-5, rtol=0)


def test_flops_per_token_hand_count():
    cfg = GPTConfig(vocab_size=100, d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_hidden=96, max_seq_len=32)
    model = GPT(cfg)
    # per layer: q 64*64, k 64*32, v 64*32, o 64*64, gate+up 2*64*96, down 96*64
    per_layer = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 2 * 64 * 96 + 96 * 64
    matmul = 3 * per_layer + 64 * 100  # + head
    attn = 3 * 2 * 2 * 64 * (16 + 1) / 2  # layers * (QK, AV) * 2 FLOP/MAC * (heads*hd) * mean causal context
    assert model.flops_per_token(16) == 3 * (2 * matmul + attn)
    # the matmul count is every weight matrix except the embedding lookup (tied head counted once)
    norms = 2 * 3 * 64 + 64
    assert model.num_params() == 3 * per_layer + 64 * 100 + norms


def test_tied_and_untied_embeddings():
    tied = GPT(tiny_gpt_config(tie_embeddings=True))
    untied = GPT(tiny_gpt_config(tie_embeddings=False))
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.num_params() - tied.num_params() == 64 * 32


def test_residual_projections_use_scaled_init():
    model = GPT(tiny_gpt_config(n_layers=8, d_model=256, n_heads=4))
    std_wo = model.blocks[0].attn.wo.weight.std().item()
    std_q = model.blocks[0].attn.wqkv.weight.std().item()
    assert std_q == pytest.approx(0.02, rel=0.05)
    assert std_wo == pytest.approx(0.02 / 4, rel=0.05)


@pytest.mark.parametrize(
    "override, field",
    [
        (dict(d_model=30, n_heads=4), "model.n_heads=4 does not divide model.d_model=30"),
        (dict(n_heads=4, n_kv_heads=3), "model.n_kv_heads=3 must divide model.n_heads=4; allowed: [1, 2, 4]"),
        (dict(vocab_size=0), "model.vocab_size must be >= 1"),
    ],
)
def test_inconsistent_model_config_is_one_clear_error(override, field):
    with pytest.raises(ConfigError) as e:
        build(GPTConfig, override, "model.")
    assert field in str(e.value) and "\n" not in str(e.value)


def test_runtime_input_errors(tiny_gpt):
    with pytest.raises(InputError, match=r"sequence length 65 exceeds model.max_seq_len=64"):
        tiny_gpt(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(InputError, match=r"token id 64 is outside model.vocab_size=64"):
        tiny_gpt(torch.full((1, 4), 64))
    with pytest.raises(InputError, match=r"exceeds model.max_seq_len=64"):
        tiny_gpt.generate(torch.zeros(1, 60, dtype=torch.long), 10)


def test_sampled_generation_is_seeded(tiny_gpt):
    prompt = torch.randint(0, 64, (2, 4))
    s = SamplingConfig(temperature=1.0, top_k=20, seed=5)
    a, b = tiny_gpt.generate(prompt, 10, s), tiny_gpt.generate(prompt, 10, s)
    assert torch.equal(a, b)
    assert not torch.equal(a, tiny_gpt.generate(prompt, 10, SamplingConfig(temperature=1.0, top_k=20, seed=6)))


def test_generation_stops_rows_at_eos(tiny_gpt):
    prompt = torch.randint(0, 64, (2, 4))
    free = tiny_gpt.generate(prompt, 6)
    eos = int(free[0, 5])  # the second token row 0 would generate
    out = tiny_gpt.generate(prompt, 6, eos_token_id=eos)
    assert torch.all(out[0, 5:] == eos)


def test_token_logprobs_masks_pads():
    logits = torch.randn(1, 4, 10)
    ids = torch.tensor([[1, 2, 3, 0]])
    out = token_logprobs(logits, ids, torch.tensor([[1, 1, 1, 0]]))
    assert out[0, 0] == 0 and out[0, 3] == 0 and out[0, 1] != 0


def test_generated_ids_and_scores_are_usable_in_training(tiny_gpt):
    """generate/score run under inference_mode internally; their outputs must still work with autograd."""
    ids = tiny_gpt.generate(torch.randint(0, 64, (2, 4)), 6)
    tiny_gpt.train()
    loss = tiny_gpt(ids, labels=torch.roll(ids, -1, 1)).loss + tiny_gpt.score(ids).sum() * 0
    loss.backward()
    assert tiny_gpt.tok_emb.weight.grad is not None
