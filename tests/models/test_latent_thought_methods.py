"""The method table (methods.py): every method is declared once, and what it declares is what the code does."""

import pytest

from latentlm.data.reasoning import ReasoningExample
from latentlm.data.tokenizer import char_tokenizer
from latentlm.errors import ConfigError
from latentlm.eval.reasoning import gold_chain_tokens
from latentlm.models.latent_thoughts import Config
from latentlm.models.latent_thoughts.curriculum import choose_insertions, encode_parts, render
from latentlm.models.latent_thoughts.methods import METHODS

EX = ReasoningExample("2+3*4?", ["3*4=12", "2+12=14"], "14")
IGNORE = -100


@pytest.fixture(scope="module")
def tok():
    t = char_tokenizer()
    t.add_special_tokens(Config().special_tokens)
    return t


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_stage_of_every_method_supervises_exactly_the_response_after_the_question(name, tok):
    """In every stage: the question is never supervised, the answer always is, latent markers never are, labels are
    the next input token wherever they are set, and the rendered length stays within the declared bound."""
    m, cfg = METHODS[name], Config(method=name, max_latent_stage=2, c_thought=2)
    q, steps, answer = encode_parts(EX, tok)
    markers = {tok.token_id(t) for t in m.latent_markers} | {tok.token_id("<bot>"), tok.token_id("<latent>")}
    for stage in range(m.n_stages(cfg)):
        ins = [(0, 1), (3, 2)] if m.inserts_thinking and stage > 0 else None
        ids, labels = render(EX, name, stage, cfg, tok, ins)
        assert len(ids) == len(labels) <= len(q) + sum(map(len, steps)) + len(answer) + m.extra_train_tokens(cfg)
        assert all(y == IGNORE for y in labels[: len(q) - 1])  # nothing inside the question is learned
        assert ids[-len(answer) :] == answer and labels[-len(answer) - 1 : -1] == answer  # the answer always is
        for t, y in enumerate(labels[:-1]):
            assert y == IGNORE or y == ids[t + 1]
            if ids[t + 1] in markers - {tok.token_id("<thinking>")}:
                assert y == IGNORE  # latents and <bot> are inputs, not targets


def test_stage_schedules_cover_every_declared_stage_in_order():
    for name, m in METHODS.items():
        cfg = Config(method=name, max_latent_stage=3, stage_steps=[2, 1, 3])
        stages = [m.stage_of(s, cfg) for s in range(40)]
        assert stages == sorted(stages) and stages[-1] == m.n_stages(cfg) - 1 == cfg.n_stages - 1
        assert set(stages) == set(range(m.n_stages(cfg)))  # no stage skipped (every entry of stage_steps > 0)


def test_declared_special_tokens_are_required_and_unknown_methods_rejected():
    for name, m in METHODS.items():
        for t in m.special_tokens:
            with pytest.raises(ConfigError, match=f"lacks.*{t}"):
                Config(method=name, special_tokens=[x for x in Config().special_tokens if x != t]).validate()
    with pytest.raises(ConfigError, match="unknown model.method='quiet_star'"):
        Config(method="quiet_star").validate()
    with pytest.raises(ConfigError, match=r"one value per LT-Tuning insertion stage"):
        Config(method="lt_tuning", lt_cap=[0, 6, 8]).validate()  # the old 3-entry form with a dummy stage-0 value


def test_insertion_is_only_for_stages_one_and_two():
    cfg = Config(method="lt_tuning", lt_threshold=[1.0, 1.0], lt_insert_prob=[1.0, 1.0], lt_second_prob=[0.0, 0.0])
    import random

    assert choose_insertions([-5.0, -5.0], 1, cfg, random.Random(0)) == [(0, 1), (1, 1)]
    with pytest.raises(ValueError, match="stages 1 and 2"):
        choose_insertions([-5.0], 0, cfg, random.Random(0))


def test_the_evaluators_gold_chain_is_the_curriculums_response(tok):
    exs = [EX, ReasoningExample("q?", [], "7"), ReasoningExample("a b?", ["x", "y y", "z"], "w w")]
    assert gold_chain_tokens(exs, tok) == [sum(map(len, s)) + len(a) for _, s, a in (encode_parts(e, tok) for e in exs)]
