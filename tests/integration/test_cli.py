"""The CLI end to end on a tiny config, in subprocesses, plus each bad input as one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_run_overrides

REPO = Path(__file__).resolve().parents[2]


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "latentlm", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=300,
    )


def test_train_eval_generate_end_to_end(data_root, tmp_path):
    env = {"LATENTLM_DATA": str(data_root)}
    prep = cli("data", "prepare", tmp_path / "corpus.txt", "--vocab-size", 300, env=env)
    assert prep.returncode == 0, prep.stderr
    run = cli("train", "configs/gpt/tiny.yaml", *tiny_run_overrides(tmp_path, **{"train.max_steps": 3}), env=env)
    assert run.returncode == 0, run.stderr
    ev = cli("eval", tmp_path / "run", env=env)
    assert ev.returncode == 0 and "bits/byte" in ev.stdout, ev.stderr
    assert '"val"' in (tmp_path / "run" / "results.json").read_text()
    gen = cli("generate", tmp_path / "run", "--prompt", "ROMEO:", "--max-new-tokens", 12, "--seed", 0, env=env)
    assert gen.returncode == 0 and gen.stdout.startswith("ROMEO:"), gen.stderr
    again = cli("generate", tmp_path / "run", "--prompt", "ROMEO:", "--max-new-tokens", 12, "--seed", 0, env=env)
    assert again.stdout == gen.stdout  # seeded sampling is reproducible


def test_config_verb_prints_a_commented_template_that_trains(tmp_path):
    out = cli("config", "gpt")
    assert out.returncode == 0 and "# Peak learning rate." in out.stdout
    (tmp_path / "c.yaml").write_text(out.stdout)
    from latentlm.config import default_config, load_config

    assert load_config(tmp_path / "c.yaml") == default_config("gpt")


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "/no/such/run"], "error: run directory not found: /no/such/run"),
        (["train", "configs/gpt/tiny.yaml", "--model.variant=nope"], "error: unknown model.variant 'nope'"),
        (["train", "configs/gpt/tiny.yaml", "--data.corpus=/no/such/corpus.txt"], "error: corpus path not found"),
        (["config", "nope"], "error: unknown model.variant 'nope'"),
        (["train", "missing.yaml"], "error: config file not found: missing.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    proc = cli(*args, env={"LATENTLM_DATA": str(tmp_path / "data")})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "is empty"),
        ("binary.txt", b"\x00\x01\x02binary", "looks binary"),
        ("latin1.txt", "caf\u00e9 au lait".encode("latin-1"), "is not UTF-8"),
        ("short.txt", b"To be.", "fewer than one sequence"),
    ],
)
def test_bad_corpora_through_the_cli(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    data = tmp_path / "data"
    out = tmp_path / "run"
    proc = cli(
        "train",
        "configs/gpt/tiny.yaml",
        f"--data.corpus={tmp_path / name}",
        f"--train.out_dir={out}",
        "--data.vocab_size=300",
        "--model.vocab_size=300",
        env={"LATENTLM_DATA": str(data)},
    )
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing written for the run
