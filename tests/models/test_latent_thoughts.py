"""Latent thoughts on a tiny random Llama built in code (no download)."""

import math
import random

import pytest
import torch

from latentlm.data.reasoning import ReasoningExample, load_examples, prontoqa_example, prosqa_example
from latentlm.data.tokenizer import char_tokenizer
from latentlm.errors import InputError
from latentlm.models.latent_thoughts import Config, Model
from latentlm.models.latent_thoughts import policies as P
from latentlm.models.latent_thoughts.base import check_special_tokens
from latentlm.models.latent_thoughts.curriculum import choose_insertions, prompt_ids, render
from latentlm.models.latent_thoughts.fusion import LatentBuilder, top_p_probs
from latentlm.models.latent_thoughts.passes import frontier_forward
from tests.tiny_llama import save_tiny_llama

EX = ReasoningExample("2+3*4?", ["3*4=12", "2+12=14"], "14")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_llama")
    return save_tiny_llama(d, char_tokenizer(), max_position_embeddings=512, tie_word_embeddings=False)


def model_for(base_dir, method="coconut", **kw) -> Model:
    torch.manual_seed(0)
    return Model(Config(base_model=str(base_dir), method=method, max_seq_len=512, **kw)).eval()


def decode_parts(tok, ids):
    return tok.decode(ids)


# --- curricula and labels ------------------------------------------------------------------------------------------


def test_coconut_stages_replace_steps_with_latents_and_mask_labels(base_dir):
    m = model_for(base_dir, c_thought=2, max_latent_stage=2)
    tok, cfg = m.tokenizer, m.config
    expected = {
        0: "2+3*4?\n<bot><eot>3*4=12\n2+12=14\n### 14<|endoftext|>",
        1: "2+3*4?\n<bot><latent><latent><eot>2+12=14\n### 14<|endoftext|>",
        2: "2+3*4?\n<bot><latent><latent><latent><latent><eot>### 14<|endoftext|>",
    }
    for stage, text in expected.items():
        ids, labels = render(EX, "coconut", stage, cfg, tok)
        assert tok.decode(ids) == text
        first_supervised = text.index("<eot>") + len("<eot>")  # everything up to <eot> is context
        n_ctx = len(
            tok.encode(text[:first_supervised].replace("<bot>", "B").replace("<latent>", "L").replace("<eot>", "E"))
        )
        assert all(l == -100 for l in labels[: n_ctx - 1])
        assert labels[n_ctx - 1 : -1] == ids[n_ctx:] and labels[-1] == -100


def test_lt_tuning_insertion_supervises_thinking_and_stage_one_is_cot(base_dir):
    m = model_for(base_dir, "lt_tuning")
    tok, cfg = m.tokenizer, m.config
    assert render(EX, "lt_tuning", 0, cfg, tok) == render(EX, "cot", 0, cfg, tok)
    ids, labels = render(EX, "lt_tuning", 2, cfg, tok, insertions=[(0, 1), (7, 2)])
    assert tok.decode(ids) == "2+3*4?\n<thinking>3*4=12\n<thinking><thinking>2+12=14\n### 14<|endoftext|>"
    th = tok.token_id("<thinking>")
    q = len(tok.encode("2+3*4?\n"))
    assert labels[q - 1] == th  # the model learns to emit <thinking>
    assert labels[q] == tok.encode("3")[0]  # and the logits at <thinking> predict the next text token


def test_confidence_insertion_picks_low_probability_tokens():
    cfg = Config(lt_threshold=[0.3, 0.2], lt_cap=[2, 8], lt_insert_prob=[1.0, 1.0], lt_second_prob=[0.0, 1.0])
    logp = [math.log(p) for p in (0.9, 0.1, 0.5, 0.05, 0.25, 0.95)]
    assert choose_insertions(logp, 2, cfg, random.Random(0)) == [(1, 2), (3, 2)]  # p < 0.2, both doubled
    assert len(choose_insertions(logp, 1, cfg, random.Random(0))) == 2  # p < 0.3: three candidates, cap 2


