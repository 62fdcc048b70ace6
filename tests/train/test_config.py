from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentlm.config import RunConfig, build, default_config, load_config, parse_overrides, to_yaml
from latentlm.errors import ConfigError
from latentlm.models import build_model

REPO = Path(__file__).resolve().parents[2]
# configs/compare/ holds comparison specs (latentlm compare), tested in tests/compare/
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "compare")


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["--train.lr=1e-4", "--model.n_layers=3", "--train.resume=false", "--data.reasoning=null"])
    (tmp_path / "c.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg
    assert cfg.train.lr == 1e-4 and cfg.model.n_layers == 3 and cfg.train.resume == "false"


def test_commented_template_documents_every_field_and_parses_to_the_defaults():
    text = to_yaml(default_config("gpt"), comments=True)
    assert "# Peak learning rate." in text and "# Width of the residual stream." in text
    assert build(RunConfig, yaml.safe_load(text)) == default_config("gpt")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """Stand-in for a pretrained base model (configs naming smollm2 must build without preparing it in CI)."""
    from latentlm.data.tokenizer import char_tokenizer
    from tests.tiny_llama import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("base"), char_tokenizer(), layers=1, heads=2, kv_heads=1)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_every_shipped_config_loads_and_builds(path, tiny_base):
    cfg = load_config(path)
    if path.name.startswith("paper_"):  # paper-scale (up to 8B): built on the meta device by test_paper_recipes.py
        return
    if cfg.model.variant == "latent_thoughts":
        cfg = load_config(path, [f"--model.base_model={tiny_base}"])
    model = build_model(cfg.model)
    assert model.vocab_size >= 1 and cfg.data.seq_len <= cfg.model.max_seq_len


@pytest.mark.parametrize(
    "override, message",
    [
        ("--train.lr=fast", "train.lr: expected float, got 'fast' (str)"),
        ("--train.max_steps=1.5", "train.max_steps: expected int, got 1.5 (float)"),
        ("--train.schedule=linear", "train.schedule: expected one of 'cosine', 'wsd', 'constant', got 'linear'"),
        ("--train.lrr=1", "unknown config key 'train.lrr'; did you mean train.lr?"),
        ("--train.lr=.nan", "train.lr must be a finite number >= 0, got nan"),
        ("--model.variant=gtp", "unknown model.variant 'gtp'; did you mean 'gpt'?"),
        ("--data.seq_len=999", "data.seq_len=999 exceeds model.max_seq_len=256"),
        ("--train.batch_size=10", "train.batch_size=10 is not divisible by train.grad_accum=3"),
    ],
)
def test_bad_values_name_the_field(override, message):
    extra = (
        ["--train.grad_accum=3", "--train.batch_size=12"] if "batch_size" not in override else ["--train.grad_accum=3"]
    )
    with pytest.raises(ConfigError) as e:
        load_config(None, [override, *extra])
    assert message in str(e.value)


KEYS = [
    "train.lr",
    "train.max_steps",
    "train.schedule",
    "model.d_model",
    "model.n_heads",
    "model.n_kv_heads",
    "data.seq_len",
    "data.corpus",
    "eval.every",
    "log.tensorboard",
    "train.nope",
    "model",
    "bogus.key",
    "train",
]
VALUES = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 3), max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_fuzzed_overrides_raise_nothing_but_config_errors(pairs):
    overrides = [
        f"--{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}" for k, v in pairs
    ]
    try:
        cfg = load_config(None, overrides)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    build_model(cfg.model) if cfg.model.d_model <= 512 else None


def test_override_parsing():
    assert parse_overrides(["--train.lr", "0.5", "--model.n_layers=2"]) == {
        "train": {"lr": 0.5},
        "model": {"n_layers": 2},
    }
    assert load_config(None, ["--train.lr", "3e-4"]).train.lr == 3e-4  # YAML 1.1 reads 3e-4 as a string
    with pytest.raises(ConfigError, match="has no value"):
        parse_overrides(["--train.lr"])
