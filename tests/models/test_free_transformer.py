import math

import pytest
import torch

from latentlm.config import build
from latentlm.errors import ConfigError
from latentlm.models.decoder import token_logprobs
from latentlm.models.free_transformer import Config, Model
from latentlm.models.free_transformer.latent import (
    binary_kl,
    binary_mapper,
    bit_table,
    free_bits_loss,
    sample_codes,
)
from latentlm.models.gpt import GPT
from tests.conftest import tiny_gpt_config


def ft_config(**kw):
    base = dict(
        vocab_size=64, d_model=32, n_layers=4, n_heads=4, max_seq_len=64, latent_bits=5, variant="free_transformer"
    )
    base.update(kw)
    return Config(**base)


def dense_mapper(logits, table, codes):
    """Eq. 8 literally: R = W (Y + G - sg(G)) with G over all 2^H codes, dense (B*T, 2^H)."""
    H = logits.shape[-1]
    U = bit_table(0, 2**H, H, logits.device)  # (2^H, H)
    G = (logits.float() @ U.T - torch.nn.functional.softplus(logits.float()).sum(-1, keepdim=True)).exp()
    Y = torch.nn.functional.one_hot(codes, 2**H).float()
    return (Y + G - G.detach()) @ table


@pytest.mark.parametrize("H, budget", [(1, 1 << 22), (3, 8), (6, 1 << 22), (6, 40)])
def test_mapper_forward_is_a_gather_and_gradients_match_dense_eq8(H, budget):
    torch.manual_seed(H)
    logits = (torch.randn(7, H) * 2).requires_grad_()
    table = torch.randn(2**H, 5, requires_grad=True)
    codes = sample_codes(logits.detach())
    g = torch.randn(7, 5)
    out = binary_mapper(logits, table, codes, budget)
    assert torch.equal(out, table[codes])  # exactly the one-hot forward value
    (out * g).sum().backward()
    ours = logits.grad.clone(), table.grad.clone()
    logits.grad = table.grad = None
    (dense_mapper(logits, table, codes) * g).sum().backward()
    torch.testing.assert_close(ours[0], logits.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[1], table.grad, atol=1e-6, rtol=1e-5)
    assert ours[0].abs().sum() > 0


def test_mapper_memory_does_not_grow_with_tokens_times_codes():
    """No (N, 2^H) buffer: the largest allocation of fwd+bwd stays at the chunk budget while N*2^H grows 8x."""
    from torch.profiler import ProfilerActivity, profile

    H, budget = 12, 1 << 16

    def largest_allocation(n):
        logits = torch.randn(n, H, requires_grad=True)
        table = torch.randn(2**H, 16, requires_grad=True)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            binary_mapper(logits, table, sample_codes(logits.detach()), budget).sum().backward()
        return max(e.cpu_memory_usage for e in prof.events())

    small, large = largest_allocation(64), largest_allocation(512)
    dense_large = 512 * 2**H * 4  # bytes of one dense (N, 2^H) fp32 tensor
    assert large <= 4 * budget * 4 + 2**H * 16 * 4  # a chunk buffer or the table-sized gradient, nothing bigger
    assert large < dense_large / 8
    assert large <= 2 * small + 2**H * 16 * 4


def test_kl_is_nonnegative_and_equals_brute_force_enumeration():
    torch.manual_seed(0)
    H = 4
    logits = torch.randn(10, H) * 3
    ours = binary_kl(logits).sum(-1)
    U = bit_table(0, 2**H, H, "cpu").double()
    p = torch.sigmoid(logits.double())
    q = (U[None] * p[:, None] + (1 - U[None]) * (1 - p[:, None])).prod(-1)  # (10, 2^H) Q(z)
    brute = (q * (q * 2**H).log()).sum(-1)  # KL(Q || uniform)
    torch.testing.assert_close(ours.double(), brute, atol=1e-5, rtol=0)
    assert (ours >= 0).all() and binary_kl(torch.zeros(3, H)).abs().max() < 1e-6


