"""Arms that depend on other arms: init_from (start from another arm's run of the same seed), eval-only arms
(from: evaluate another arm's checkpoint with other settings), per-arm eval settings and a test set fixed across
seeds, on a chain of tiny latent-thought runs (base -> tuned -> soft; a few steps each)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import latentlm.train.trainer as trainer
from latentlm.cli import main
from latentlm.compare import load_spec, plan_runs, run_compare
from latentlm.compare.runner import last_phase_metrics, sha256
from latentlm.data.reasoning import reasoning_examples
from latentlm.eval.reasoning import evaluate_reasoning
from latentlm.models.latent_thoughts.model import LatentThoughts
from latentlm.rundir import load_run
from tests.compare.conftest import LT_COT, TEST_SEED, lt_chain_spec, tiny_llama_base, tree_digest, write_spec


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The chain grid, trained once; records the weights `tuned` seed 1 holds at its first training forward."""
    root = tmp_path_factory.mktemp("chain")
    base_dir = tiny_llama_base(root / "init")
    spec = lt_chain_spec(base_dir)
    start, capturing = {}, [False]
    forward, train = LatentThoughts.forward, trainer.train

    def capture_forward(self, *a, **k):
        if capturing[0] and self.training and not start:
            start.update({n: t.detach().clone() for n, t in self.state_dict().items()})
        return forward(self, *a, **k)

    def train_capturing(cfg, *a, **k):
        capturing[0] = cfg.train.out_dir.endswith("tuned/seed_1")
        try:
            return train(cfg, *a, **k)
        finally:
            capturing[0] = False

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LatentThoughts, "forward", capture_forward)
        mp.setattr(trainer, "train", train_capturing)
        res = run_compare(spec, root / "out", log=lambda *a: None)
    return {"root": root, "out": root / "out", "spec": spec, "res": res, "start": start, "init": base_dir}


def record(out, arm, seed):
    return json.loads((out / "runs" / arm / f"seed_{seed}" / "compare_run.json").read_text())


def test_an_init_from_run_starts_from_the_source_runs_final_weights(chain):
    out = chain["out"]
    final, _ = load_run(out / "runs/base/seed_1")  # the source's finished checkpoint, loaded independently
    start = chain["start"]
    assert start and set(start) == set(final.state_dict())
    assert all(torch.equal(start[n], t) for n, t in final.state_dict().items())
    init = LatentThoughts(final.config.__class__(**{**final.config.__dict__, "base_model": str(chain["init"])}))
    assert any(not torch.equal(start[n], t) for n, t in init.state_dict().items())  # base training moved them
    rec, src = record(out, "tuned", 1), record(out, "base", 1)
    assert rec["init_from"]["checkpoint_sha256"] == src["checkpoint"]["sha256"]
    cfg = (out / "runs/tuned/seed_1/config.yaml").read_text()
    assert str(out / "runs/base/seed_1/hf_export") in cfg
    assert rec["train"]["steps"] == 2 and src["train"]["steps"] == 3


def test_an_eval_only_arm_equals_evaluating_the_source_checkpoint_directly(chain):
    out, res = chain["out"], chain["res"]
    model, tok = load_run(out / "runs/tuned/seed_1")  # the reference: the source checkpoint, decoded soft
    model.config.latent_embedding = "soft"
    items = reasoning_examples("perm", "test", 4, TEST_SEED)[:4]
    ref = evaluate_reasoning(model, tok, items, policy="cold_stop", batch_size=6)
    got = record(out, "soft", 1)["metrics"]["reasoning"]
    for key in ("n", "accuracy", "correct", "generated_tokens", "latent_steps", "terminated_frac", "policy"):
        assert got[key] == ref[key], key
    assert [s["generated"] for s in got["samples"]] == [s["generated"] for s in ref["samples"]]
    assert got["latent_steps"] > 0 and record(out, "tuned", 1)["metrics"]["reasoning"]["latent_steps"] == 0
    soft = res["arms"]["soft"]
    assert soft["from"] == "tuned" and soft["max_steps"] == 0
    assert soft["summary"]["train_flops"]["mean"] == 0 and soft["summary"]["steps"]["mean"] == 0
    assert all(r["train"]["wall_s"] == 0 for r in soft["runs"].values())
    assert soft["runs"]["1"]["checkpoint"]["sha256"] == res["arms"]["tuned"]["runs"]["1"]["checkpoint"]["sha256"]
    rows = [p for p in res["paired"] if p["metric"] == "reasoning_acc" and {p["a"], p["b"]} == {"tuned", "soft"}]
    assert len(rows) == 1 and rows[0]["n"] == 2


