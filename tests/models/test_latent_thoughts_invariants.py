"""Invariants of latent thoughts on tiny random Llamas: tied and untied embeddings, the adapter, batched generation
with different latent counts per row under every policy equal to per-row generation, the Coconut stage rule, cold
stop and Soft Thinking's own cap, strict logit ties between special tokens."""

import pytest
import torch

from latentlm.data.reasoning import ReasoningExample
from latentlm.data.tokenizer import char_tokenizer
from latentlm.errors import ConfigError
from latentlm.models.latent_thoughts import Config, Model
from latentlm.models.latent_thoughts import policies as P
from latentlm.models.latent_thoughts.curriculum import coconut_stage, prompt_ids, render
from latentlm.models.latent_thoughts.passes import frontier_forward
from tests.tiny_llama import save_tiny_llama

EX = ReasoningExample("2+3*4?", ["3*4=12", "2+12=14"], "14")
QUESTIONS = ["2+3*4?", "9-4", "7*7-1=", "1."]


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def base_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return save_tiny_llama(
        d, char_tokenizer(), max_position_embeddings=256, tie_word_embeddings=request.param, initializer_range=0.3
    )  # a large init: random logits vary (a small tied one repeats its input token)


def model_for(base_dir, method, **kw):
    torch.manual_seed(0)
    return Model(Config(base_model=str(base_dir), method=method, max_seq_len=256, **kw)).eval()


def left_pad(tok, prompts):
    T = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_id] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def batched_equals_per_row(m, method, policy, n_new=14, **kw):
    tok = m.tokenizer
    prompts = [prompt_ids(ReasoningExample(q), method, m.config, tok) for q in QUESTIONS]
    ids, mask = left_pad(tok, prompts)
    n_lat = kw.pop("n_latents", None)
    out, info = m.generate(
        ids, n_new, attention_mask=mask, policy=policy, eos_token_id=-1, return_trace=True, n_latents=n_lat
    )
    T = ids.shape[1]
    for b, p in enumerate(prompts):
        one = None if n_lat is None else n_lat[b : b + 1]
        o1, i1 = m.generate(torch.tensor([p]), n_new, policy=policy, eos_token_id=-1, return_trace=True, n_latents=one)
        assert out[b, T:].tolist() == o1[0, len(p) :].tolist()
        assert int(info["latent_steps"][b]) == int(i1["latent_steps"][0])
    return info["latent_steps"].tolist()


def test_fixed_counts_per_row_batched_equal_per_row(base_dir):
    m = model_for(base_dir, "coconut")
    counts = batched_equals_per_row(m, "coconut", "fixed", n_latents=torch.tensor([3, 0, 5, 1]))
    assert counts == [3, 0, 5, 1]


def test_learned_thinking_batched_equals_per_row_with_different_counts(base_dir):
    m = model_for(base_dir, "lt_tuning", adapter=True, adapter_hidden=16)
    out = m.base.get_output_embeddings().weight
    th = m.ids["<thinking>"]
    tok = m.tokenizer
    prompts = [prompt_ids(ReasoningExample(q), "lt_tuning", m.config, tok) for q in QUESTIONS]
    plain = [m.generate(torch.tensor([p]), 14, policy="none", eos_token_id=-1)[0, len(p) :].tolist() for p in prompts]
    with torch.no_grad():  # <thinking> scores just above a token some rows pick: those rows think, others not
        for t in dict.fromkeys(t for row in plain for t in row):
            out[th] = out[t] * 1.05
            counts = batched_equals_per_row(m, "lt_tuning", "learned")
            if len(set(counts)) > 1:
                break
    assert len(set(counts)) > 1, counts