def test_free_bits_hinge_is_exact_in_value_and_gradient():
    kl = torch.tensor([0.1, 0.5, 2.0, 3.0], requires_grad=True)
    loss = free_bits_loss(kl, kappa_nats=1.0)
    assert loss.item() == pytest.approx((1.0 + 2.0) / 4)
    loss.backward()
    assert kl.grad.tolist() == [0.0, 0.0, 0.25, 0.25]  # zero below kappa, 1/T above


def test_latent_off_is_exactly_gpt():
    gpt = GPT(tiny_gpt_config(n_layers=4)).eval()
    ft = Model(ft_config(latent=False)).eval()
    ft.load_state_dict(gpt.state_dict())  # the same parameters, nothing extra
    x = torch.randint(0, 64, (2, 12))
    assert torch.equal(ft(x).logits, gpt(x).logits)
    assert torch.equal(ft.score(x), gpt.score(x))


def test_zero_post_sampler_reduces_to_gpt_whatever_the_encoder_says():
    gpt = GPT(tiny_gpt_config(n_layers=4)).eval()
    ft = Model(ft_config()).eval()
    missing = ft.load_state_dict(gpt.state_dict(), strict=False).missing_keys
    assert set(missing) == {k for k in ft.state_dict() if k.startswith(("encoder.", "post_sampler"))}
    with torch.no_grad():
        ft.post_sampler.zero_()
    x = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(ft(x).logits, gpt(x).logits, atol=1e-6, rtol=0)
    # and with a non-zero table, Z changes the output only from the injection onwards
    with torch.no_grad():
        ft.post_sampler.normal_()
    assert (ft(x).logits - gpt(x).logits).abs().max() > 1e-3


def test_encoder_outputs_differ_across_positions_because_of_rope():
    model = Model(ft_config()).eval()
    x = torch.randn(1, 9, 32)
    with torch.no_grad():
        model.encoder.block.attn.wqkv.weight.normal_(0, 0.5)  # sharp attention, as after training
        real = model.encoder(x, model.encoder_context(torch.arange(9)[None], None))
        flat = model.encoder(x, model.encoder_context(torch.zeros(1, 9, dtype=torch.long), None))
    assert (real - real[:, :1]).abs().amax(-1)[0, 1:].min() > 1e-2  # every position differs from the first
    assert (flat - flat[:, :1]).abs().max() < 1e-5  # without positions the constant query sees the same thing


def test_cached_generation_equals_recompute_with_the_same_z():
    model = Model(ft_config()).eval()
    prompt = torch.randint(0, 64, (3, 4))
    for kwargs in ({}, {"z": "posterior"}, {"z_code": 7}):
        ids, codes = model.generate(prompt, 10, return_codes=True, z_seed=1, **kwargs)
        logits = model(ids[:, :-1], z_codes=codes).logits  # full recompute, same codes
        assert torch.equal(logits[:, 3:].argmax(-1), ids[:, 4:])
        if "z_code" in kwargs:
            assert (codes == 7).all()


def test_a_generation_nested_in_another_leaves_the_outer_codes_alone():
    # the Z plan travels through the decoding loop's arguments: a generate() inside another one's callback
    # (which shared instance state would clobber) changes nothing in the outer call
    model = Model(ft_config()).eval()
    prompt = torch.randint(0, 64, (2, 4))
    codes = torch.randint(0, 2**5, (2, 12))
    alone = model.generate(prompt, 8, z_codes=codes)
    inner = []
    nested = model.generate(
        prompt, 8, z_codes=codes, callback=lambda tok: inner.append(model.generate(prompt, 2, z_seed=3))
    )
    assert len(inner) == 8 and torch.equal(nested, alone)
    assert not any(isinstance(v, torch.Tensor) and v.dim() == 2 for v in vars(model).values())  # no codes on self