def test_per_arm_eval_settings_and_one_test_set_for_every_seed(chain):
    out = chain["out"]
    fixed = [e.question for e in reasoning_examples("perm", "test", 6, TEST_SEED)[:6]]
    own = [e.question for e in reasoning_examples("perm", "test", 6, 2)[:6]]  # what seed 2 drew before
    assert fixed[:3] != own[:3]
    for arm, n, policy in (("base", 6, "auto"), ("tuned", 6, "auto"), ("soft", 4, "cold_stop")):
        for seed in (1, 2):
            m = record(out, arm, seed)["metrics"]["reasoning"]
            assert m["n"] == n and m["policy"] == policy
            assert [s["question"] for s in m["samples"]] == fixed[:3]
            assert len(m["accuracy_ci95"]) == 2 and m["terminated_frac"] is not None
    assert record(out, "base", 1)["eval_hash"] != record(out, "soft", 1)["eval_hash"]


def test_rerunning_the_chain_trains_exports_and_evaluates_nothing(chain, monkeypatch):
    out = chain["out"]
    before = tree_digest(out / "runs")
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    import latentlm.hf.export as export

    monkeypatch.setattr(export, "export_run", lambda *a, **k: pytest.fail("the source was exported again"))
    again = run_compare(chain["spec"], out, log=lambda *a: None)
    assert tree_digest(out / "runs") == before
    assert again["paired"] == chain["res"]["paired"]


