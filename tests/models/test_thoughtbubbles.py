import math

import pytest
import torch
from torch import nn

from latentlm.config import build
from latentlm.errors import ConfigError
from latentlm.eval.leak import measure_leak
from latentlm.models.gpt import GPT
from latentlm.models.thoughtbubbles import Config, Model
from latentlm.models.thoughtbubbles.fork import stream_positions, tokens_count
from latentlm.nn import attention as attention_mod
from tests.conftest import tiny_gpt_config


def tb(**kw) -> Model:
    base = dict(variant="thoughtbubbles", vocab_size=64, d_model=32, n_layers=4, n_heads=4, max_seq_len=64)
    base.update(kw)
    return Model(Config(**base)).eval()


class FixedScores(nn.Module):
    """Stand-in score head: every stream gets the same (fork, keep) logits."""

    def __init__(self, fork, keep):
        super().__init__()
        self.out = torch.tensor([fork, keep])

    def forward(self, x):
        return self.out.expand(*x.shape[:-1], 2)


def test_no_fork_layers_is_exactly_gpt():
    gpt = GPT(tiny_gpt_config(n_layers=4)).eval()
    model = tb(fork_layers=[])
    model.load_state_dict(gpt.state_dict())
    x = torch.randint(0, 64, (2, 12))
    assert torch.equal(model(x).logits, gpt(x).logits)


def test_positions_are_arange_plus_one_with_one_stream_per_token_and_fractional_with_forks():
    tau = torch.arange(6)[None]
    assert torch.equal(stream_positions(tau, torch.ones(1, 6, dtype=torch.bool), 6), torch.arange(1, 7.0)[None])
    tau = torch.tensor([[0, 1, 1, 1, 2, 3, 3]])  # token 1 has three streams, token 3 two
    pos = stream_positions(tau, torch.ones(1, 7, dtype=torch.bool), 4)
    torch.testing.assert_close(pos, torch.tensor([[1, 1 + 1 / 3, 1 + 2 / 3, 2, 3, 3.5, 4]]))


@pytest.mark.parametrize("budget, T", [(2.0, 10), (1.5, 10), (3.0, 7), (1.0, 5)])
def test_stream_count_is_k_after_each_fork_and_every_token_survives(budget, T):
    torch.manual_seed(1)
    model = tb(fork_layers=[0, 1, 3], budget=budget)
    for fork in model.forks.values():
        nn.init.normal_(fork.score.weight, 0, 3.0)  # decisive, varied scores
    x = torch.randint(0, 64, (3, T))
    _, stats = model.run_streams(model.initial_state(x), T, torch.zeros(3))
    n = T
    for layer in (0, 1, 3):
        n = min(math.ceil(budget * T), 2 * n)
        st = stats[layer]
        assert st.h.shape[1] == n and bool(st.alive.all())
        assert bool((tokens_count(st.tau, st.alive, T)[:, :T] >= 1).all())
        assert bool((st.tau[:, 1:] >= st.tau[:, :-1]).all())  # survivors keep token order


def test_every_token_keeps_a_stream_under_hostile_scores():
    x = torch.randint(0, 64, (2, 9))
    for mode in ("global", "causal"):  # the fork rule is chosen at construction: one model per mode
        model = tb(fork_layers=[1, 2], budget=1.0, budget_mode=mode)
        for fork in model.forks.values():
            fork.score = FixedScores(-100.0, -100.0)  # every candidate scores at the clip
        _, stats = model.run_streams(model.initial_state(x), 9, torch.zeros(2))
        for st in stats.values():
            assert bool((tokens_count(st.tau, st.alive, 9)[:, :9] == 1).all())
            assert st.c.min() >= 2 * -20.0 - 1e-4  # clipped log-sigmoids


def test_huge_positive_scores_keep_all_2t_candidates_at_the_first_fork():
    model = tb(fork_layers=[1, 2], budget_mode="causal", causal_cap=2, causal_threshold=0.5)
    model.forks["1"].score = FixedScores(50.0, 50.0)
    x = torch.randint(0, 64, (2, 8))
    _, stats = model.run_streams(model.initial_state(x), 8, torch.zeros(2))
    st = stats[1]
    assert st.h.shape[1] == 16 and bool(st.alive.all())
    assert torch.equal(st.tau[0], torch.arange(8).repeat_interleave(2))
    assert st.c.abs().max() < 1e-6  # p = 1


