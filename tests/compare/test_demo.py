"""`latentlm demo` is a spec over the harness: --only retrains one arm and keeps every finished arm in the summary."""

import latentlm.train.trainer as trainer
from latentlm.compare import load_spec
from latentlm.demo import DEMO_SPEC, run_demo
from tests.compare.conftest import write_spec


def test_demo_only_keeps_the_other_arms_rows(tmp_path, grid_spec, monkeypatch):
    spec = write_spec(tmp_path, {**grid_spec, "seeds": [1], "heldout": [], "eval": {"val_batches": 1}})
    out = tmp_path / "demo"
    run_demo(out, spec=spec)

    def no_training(*a, **k):
        raise AssertionError("finished runs are reused, not retrained")

    monkeypatch.setattr(trainer, "train", no_training)
    run_demo(out, only=["a"], spec=spec)
    summary = (out / "summary.md").read_text()
    assert "| a | gpt |" in summary and "| b | gpt |" in summary  # both arms, although only a was asked for
    assert "One seed per arm" in summary and "Sample from `a` seed 1" in summary


def test_the_shipped_demo_spec_is_one_labelled_seed_of_the_three_tiny_models():
    spec = load_spec(DEMO_SPEC)
    assert [a.name for a in spec.arms] == ["gpt", "free_transformer", "thoughtbubbles"]
    assert len(spec.seeds) == 1 and "one seed" in spec.title and spec.eval.leak