def test_pause_and_nocot_layouts(base_dir):
    m = model_for(base_dir, "pause", pause_tokens=2)
    tok = m.tokenizer
    assert tok.decode(render(EX, "pause", 0, m.config, tok)[0]) == "2+3*4?\n<latent><latent>### 14<|endoftext|>"
    assert tok.decode(render(EX, "nocot", 0, m.config, tok)[0]) == "2+3*4?\n### 14<|endoftext|>"
    assert tok.decode(prompt_ids(EX, "coconut", m.config, tok)) == "2+3*4?\n<bot>"


# --- latent embeddings ---------------------------------------------------------------------------------------------


def test_fusion_alpha_one_is_coconut_and_alpha_zero_is_the_probability_weighted_embedding(base_dir):
    m = model_for(base_dir, "lt_tuning")
    E = m.base.get_input_embeddings()
    h, logits = torch.randn(32), torch.randn(E.weight.shape[0]) * 3
    th = m.ids["<thinking>"]
    one = LatentBuilder("fusion", E, alpha=1.0, masked=[th])
    assert torch.equal(one(h, logits), LatentBuilder("hidden", E)(h, logits))
    zero = LatentBuilder("fusion", E, alpha=0.0, top_p=0.9, masked=[th])
    p = logits.clone()
    p[th] = -math.inf
    p = p.softmax(-1)
    order = p.argsort(descending=True)
    keep = p[order].cumsum(0) <= 0.9
    keep[0] = True
    w = torch.zeros_like(p)
    w[order[keep]] = p[order[keep]]
    w = w / w.sum()
    assert w[th] == 0
    torch.testing.assert_close(zero(h, logits), w @ E.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(top_p_probs(logits, 0.9, 1.0, [th]), w, atol=1e-6, rtol=0)


# --- the batched multi-pass forward --------------------------------------------------------------------------------


def naive_logits(m, ids, latent, builder):
    """Token by token: every latent built from a full HF forward over everything before it."""
    E = m.base.get_input_embeddings()
    embs = []
    for t in range(ids.shape[0]):
        if latent[t]:
            out = m.base(inputs_embeds=torch.stack(embs)[None], output_hidden_states=True)
            embs.append(builder(out.hidden_states[-1][0, -1], out.logits[0, -1]))
        else:
            embs.append(E(ids[t]))
    return m.base(inputs_embeds=torch.stack(embs)[None]).logits[0]


@pytest.mark.parametrize("method, stage", [("coconut", 2), ("lt_tuning", 2)])
def test_frontier_passes_equal_naive_recompute_in_logits_and_gradients(base_dir, method, stage):
    m = model_for(base_dir, method)
    torch.manual_seed(1)
    B, T = 3, 20
    ids = torch.randint(1, 90, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[2, 15:] = 0
    marker = m.latent_ids[0]
    for b, pos in enumerate([[4, 5, 9], [7], [2, 3, 4, 5]]):
        ids[b, pos] = marker
    latent = m.latent_mask(ids, mask)
    builder = m.builder(stage)
    logits, _, n_pass, _ = frontier_forward(m.runner, ids, mask, latent, builder)
    assert n_pass == 4 + 1  # max latents in a row + 1, not |union of positions| + 1 = 7
    assert len({p for row in latent.tolist() for p, x in enumerate(row) if x}) + 1 == 7
    params = [p for p in m.parameters() if p.requires_grad]
    g1 = torch.autograd.grad(
        sum(logits[b, : int(mask[b].sum())].square().sum() for b in range(B)), params, allow_unused=True
    )
    ref = [naive_logits(m, ids[b, : int(mask[b].sum())], latent[b], builder) for b in range(B)]
    for b in range(B):
        torch.testing.assert_close(logits[b, : int(mask[b].sum())], ref[b], atol=1e-5, rtol=0)
    g2 = torch.autograd.grad(sum(r.square().sum() for r in ref), params, allow_unused=True)
    for a, c in zip(g1, g2):
        if a is not None or c is not None:
            torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-4)


def test_zero_latents_is_the_cot_sft_loss(base_dir):
    m = model_for(base_dir, "coconut")
    ids, labels = render(EX, "cot", 0, m.config, m.tokenizer)
    x, y = torch.tensor([ids]), torch.tensor([labels])
    ours = m(x, labels=y).loss
    ref = torch.nn.functional.cross_entropy(m.base(input_ids=x).logits[0], y[0], ignore_index=-100)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    logits, _, n_pass, _ = frontier_forward(m.runner, x, None, torch.zeros_like(x, dtype=torch.bool), m.builder())
    assert n_pass == 1
    torch.testing.assert_close(logits, m.base(input_ids=x).logits, atol=1e-5, rtol=0)


# --- generation and policies ---------------------------------------------------------------------------------------


def test_cached_generation_equals_recompute_with_latent_steps(base_dir):
    m = model_for(base_dir, "coconut", n_latents=3)
    tok = m.tokenizer
    prompts = [
        prompt_ids(EX, "coconut", m.config, tok),
        prompt_ids(ReasoningExample("9-4?", [], "5"), "coconut", m.config, tok),
    ]
    T = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_id] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    out, info = m.generate(ids, 10, attention_mask=mask, eos_token_id=-1, return_trace=True)
    assert info["latent_steps"].tolist() == [3, 3]
    builder = m.builder()
    E = m.base.get_input_embeddings()
    for b, p in enumerate(prompts):  # recompute each row alone, no cache, from the HF forward
        embs = [E(torch.tensor(t)) for t in p]
        gen = out[b, T:].tolist()
        for step, tokid in enumerate(gen):
            o = m.base(inputs_embeds=torch.stack(embs)[None], output_hidden_states=True)
            if step < 3:
                assert tokid == m.ids["<latent>"]
                embs.append(builder(o.hidden_states[-1][0, -1], o.logits[0, -1]))
            else:
                expected = m.ids["<eot>"] if step == 3 else int(o.logits[0, -1].argmax())
                assert tokid == expected
                embs.append(E(torch.tensor(tokid)))