@pytest.mark.parametrize("policy", ["threshold", "cold_stop"])
def test_threshold_and_cold_stop_batched_equal_per_row_with_different_counts(base_dir, policy):
    for value in (0.05, 0.1, 0.2, 0.4, 1.0, 2.0, 3.0):
        over = dict(threshold=value, threshold_cap=6) if policy == "threshold" else dict(cold_stop_entropy=value)
        m = model_for(base_dir, "soft_thinking" if policy == "cold_stop" else "lt_tuning", cold_stop_steps=2, **over)
        counts = batched_equals_per_row(m, m.config.method, policy)
        if len(set(counts)) > 1:
            break
    assert len(set(counts)) > 1, counts


def test_adapter_forward_equals_naive_recompute_and_gets_gradients(base_dir):
    m = model_for(base_dir, "lt_tuning", adapter=True, adapter_hidden=16)
    th = m.ids["<thinking>"]
    ids = torch.randint(1, 90, (2, 12))
    ids[0, [3, 4]] = th
    ids[1, 7] = th
    latent = m.latent_mask(ids, None)
    builder = m.builder(2)
    logits, _, _, _ = frontier_forward(m.runner, ids, None, latent, builder)
    E = m.base.get_input_embeddings()
    for b in range(2):
        embs = []
        for t in range(12):
            if latent[b, t]:
                o = m.base(inputs_embeds=torch.stack(embs)[None], output_hidden_states=True)
                embs.append(builder(o.hidden_states[-1][0, -1], o.logits[0, -1]))
            else:
                embs.append(E(ids[b, t]))
        ref = m.base(inputs_embeds=torch.stack(embs)[None]).logits[0]
        torch.testing.assert_close(logits[b], ref, atol=1e-5, rtol=0)
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.adapter.parameters())


def test_special_tokens_from_one_row_have_strictly_different_logits(base_dir):
    m = model_for(base_dir, "coconut")
    ids = [m.ids[t] for t in ("<bot>", "<eot>", "<latent>", "<thinking>")]
    W = m.base.get_output_embeddings().weight
    with torch.no_grad():
        h = torch.randn(200, W.shape[1])
        z = h @ W[ids].T
        gaps = (z[:, :, None] - z[:, None, :]).abs() + torch.eye(4) * 1e9
        rows = W[ids]
        dist = (rows[:, None] - rows[None]).norm(dim=-1) + torch.eye(4) * 1e9
    assert float(gaps.min()) > 1e-6  # no exact ties: a greedy choice among them is never float noise
    assert float(gaps.median()) > 1e-3
    assert float(dist.min()) > 1e-3 * float(rows[0].norm())  # every pair of rows differs
    rel = (rows - rows[0]).norm(dim=1)[1:] / rows[0].norm()
    assert float(rel.max()) < 0.1  # still initialised from the same row (Coconut's "<<")


def test_coconut_stage_rule_matches_the_official_dataset(base_dir):
    m = model_for(base_dir, "coconut", max_latent_stage=2, c_thought=1)
    tok, cfg = m.tokenizer, m.config
    three = ReasoningExample("q?", ["a=1", "b=2", "c=3"], "3")
    one = ReasoningExample("q?", ["a=1"], "1")
    dec = lambda ex, s: tok.decode(render(ex, "coconut", s, cfg, tok)[0])  # noqa: E731
    assert dec(three, 2) == "q?\n<bot><latent><latent><eot>c=3\n### 3<|endoftext|>"  # stage == max keeps the rest
    assert dec(three, 3) == "q?\n<bot><latent><latent><eot>### 3<|endoftext|>"  # beyond max: every step goes
    assert dec(one, 2) == "q?\n<bot><latent><latent><eot>### 1<|endoftext|>"  # stage k: k latents even for 1 step
    assert dec(one, 3) == "q?\n<bot><latent><eot>### 1<|endoftext|>"  # min(max, #steps)
    cfg.pad_latent_to_max = True
    assert dec(one, 3) == "q?\n<bot><latent><latent><eot>### 1<|endoftext|>"
    assert m.default_latents(1) == 2
    cfg.pad_latent_to_max = False
    assert m.default_latents(1) == 1 and m.default_latents(5) == 2 and m.default_latents() == 2
    cfg.stage_steps = [2, 1]
    assert [coconut_stage(s, cfg) for s in range(7)] == [0, 0, 1, 2, 3, 3, 3]
    assert cfg.n_stages == 4