def test_latent_off_is_built_as_the_plain_decoder_once():
    ft = Model(ft_config(latent=False))
    assert type(ft).__name__ == "PlainFreeTransformer" and not hasattr(ft, "encoder")
    assert ft.diagnostics(None, None) is None and ft.score_note.startswith("exact")
    x = torch.randint(0, 64, (2, 5))
    assert torch.equal(ft.generate(x, 4, z="posterior", z_seed=1), ft.generate(x, 4))  # Z options are no-ops


def test_decoder_is_causal_given_z():
    model = Model(ft_config()).eval()
    x = torch.randint(0, 64, (2, 16))
    z = model.prior_codes(x.shape)
    y, z2 = x.clone(), z.clone()
    y[:, 9:] = torch.randint(0, 64, (2, 7))
    z2[:, 9:] = model.prior_codes((2, 7))
    with torch.no_grad():
        assert (model(x, z_codes=z).logits[:, :9] - model(y, z_codes=z2).logits[:, :9]).abs().max() < 1e-5


def test_score_uses_seeded_prior_and_importance_weights_samples():
    model = Model(ft_config(score_samples=3, score_seed=5)).eval()
    x = torch.randint(0, 64, (2, 10))
    assert torch.equal(model.score(x), model.score(x))  # fixed seed
    with torch.no_grad():
        per = torch.stack([token_logprobs(model(x, z_codes=model.score_codes(k, x)).logits, x) for k in range(3)])
    seq = per.double().sum(-1)  # (K, B) log p(x | z_k)
    expected = torch.logsumexp(seq, 0) - math.log(3)
    torch.testing.assert_close(model.score(x).double().sum(-1), expected, atol=1e-4, rtol=0)
    assert "prior Z" in model.score_note and "K=3" in model.score_note


def test_training_step_trains_encoder_and_code_table():
    model = Model(ft_config(kappa_bits=1e-6))
    x = torch.randint(0, 64, (2, 12))
    out = model(x, labels=torch.roll(x, -1, 1))
    out.loss.backward()
    assert model.encoder.readout.weight.grad.abs().sum() > 0 and model.post_sampler.grad.abs().sum() > 0
    assert out.metrics["kl_bits"] >= 0 and out.loss > out.metrics["ce"]  # kappa ~0: every bit of KL is paid


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(latent_bits=0), "model.latent_bits=0 must be in [1, 20]"),
        (dict(latent_bits=21), "model.latent_bits=21 must be in [1, 20]"),
        (dict(kappa_bits=-0.5), "model.kappa_bits=-0.5 must be > 0"),
        (dict(kappa_bits=0.0), "model.kappa_bits=0.0 must be > 0"),
        (dict(kappa_bits=float("nan")), "model.kappa_bits=nan must be > 0"),
        (dict(inject_std=0.0), "model.inject_std=0.0 must be > 0"),
        (dict(inject_std=-1.0), "model.inject_std=-1.0 must be > 0"),
        (dict(inject_scale="big"), "model.inject_scale='big' must be one of: init, rms"),
        (dict(kappa_start_bits=0.25, kappa_anneal_steps=10), "model.kappa_start_bits=0.25 must be >= model.kappa_bits"),
        (dict(kappa_start_bits=2.0, kappa_anneal_steps=0), "model.kappa_anneal_steps=0 must be >= 1"),
        (dict(inject_layer=4), "model.inject_layer=4 is out of range; allowed 0..3"),
    ],
)
def test_bad_config_is_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(Config, dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4, **override), "model.")


def test_score_does_not_depend_on_batching_or_padding():
    model = Model(ft_config(score_samples=2)).eval()
    a, b = torch.randint(0, 64, (1, 8)), torch.randint(0, 64, (1, 5))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    mask = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    both = model.score(batch, mask)
    torch.testing.assert_close(both[:1], model.score(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1:, 3:], model.score(b), atol=1e-5, rtol=0)
