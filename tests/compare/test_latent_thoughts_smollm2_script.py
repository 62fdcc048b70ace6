"""experiments/latent_thoughts_smollm2.py --quick end to end through the harness (prosqa, 2 seeds, every method)."""

import json

import pytest

from tests.compare.conftest import run_experiment, tree_digest

METHODS = ["nocot", "cot", "pause", "coconut", "lt_tuning", "lt_tuning_adapter", "soft_thinking"]
ROW_FIELDS = {"data", "method", "seed", "n", "accuracy", "accuracy_ci95", "generated_tokens", "latent_steps",
              "terminated_frac", "max_new_tokens", "latent_norm_ratio", "successive_latent_cosine", "policy",
              "correct", "train_time_s", "wall_s", "steps"}  # fmt: skip


def script(tmp_path, *extra):
    return run_experiment("latent_thoughts_smollm2.py", "--quick", "--data", "prosqa", "--seeds", "0", "1", "--runs",
                          str(tmp_path / "runs"), "--results", str(tmp_path / "results"), *extra)  # fmt: skip


@pytest.mark.slow
def test_quick_runs_through_the_harness_reruns_reuse_every_run_and_a_changed_setting_is_refused(tmp_path):
    first = script(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "results/latent_thoughts_smollm2.json").exists()  # --quick has its own files
    res = json.loads((tmp_path / "results/latent_thoughts_quick.json").read_text())
    assert res["quick"] is True and res["seeds"] == [0, 1] and res["test_seed"] == 1337
    assert (res["n_train"], res["n_test"], res["steps"]) == (16, 4, 6)
    assert len(res["rows"]) == 2 * len(METHODS)
    for row in res["rows"]:
        assert ROW_FIELDS <= set(row) and row["data"] == "prosqa" and row["n"] == 4
    rows = {(r["method"], r["seed"]): r for r in res["rows"]}
    assert rows[("soft_thinking", 0)]["policy"] == "cold_stop" and rows[("soft_thinking", 0)]["steps"] == 0
    assert rows[("soft_thinking", 1)]["train_time_s"] == 0 and rows[("soft_thinking", 1)]["latent_steps"] > 0
    assert rows[("coconut", 0)]["latent_steps"] > 0 and rows[("cot", 0)]["steps"] == 6
    methods = res["methods"]["prosqa"]
    assert list(methods) == METHODS
    for m in methods.values():
        lo, hi = m["acc_ci95_wilson"]
        assert m["seeds"] == [0, 1] and 0 <= lo <= m["acc_mean"] <= hi <= 1 and m["acc_sd"] is not None
    paired = res["paired"]["prosqa"]
    assert len(paired) == 9 and all(p["n_seeds"] == 2 and len(p["ci95"]) == 2 for p in paired)
    assert ("soft_thinking", "cot") in {(p["a"], p["b"]) for p in paired}
    md = (tmp_path / "results/latent_thoughts_quick.md").read_text()
    assert "Paired differences" in md and "cannot show" in md
    # the test items are the same for every run: one file, excluded from every training run
    test_file = tmp_path / "runs/prosqa/test_n4.jsonl"
    assert len(test_file.read_text().splitlines()) == 4
    runs = tmp_path / "runs/prosqa/compare/runs"
    rec = json.loads((runs / "pause/seed_1/compare_run.json").read_text())
    assert rec["overrides"]["data"]["reasoning_exclude"] == str(test_file)
    before = tree_digest(runs)
    again = script(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert " train " not in again.stdout and again.stdout.count("reuse") == 2 * len(METHODS)
    assert tree_digest(runs) == before
    bad = script(tmp_path, "--train", "24")  # another config under the same runs: refused, nothing overwritten
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert tree_digest(runs) == before


def test_one_seed_or_the_other_flag():
    out = run_experiment("latent_thoughts_smollm2.py", "--quick", "--seed", "0", "--seeds", "1")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: give --seed N or --seeds N [N ...], not both"
    ]