def test_cold_stop_only_on_entropy_or_the_answer_marker_and_the_cap_forces_nothing():
    V = 10
    flat = torch.zeros(1, V)  # entropy log(10): never calm
    cold = P.ColdStop(tau=0.1, k=2, cap=3, answer_id=5)
    cold.reset(1, "cpu")
    seq = [cold.decide(flat.clone()) for _ in range(5)]
    assert [bool(lat) for lat, _ in seq] == [True, True, True, False, False]
    assert all(int(f) == -1 for _, f in seq)  # the budget ran out: no answer marker forced
    default = Config()
    assert default.soft_cap >= 1024  # above any max_new_tokens a run can use at max_seq_len 384
    peaked = torch.full((1, V), -30.0)
    peaked[0, 2] = 0
    cold = P.ColdStop(tau=0.1, k=2, cap=1000, answer_id=5)
    cold.reset(1, "cpu")
    seq = [cold.decide(peaked.clone()) for _ in range(3)]
    assert [bool(lat) for lat, _ in seq] == [True, False, False] and int(seq[1][1]) == 5


def test_negative_latent_counts_are_config_errors():
    for key in ("n_latents", "pause_tokens", "soft_cap", "threshold_cap"):
        with pytest.raises(ConfigError, match=f"model.{key}=-1"):
            Config(**{key: -1}).validate()
    fixed = P.FixedCount(torch.tensor([1, -1]), eot_id=1, latent_id=2)
    with pytest.raises(ValueError, match=">= 0"):
        fixed.reset(2, "cpu")


def test_batched_insertion_scoring_equals_one_example_at_a_time(base_dir):
    from latentlm.models.latent_thoughts.curriculum import encode_parts
    from latentlm.models.latent_thoughts.source import LatentCurriculum

    m = model_for(base_dir, "lt_tuning", lt_threshold=[0.9, 0.9], lt_cap=[3, 3])
    exs = [EX, ReasoningExample("9-4?", ["9-4=5"], "5"), ReasoningExample("1?", [], "1")]
    src = LatentCurriculum(m.config, m.tokenizer, seed=0)
    batched = src.score_insertions(m, exs, 1, batch=2)
    import random

    from latentlm.models.latent_thoughts.curriculum import choose_insertions

    rng = random.Random(0 * 1000 + 1)
    for i, ex in enumerate(exs):
        ids, _ = render(ex, "cot", 0, m.config, m.tokenizer)
        q = len(encode_parts(ex, m.tokenizer)[0])
        lp = m.score(torch.tensor([ids]))[0, q:].tolist()
        assert batched[i] == choose_insertions(lp, 1, m.config, rng)
    assert any(batched.values())


def test_a_training_step_frees_its_kv_buffers_when_its_outputs_go(base_dir):
    """No reference cycle through the autograd graph: once the loss and logits of a latent forward are gone, the
    pass's K/V buffers are collected (they were kept alive before, ~20 MB per Coconut step at batch 32)."""
    import gc
    import weakref

    m = model_for(base_dir, "coconut", max_latent_stage=2).train()
    ids, labels = (torch.tensor([x]) for x in render(EX, "coconut", 2, m.config, m.tokenizer))
    made = []
    new_cache = m.runner.new_cache

    def spy(*a, **k):
        kv = new_cache(*a, **k)
        made.append(weakref.ref(kv.k[0]))
        return kv

    m.runner.new_cache = spy
    for _ in range(3):
        out = m(ids, labels=labels, stage=2)
        assert out.metrics["n_latent_passes"] == 3  # the step did run latent passes
        out.loss.backward()
        del out
    gc.collect()
    assert len(made) == 3 and all(r() is None for r in made)