def test_score_head_gets_gradients_through_the_continuous_uses_of_c():
    model = tb().train()
    x = torch.randint(0, 64, (2, 10))
    model(x, labels=torch.roll(x, -1, 1)).loss.backward()
    for fork in model.forks.values():
        assert fork.score.weight.grad.abs().sum() > 0 and fork.fork_emb.grad.abs().sum() > 0


@pytest.mark.parametrize("merge", ["residual", "distribution"])
def test_both_merges_equal_the_plain_model_when_nothing_forks(merge):
    gpt = GPT(tiny_gpt_config(n_layers=4)).eval()
    model = tb(merge=merge, budget_mode="causal")
    model.load_state_dict(gpt.state_dict(), strict=False)
    for fork in model.forks.values():
        fork.score = FixedScores(-60.0, 60.0)  # copies never survive, originals keep p = 1
    x = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(model(x).logits.log_softmax(-1), gpt(x).logits.log_softmax(-1), atol=1e-5, rtol=0)


def test_causal_mode_has_zero_leak_and_global_mode_leaks():
    torch.manual_seed(0)
    x = torch.randint(0, 64, (4, 24))
    causal = tb(budget_mode="causal", causal_threshold=0.3)
    glob = tb(budget_mode="global", budget=1.5)
    for m in (causal, glob):
        for fork in m.forks.values():
            nn.init.normal_(fork.score.weight, 0, 2.0)
    # causal: no dependence on later tokens; only fp32 rounding, since later tokens can change the batch's padded
    # stream count and hence the kernels' blocking
    assert measure_leak(causal, x)["max_abs_dlogp"] < 1e-5
    assert measure_leak(GPT(tiny_gpt_config()).eval(), x)["max_abs_dlogp"] == 0.0
    assert measure_leak(glob, x)["max_abs_dlogp"] > 1e-4  # later tokens change which earlier forks survive


@pytest.mark.parametrize(
    "kw",
    [
        dict(budget_mode="causal", causal_threshold=0.3, causal_cap=3),
        dict(duplicate_tokens=True),
        dict(budget_mode="causal", merge="distribution"),
    ],
)
def test_cached_generation_equals_full_recompute(kw):
    torch.manual_seed(2)
    model = tb(**kw)
    for fork in model.forks.values():
        if hasattr(fork, "score"):  # the duplicated-tokens baseline has no score head
            nn.init.normal_(fork.score.weight, 0, 2.0)
    prompt = torch.randint(0, 64, (3, 5))
    ids = model.generate(prompt, 12)
    ref = prompt
    for _ in range(12):
        ref = torch.cat([ref, model(ref).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(ids, ref)


def test_global_generation_recomputes_and_says_so():
    model = tb()
    with pytest.warns(UserWarning, match="recomputes the whole sequence"):
        model.generate(torch.randint(0, 64, (1, 4)), 3)


@pytest.mark.parametrize("mode", ["global", "causal"])
def test_left_padding_gives_the_unpadded_scores(mode):
    torch.manual_seed(3)
    model = tb(budget_mode=mode, causal_threshold=0.3)
    for fork in model.forks.values():
        if hasattr(fork, "score"):  # the duplicated-tokens baseline has no score head
            nn.init.normal_(fork.score.weight, 0, 2.0)
    x = torch.randint(0, 64, (1, 9))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), x], 1)
    mask = torch.tensor([[0] * 4 + [1] * 9])
    torch.testing.assert_close(model.score(padded, mask)[:, 4:], model.score(x), atol=1e-5, rtol=0)


def test_channel_bias_attention_equals_a_materialised_mask_reference(monkeypatch):
    """The whole model with the bias in a head channel == the same maths with a dense float mask."""
    torch.manual_seed(4)
    model = tb(budget=1.5)
    for fork in model.forks.values():
        if hasattr(fork, "score"):  # the duplicated-tokens baseline has no score head
            nn.init.normal_(fork.score.weight, 0, 2.0)
    x = torch.randint(0, 64, (2, 11))
    ours = model(x).logits
    real = attention_mod.attend

    def dense(q, k, v, *, causal=True, key_bias=None, attn_mask=None, bias_channel="extra"):
        if key_bias is None:
            return real(q, k, v, causal=causal, attn_mask=attn_mask)
        T, S = q.shape[2], k.shape[2]
        mask = torch.zeros(q.shape[0], 1, T, S).masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(S - T), -torch.inf)
        mask = mask + key_bias[:, None, None, :]
        return torch.nn.functional.scaled_dot_product_attention(
            q.double(), k.double(), v.double(), attn_mask=mask.double()
        ).float()

    monkeypatch.setattr(attention_mod, "attend", dense)
    torch.testing.assert_close(ours, model(x).logits, atol=2e-5, rtol=0)