def _copy(chain, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(chain["out"], out)
    return out, write_spec(tmp_path, chain["spec"])


def test_a_retrained_source_invalidates_the_runs_that_start_from_it(chain, tmp_path, capsys):
    out, spec = _copy(chain, tmp_path)
    rec = record(out, "base", 1)  # a retrain leaves another checkpoint (here: one weight changed) and its sha256
    ckpt = out / "runs/base/seed_1" / rec["checkpoint"]["path"]
    weights = load_file(str(ckpt))
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, str(ckpt))
    rec["checkpoint"]["sha256"] = sha256(ckpt)
    (out / "runs/base/seed_1/compare_run.json").write_text(json.dumps(rec))
    before = tree_digest(out)
    rc = main(["compare", str(spec), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "tuned/seed_1 holds a run of another" in err[0]
    )
    assert tree_digest(out) == before


def test_a_source_to_be_retrained_under_a_finished_dependent_is_refused(chain, tmp_path, capsys):
    out, spec = _copy(chain, tmp_path)
    shutil.rmtree(out / "runs/base/seed_2")
    before = tree_digest(out)
    rc = main(["compare", str(spec), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "starts from base seed 2, which is not finished" in err[0]
    assert tree_digest(out) == before


def test_the_last_phase_metrics_are_the_means_over_that_phases_training_rows(tmp_path, chain):
    rows = [{"step": 1, "kind": "train", "phase": 1, "loss": 4.0}, {"step": 2, "kind": "val", "loss": 9.0},
            {"step": 2, "kind": "train", "phase": 2, "loss": 2.0, "latents_per_row": 3.0},
            {"step": 3, "kind": "train", "phase": 2, "loss": 1.0, "latents_per_row": 2.0},
            {"step": 4, "kind": "train", "phase": 2, "loss": 0.0}]  # fmt: skip
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "ki')  # a line cut by a crash
    got = last_phase_metrics(f)
    assert got["phase"] == 2 and got["rows"] == 3
    assert got["means"]["loss"] == 1.0 and got["means"]["latents_per_row"] == 2.5
    run = chain["out"] / "runs/base/seed_1"  # and in a run record, against the run's own metrics.jsonl
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert record(chain["out"], "base", 1)["train"]["last_phase"]["means"]["loss"] == pytest.approx(
        sum(losses) / len(losses)
    )


def test_seed_placeholders_and_seed_offset_in_the_plan(tmp_path):
    spec = lt_chain_spec(tmp_path / "init_{seed}")
    spec["arms"]["base"]["seed_offset"] = 100
    _, runs = plan_runs(load_spec(spec), tmp_path / "out")
    by = {(r.arm, r.seed): r for r in runs}
    assert [(r.arm, r.seed) for r in runs][:2] == [("base", 1), ("base", 2)]
    assert by[("base", 2)].cfg.model.base_model == str(tmp_path / "init_2")
    assert by[("base", 2)].cfg.train.seed == 102 and by[("tuned", 2)].cfg.train.seed == 2
    assert by[("tuned", 2)].cfg.model.base_model == str(tmp_path / "out/runs/base/seed_2/hf_export")


def test_the_order_puts_every_source_before_its_dependents(tmp_path):
    spec = lt_chain_spec(tmp_path)
    spec["arms"] = {"soft": spec["arms"]["soft"], "tuned": spec["arms"]["tuned"], "base": spec["arms"]["base"]}
    _, runs = plan_runs(load_spec(spec), tmp_path / "out")
    assert [r.arm for r in runs] == ["base", "base", "tuned", "tuned", "soft", "soft"]


def _error_line(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    "arms, message",
    [
        ({"a": {"config": LT_COT, "init_from": "nope"}}, "init_from: 'nope' is not an arm"),
        ({"a": {"from": "nope"}}, "from: 'nope' is not an arm"),
        ({"a": {"config": LT_COT, "init_from": "b"}, "b": {"config": LT_COT, "init_from": "a"}},
         "arms a -> b -> a start from each other in a cycle"),
        ({"a": {"config": LT_COT, "init_from": "a"}}, "arms a -> a start from each other in a cycle"),
        ({"a": {"config": LT_COT}, "e": {"from": "a", "overrides": {"train.lr": 1}}}, "trains nothing"),
        ({"a": {"config": LT_COT, "eval_overrides": {"model.policy": "fixed"}}}, "eval_overrides: is for eval-only"),
        ({"a": {"config": LT_COT}, "e": {"from": "a"}, "b": {"config": LT_COT, "init_from": "e"}},
         "'e' is an eval-only arm"),
        ({"a": {"config": LT_COT, "eval": {"policy_": "x"}}}, "unknown key 'policy_'"),
        ({"a": {"config": LT_COT}, "e": {"from": "a", "eval_overrides": {"model.nope": 1}}}, "eval_overrides"),
        ({"a": {"config": "configs/gpt/tiny.yaml"}, "b": {"config": "configs/gpt/tiny.yaml", "init_from": "a"}},
         "init_from needs a variant whose trained model can be the base of another run"),
    ],
)  # fmt: skip
def test_bad_dependent_arms_give_one_error_line_and_write_nothing(tmp_path, capsys, arms, message):
    spec = {**lt_chain_spec(tmp_path / "init"), "arms": arms}
    if "gpt" in str(arms):
        spec["overrides"] = {}
    out = tmp_path / "out"
    assert message in _error_line(capsys, ["compare", str(write_spec(tmp_path, spec)), "--out", str(out)])
    assert not out.exists()


def test_training_a_dependent_arm_alone_needs_its_source_finished(tmp_path, capsys):
    spec = write_spec(tmp_path, lt_chain_spec(tmp_path / "init"))
    line = _error_line(capsys, ["compare", str(spec), "--out", str(tmp_path / "out"), "--arms", "tuned"])
    assert "arm 'tuned' seed 1 starts from arm 'base'" in line and "add it to --arms" in line
    assert not (tmp_path / "out").exists()
