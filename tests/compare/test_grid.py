"""The harness end to end on a 2-arm x 2-seed grid of tiny GPTs (a few steps each)."""

import hashlib
import json
import math

import pytest

import latentlm.train.trainer as trainer
from latentlm.cli import main
from latentlm.compare import run_compare
from tests.compare.conftest import tree_digest, write_spec


@pytest.fixture
def grid(tmp_path, grid_spec):
    out = tmp_path / "out"
    res = run_compare(write_spec(tmp_path, grid_spec), out, log=lambda *a: None)
    return out, res, grid_spec


def test_an_arm_against_itself_differs_by_exactly_zero_and_reruns_reuse_every_run(tmp_path, grid, monkeypatch):
    out, res, spec = grid
    saved = json.loads((out / "compare.json").read_text())
    assert saved["complete"] and saved["missing"] == []
    rows = {p["metric"]: p for p in saved["paired"] if (p["a"], p["b"]) == ("a", "b")}
    assert set(rows) == {"val_bpb", "heldout_bpb:heldout", "choice_acc_norm:choice"}
    for p in rows.values():  # b is a's config under another name: same seed, same data order -> same numbers
        assert p["n"] == 2 and p["mean_diff"] == 0.0 and p["ci95"] == [0.0, 0.0] and not p["significant"]
        assert p["caveat"] is None  # two exact causal likelihoods
    a = saved["arms"]["a"]
    bpb = a["summary"]["val_bpb"]["values"]
    assert bpb["1"] != bpb["2"]  # the seeds are different runs, so the zero is the pairing, not a constant
    for seed, run in a["runs"].items():  # checkpoint hashes recomputed independently
        ckpt = out / "runs" / "a" / f"seed_{seed}" / run["checkpoint"]["path"]
        assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == run["checkpoint"]["sha256"]
        assert math.isfinite(run["metrics"]["heldout"]["heldout"]["bits_per_byte"])
        assert run["metrics"]["leak"]["max_abs_dlogp"] < 1e-4
    md = (out / "compare.md").read_text()
    assert "paired_diff" in md and "Student-t" in md and "unigram" in md and "Wilson interval of each run" in md
    assert "| chance (trivial baseline) | 0.500 |" in md
    assert all(
        (out / f).is_file() for f in ("compare_val_bpb.png", "compare_loss_curves.png", "compare_bpb_vs_flops.png")
    )

    before = tree_digest(out / "runs")
    mtimes = {p: (out / "runs" / p).stat().st_mtime_ns for p in before}

    def no_training(*a, **k):
        raise AssertionError("a finished run with a matching config hash was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    again = run_compare(write_spec(tmp_path, spec), out, log=lambda *a: None)
    assert tree_digest(out / "runs") == before  # metrics.jsonl, checkpoints and records untouched
    assert {p: (out / "runs" / p).stat().st_mtime_ns for p in before} == mtimes
    assert again["paired"] == saved["paired"]


def test_a_changed_config_under_the_same_grid_is_refused_and_nothing_is_overwritten(tmp_path, grid, capsys):
    out, _, spec = grid
    before = tree_digest(out)
    spec["arms"]["b"]["overrides"] = {"train.lr": 1e-3}
    rc = main(["compare", str(write_spec(tmp_path, spec, "changed.yaml")), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "another config" in err[0]
    assert tree_digest(out) == before


def test_arms_filter_trains_only_those_and_aggregate_only_trains_nothing(tmp_path, grid_spec, monkeypatch):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, {**grid_spec, "seeds": [1]})
    part = run_compare(spec, out, arms=["b"], log=lambda *a: None)
    assert part["missing"] == ["a/seed_1"] and not part["complete"] and "a/seed_1" in (out / "compare.md").read_text()
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("aggregate-only must not train"))
    agg = run_compare(spec, out, aggregate_only=True, log=lambda *a: None)
    assert agg["missing"] == ["a/seed_1"] and list(agg["arms"]["b"]["runs"]) == ["1"]


@pytest.mark.slow
@pytest.mark.distributed
def test_under_torchrun_every_run_of_the_grid_trains_with_ddp_and_matches_one_process(tmp_path, grid_spec):
    """Two runs in one torchrun job (the process group is created once for the grid: re-creating it between runs
    on the same rendezvous store hangs), each DDP over 2 ranks, equal to the single-process grid."""
    import os
    import subprocess
    import sys

    spec = write_spec(tmp_path, {**grid_spec, "arms": {"a": grid_spec["arms"]["a"]}, "heldout": []})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "latentlm"]
    proc = subprocess.run(
        [*cmd, "compare", str(spec), "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "compare.json").read_text())["arms"]["a"]["runs"]
    single = run_compare(spec, tmp_path / "single", log=lambda *a: None)["arms"]["a"]["runs"]
    assert set(ddp) == set(single) == {"1", "2"}
    for seed in ddp:
        assert ddp[seed]["train"]["tokens_seen"] == single[seed]["train"]["tokens_seen"]
        val = ddp[seed]["metrics"]["val"]["bits_per_byte"], single[seed]["metrics"]["val"]["bits_per_byte"]
        assert val[0] == pytest.approx(val[1], abs=1e-5)