def test_policies_switch_where_they_should():
    V = 10
    logits = lambda top, p: torch.log(torch.tensor([[p if i == top else (1 - p) / (V - 1) for i in range(V)]]))
    fixed = P.FixedCount(2, eot_id=7, latent_id=8)
    fixed.reset(1, "cpu")
    decisions = [fixed.decide(logits(0, 0.9)) for _ in range(4)]
    assert [bool(l) for l, _ in decisions] == [True, True, False, False]
    assert [int(f) for _, f in decisions] == [-1, -1, 7, -1]
    learned = P.LearnedThinking(thinking_id=3)
    learned.reset(1, "cpu")
    assert bool(learned.decide(logits(3, 0.6))[0]) and not bool(learned.decide(logits(4, 0.6))[0])
    thr = P.ConfidenceThreshold(tau=0.5, cap=2, marker=3)
    thr.reset(1, "cpu")
    assert [bool(thr.decide(logits(1, p))[0]) for p in (0.3, 0.9, 0.2, 0.1)] == [True, False, True, False]  # cap 2
    cold = P.ColdStop(tau=0.1, k=2, cap=10, answer_id=5)
    cold.reset(1, "cpu")
    seq = [cold.decide(logits(1, p)) for p in (0.5, 0.999, 0.999, 0.999)]
    assert [bool(l) for l, _ in seq] == [True, True, False, False] and int(seq[2][1]) == 5
    cold.reset(1, "cpu")
    assert int(cold.decide(logits(5, 0.6))[1]) == 5  # the answer marker ends thinking at once


# --- data ----------------------------------------------------------------------------------------------------------


def test_generated_reasoning_data_is_consistent():
    rng = random.Random(3)
    for _ in range(20):
        ex = prosqa_example(rng, n_nodes=12, min_steps=1, max_steps=3)
        entity = ex.answer.split(" is a ")[0]
        assert ex.steps[0].startswith(f"{entity} is a ") and ex.answer.endswith(ex.steps[-1].split(" is a ")[-1])
        for s in ex.steps:
            assert s in ex.question  # every step is a stated fact
    for _ in range(20):  # ProntoQA: re-derive the truth value from the rules
        ex = prontoqa_example(rng)
        facts = ex.question.split(" True or false: ")[0]
        query = ex.question.split(" True or false: ")[1].rstrip(".")
        negated_rule = " is not " in ex.steps[-1]
        asked_not = " is not " in query
        assert ex.answer == ("True" if negated_rule == asked_not else "False")
        assert ex.steps[-1].split(". ")[1] in facts