def test_hijacked_channel_is_the_authors_variant_and_close_to_the_extra_channel():
    model = tb()
    x = torch.randint(0, 64, (2, 10))
    extra = model(x).logits
    model.config.bias_channel = "hijack"
    hijack = model(x).logits
    assert 0 < (extra - hijack).abs().max() < 1.0  # one RoPE channel per head is given up


def test_duplicated_tokens_baseline_doubles_every_token_with_p_one():
    model = tb(duplicate_tokens=True)
    x = torch.randint(0, 64, (2, 7))
    out = model(x)
    assert out.metrics["fork1/streams_per_token"] == 2.0 and out.metrics["fork1/mean_p"] == 1.0
    assert model.stream_multipliers(7) == [1.0, 2.0, 2.0, 2.0]


def test_flops_count_the_streams():
    base = GPT(tiny_gpt_config(n_layers=4))
    model = tb(fork_layers=[], n_layers=4)
    assert model.flops_per_token(16) == pytest.approx(base.flops_per_token(16) + 0.0)
    forked = tb(fork_layers=[2], budget=2.0)
    assert forked.stream_multipliers(16) == [1.0, 1.0, 2.0, 2.0]
    assert forked.flops_per_token(16) > 1.4 * base.flops_per_token(16)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(fork_layers=[1, 4]), "model.fork_layers contains 4, out of range; allowed 0..3"),
        (dict(budget=0.5), "model.budget=0.5 must be >= 1"),
        (dict(causal_cap=0), "model.causal_cap=0 must be >= 1"),
        (dict(d_model=8, n_heads=4, bias_channel="hijack"), "head_dim=2 is too small for model.bias_channel=hijack"),
    ],
)
def test_bad_config_is_one_clear_error(override, message):
    base = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4)
    base.update(override)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(Config, base, "model.")


@pytest.mark.parametrize("channel", ["extra", "hijack"])
@pytest.mark.parametrize("kw", [dict(duplicate_tokens=True), dict(budget_mode="causal", causal_threshold=0.3)])
def test_cached_logits_equal_full_forward_logits(kw, channel):
    """Stronger than greedy ids: every cached step's logits equal the full forward's (catches position bugs).
    Cached steps with >= 2 streams take attention's dense-mask path, the full forward the fused one: both must
    carry the key bias the same way for either channel (large q/k weights make a mismatch visible)."""
    torch.manual_seed(5)
    model = tb(bias_channel=channel, **kw)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.wqkv.weight.mul_(4.0)
    for fork in model.forks.values():
        if hasattr(fork, "score"):  # the duplicated-tokens baseline has no score head
            nn.init.normal_(fork.score.weight, 0, 2.0)
    x = torch.randint(0, 64, (2, 14))
    with torch.inference_mode():
        step = model.cached_stepper(x[:, :4], None, 14)
        cached = [step(None)] + [step(x[:, t]) for t in range(4, 13)]
        full = model(x[:, :13]).logits[:, 3:]
    torch.testing.assert_close(torch.stack(cached, 1), full, atol=1e-5, rtol=0)


def test_duplicated_tokens_use_fractional_positions(monkeypatch):
    model = tb(duplicate_tokens=True)
    seen = []
    real = model.rope.forward
    monkeypatch.setattr(model.rope, "forward", lambda pos: seen.append(pos) or real(pos))
    model(torch.randint(0, 64, (1, 5)))
    assert torch.equal(seen[0][0], torch.arange(5))  # before the fork: integer positions (GPT's table)
    assert torch.equal(seen[1][0], torch.tensor([-0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]))  # copies at t - 1/2


@pytest.mark.parametrize("kw", [dict(), dict(duplicate_tokens=True, fork_layers=[1, 2]), dict(budget_mode="causal")])
def test_every_parameter_gets_a_gradient(kw):
    """DDP (without find_unused_parameters) needs every parameter in the graph of every step."""
    model = tb(**kw).train()
    x = torch.randint(0, 64, (2, 10))
    model(x, labels=torch.roll(x, -1, 1)).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused


