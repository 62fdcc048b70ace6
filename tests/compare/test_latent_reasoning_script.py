"""experiments/latent_reasoning.py end to end through the harness on a smoke grid (perm, 2 seeds, every method)."""

import json

import pytest

from tests.compare.conftest import run_experiment, tree_digest

SMOKE = ["--tasks", "perm", "--seeds", "0", "1", "--train", "64", "--test", "16", "--base-steps", "4", "--steps",
         "9", "--batch", "4", "--hidden", "16", "--layers", "1", "--heads", "2"]  # fmt: skip


def script(tmp_path, *extra):
    return run_experiment("latent_reasoning.py", *SMOKE, "--runs", str(tmp_path / "runs"), "--results",
                          str(tmp_path / "results"), *extra)  # fmt: skip


@pytest.mark.slow
def test_the_study_runs_through_the_harness_reruns_reuse_every_run_and_the_report_has_the_issue_schema(tmp_path):
    first = script(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    methods = ["cot_base", "nocot", "pause", "cot", "coconut", "coconut_paper", "lt_tuning", "lt_tuning_adapter",
               "lt_tuning_forced", "soft_thinking", "soft_thinking_nocold"]  # fmt: skip
    res = json.loads((tmp_path / "results/latent_reasoning.json").read_text())["tasks"]["perm"]
    assert set(res) == {"n_test", "trivial", "methods", "paired"} and res["n_test"] == 16
    assert list(res["methods"]) == methods
    for m in res["methods"].values():
        assert m["seeds"] == [0, 1] and len(m["acc"]) == 2 and m["terminated_frac"] is not None
    assert all(set(p) == {"a", "b", "mean_diff", "ci95"} for p in res["paired"]) and len(res["paired"]) == 15
    details = json.loads((tmp_path / "results/latent_reasoning_details.json").read_text())["tasks"]["perm"]
    assert details["methods"]["lt_tuning"]["thinking_in_training"] is not None
    assert details["methods"]["soft_thinking"]["latent_steps_mean"] > 0
    assert details["methods"]["soft_thinking"]["train_s_mean"] == 0
    grid = tmp_path / "runs/perm/compare"
    runs = grid / "runs"
    before = tree_digest(runs)
    again = script(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert " train " not in again.stdout and again.stdout.count("reuse") == 2 * len(methods)  # every arm x 2 seeds
    assert tree_digest(runs) == before
    bad = script(tmp_path, "--steps", "10")  # another config under the same runs: refused
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert tree_digest(runs) == before