def test_reasoning_file_loader_formats_and_errors(tmp_path):
    icot = tmp_path / "train.txt"
    icot.write_text("Tom has 16 eggs and eats 3||<<16-3=13>> <<13*2=26>> #### 26\n")
    ex = load_examples(icot)[0]
    assert ex.steps == ["<<16-3=13>>", "<<13*2=26>>"] and ex.answer == "26"
    js = tmp_path / "gsm.jsonl"
    js.write_text('{"question": "q", "answer": "step one\\nstep two\\n#### 1,000"}\n{"question": "q2"}\n')
    with pytest.raises(InputError, match=r"gsm.jsonl:2: missing field .answer."):
        load_examples(js)


# --- bad input -----------------------------------------------------------------------------------------------------


def test_bad_inputs(base_dir, tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        tmp_path / "vit"
    )
    char_tokenizer().save(tmp_path / "vit")
    with pytest.raises(InputError, match="is not a causal LM"):
        Model(Config(base_model=str(tmp_path / "vit"), method="cot"))
    with pytest.raises(InputError, match="no HF model folder"):
        Model(Config(base_model=str(tmp_path / "nothing"), method="cot"))
    with pytest.raises(InputError, match="missing the special tokens <bot>, <eot>, <latent>, <thinking>"):
        check_special_tokens(char_tokenizer())
    lm = model_for(base_dir, "coconut")
    ids = torch.tensor([[0, 0, 5, lm.ids["<latent>"], 6]])
    with pytest.raises(InputError, match="must be right-padded"):
        frontier_forward(lm.runner, ids, torch.tensor([[0, 0, 1, 1, 1]]), lm.latent_mask(ids, None), lm.builder())
    m = model_for(base_dir, "coconut", c_thought=300, max_latent_stage=2)  # 600 latents at stage 2
    from latentlm.models.latent_thoughts.source import curriculum_source

    with pytest.raises(
        InputError, match=r"train example 0: .* need up to \d+ tokens .* more than model.max_seq_len=512"
    ):
        curriculum_source([EX], type("R", (), {"model": m.config})(), m.tokenizer, 1, seed=0)  # checked up front


def test_coconut_trains_through_the_shared_trainer_across_a_stage_change(base_dir, tmp_path, monkeypatch):
    """Same trainer, run directory and loader: stage 0 (CoT) then stage 1 with latents, optimizer reset, reload."""
    import json

    from latentlm.config import load_config
    from latentlm.eval.reasoning import evaluate_run
    from latentlm.train.checkpoint import load_run
    from latentlm.train.trainer import train

    monkeypatch.setenv("LATENTLM_DATA", str(tmp_path / "data"))
    cfg = load_config(
        None,
        [
            "--model.variant=latent_thoughts",
            f"--model.base_model={base_dir}",
            "--model.method=coconut",
            "--model.max_seq_len=512",
            "--model.max_latent_stage=1",
            "--model.stage_steps=[2, 2]",
            "--model.n_latents=1",
            "--data.reasoning=prontoqa:hops=1",
            "--data.tokenizer=model",
            "--data.reasoning_examples=8",
            "--data.seq_len=8",
            "--train.max_steps=4",
            "--train.batch_size=2",
            "--train.reset_optimizer_on_phase=true",
            "--train.lr=1e-3",
            f"--train.out_dir={tmp_path / 'run'}",
            "--train.ckpt_every=2",
            "--eval.every=4",
            "--eval.batches=1",
            "--log.every=1",
            "--log.progress=false",
            "--log.tensorboard=false",
        ],
    )
    summary = train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert [r["phase"] for r in rows] == [0, 0, 1, 1]
    assert "n_latent_passes" not in rows[1] and rows[2]["n_latent_passes"] == 2.0  # 1 latent per row: 2 passes
    assert summary["val"]["loss"] > 0
    model, tok = load_run(tmp_path / "run")
    assert model.config.method == "coconut" and tok.token_id("<latent>") == model.ids["<latent>"]
    res = evaluate_run(model, tok, model.run_config, limit=2, max_new_tokens=8)
    assert res["n"] == 2 and res["latent_steps"] == 1.0 and 0 <= res["accuracy"] <= 1