def test_logit_sum_merge_is_the_v1_sum_of_p_weighted_decoded_streams():
    """Transcription of the authors' v1 PyTorch merge: for every live stream j of token t, logits_t += p_j *
    head(ln_f(x_j)), with the raw p_j (not divided by the token's sum of p)."""
    torch.manual_seed(3)
    model = tb(merge="logit_sum", budget=1.5, tie_embeddings=False).double()
    for fork in model.forks.values():
        nn.init.normal_(fork.score.weight, 0, 1.0)
    x = torch.randint(0, 64, (2, 11))
    with torch.no_grad():
        s, _ = model.run_streams(model.initial_state(x), 11, torch.zeros(2, dtype=torch.float64))
        got = model.merge(s, 11)
        ref = torch.zeros(2, 11, 64, dtype=torch.float64)
        for b in range(2):
            for j in range(s.h.shape[1]):
                if s.alive[b, j]:
                    ref[b, s.tau[b, j]] += math.exp(float(s.c[b, j])) * model.head(model.norm(s.h[b, j]))
    assert float(s.p[s.alive].min()) < 0.9  # some streams are attenuated, so the unnormalised sum matters
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_stream_counts_and_flops_are_stateless():
    torch.manual_seed(4)
    model = tb(budget_mode="causal", causal_threshold=0.3, causal_cap=3)
    for fork in model.forks.values():
        nn.init.normal_(fork.score.weight, 0, 2.0)
    fixed, other = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (4, 16))
    first = model.stream_multipliers(16, fixed)
    fm = model.fork_map(fixed)
    assert first[1] == pytest.approx(float(fm[1]["streams"].mean())) and first[2] == pytest.approx(
        float(fm[2]["streams"].mean())
    )
    model.train()(other, labels=other)  # another forward in between must not change the answer
    assert model.training and model.stream_multipliers(16, fixed) == first
    assert model.flops_per_token(16, fixed) == model.flops_per_token(16, fixed)
    assert model.stream_multipliers(16) == [1.0, 2.0, 3.0, 3.0]  # no batch: the cap, an upper bound


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(merge="mean"), "model.merge: expected one of 'residual', 'distribution', 'logit_sum', got 'mean'"),
        (dict(ranking="best"), "model.ranking: expected one of 'learned', 'random', 'worst'"),
        (dict(budget_mode="local"), "model.budget_mode: expected one of 'global', 'causal'"),
        (dict(budget=5.0), "model.budget=5.0 exceeds the candidate count: 2 fork layer"),
        (dict(fork_layers=[2, 1]), "must be strictly increasing"),
        (dict(score_temperature=0.0), "model.score_temperature=0.0 must be > 0"),
    ],
)
def test_bad_choices_are_one_clear_error(override, message):
    base = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4)
    base.update(override)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(Config, base, "model.")


def test_random_and_worst_ranking_keep_the_budget_and_every_token():
    torch.manual_seed(6)
    x = torch.randint(0, 64, (2, 10))
    for ranking in ("random", "worst"):
        model = tb(budget=1.5, ranking=ranking)
        fm = model.fork_map(x)
        assert float(fm[2]["streams"].sum(1).max()) == 15 and bool((fm[2]["streams"] >= 1).all())


def test_prefix_scoring_is_the_window_score_for_gpt_and_causal_budgets():
    from latentlm.models.thoughtbubbles.model import prefix_logprobs

    torch.manual_seed(7)
    x = torch.randint(0, 64, (2, 9))
    mask = torch.ones_like(x)
    mask[1, 6:] = 0  # right padding, as multiple choice batches
    gpt = GPT(tiny_gpt_config(n_layers=2)).eval()
    torch.testing.assert_close(prefix_logprobs(gpt, x, mask), gpt.score(x, mask), atol=1e-5, rtol=0)
    causal = tb(budget_mode="causal", causal_threshold=0.3, score_mode="prefix")
    for fork in causal.forks.values():
        nn.init.normal_(fork.score.weight, 0, 2.0)
    torch.testing.assert_close(prefix_logprobs(causal, x, mask), causal.score(x, mask), atol=1e-5, rtol=0)


def test_prefix_scoring_of_a_global_budget_equals_recomputing_each_prefix():
    torch.manual_seed(8)
    model = tb(budget=1.5)
    for fork in model.forks.values():
        nn.init.normal_(fork.score.weight, 0, 2.0)
    x = torch.randint(0, 64, (2, 10))
    window = model.score(x)
    model.config.score_mode = "prefix"
    got = model.score(x)
    ref = torch.zeros(2, 10)
    for t in range(1, 10):
        ref[:, t] = model(x[:, :t]).logits[:, -1].log_softmax(-1).gather(1, x[:, t : t + 1])[:, 0].detach()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert (got - window).abs().max() > 1e-4  # the window score differs: later tokens moved earlier forks
    assert "own prefix" in model.score_note


def test_causal_flop_target_is_met_on_average_and_keeps_zero_leak():
    torch.manual_seed(9)
    model = tb(budget_mode="causal", causal_target=1.5, causal_cap=3)
    for fork in model.forks.values():
        nn.init.normal_(fork.score.weight, 0, 2.0)
    data = [torch.randint(0, 64, (4, 24)) for _ in range(30)]
    model.train()
    with torch.no_grad():
        for x in data:  # the running thresholds calibrate on training batches
            model(x)
    model.eval()
    thresholds = [float(f.log_thr) for f in model.forks.values()]
    streams = torch.stack([torch.tensor(model.stream_multipliers(24, x)) for x in data[:10]]).mean(0)
    assert streams[1:] == pytest.approx(torch.full((3,), 1.5), abs=0.12)  # target met after each fork layer
    fixed = tb(budget_mode="causal", causal_threshold=0.5, causal_cap=3)
    fixed.load_state_dict(model.state_dict(), strict=False)
    assert fixed.stream_multipliers(24, data[0]) != model.stream_multipliers(24, data[0])  # not the 0.5 rule
    assert measure_leak(model, data[0])["max_abs_dlogp"] < 1e-5  # constant thresholds: decisions stay per token
    assert [float(f.log_thr) for f in model.forks.values()] == thresholds  # evaluation does not move them


def test_flops_from_a_forward_output_match_the_batch_measurement_and_the_budget():
    """FLOPs travel with the output: the streams its fork layers kept give the same count as a measurement on the
    same batch (causal), and the budget's exact count (global); a forward leaves no state on the model."""
    torch.manual_seed(5)
    causal = tb(budget_mode="causal", causal_threshold=0.3, causal_cap=3)
    for fork in causal.forks.values():
        nn.init.normal_(fork.score.weight, 0, 2.0)
    x = torch.randint(0, 64, (3, 16))
    state = dict(vars(causal))
    out = causal(x)
    assert dict(vars(causal)).keys() == state.keys()  # nothing written on the module by forward
    assert causal.stream_multipliers(16, output=out) == causal.stream_multipliers(16, x)
    assert causal.flops_per_token(16, output=out) == causal.flops_per_token(16, x)
    assert causal.flops_per_token(16, output=out) < causal.flops_per_token(16)  # the cap is an upper bound
    glob = tb(budget=1.5)
    assert glob.stream_multipliers(16, output=glob(x)) == glob.stream_multipliers(16) == [1.0, 1.5, 1.5, 1.5]


def test_the_fork_rule_is_chosen_once_from_the_config():
    from latentlm.models.thoughtbubbles.rules import CausalThreshold, DuplicateTokens, GlobalTopK, NoForks

    dup = tb(duplicate_tokens=True, fork_layers=[1, 2])
    assert isinstance(dup.fork_rule, DuplicateTokens) and dup.fork_rule.layers == (1,) and list(dup.forks) == ["1"]
    assert not hasattr(dup.forks["1"], "score")  # unscored: p = 1 everywhere
    assert isinstance(tb().fork_rule, GlobalTopK) and tb().fork_rule.leaks
    causal = tb(budget_mode="causal").fork_rule
    assert isinstance(causal, CausalThreshold) and not causal.leaks
    assert isinstance(tb(fork_layers=[]).fork_rule, NoForks)
    # the duplicated baseline's FLOPs by hand: block 0 at one stream per token, blocks 1-3 at two (2T queries over
    # causal keys), the head once per token, no score heads (it has none)
    assert dup.stream_multipliers(16) == [1.0, 2.0, 2.0, 2.0]
    layer = (dup.matmul_params() - 32 * 64) / 4
    attn = 4 * 4 * 8  # 4 * n_heads * head_dim per (query, key) pair
    fwd = (2 * layer + attn * 17 / 2) + 3 * 2 * (2 * layer + attn * 33 / 2) + 2 * 32 * 64
    assert dup.flops_per_token(16) == pytest.approx(3 * fwd, rel=1e-12)
