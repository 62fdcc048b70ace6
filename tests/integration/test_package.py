"""The installable package: what the wheel holds (configs, task YAMLs, the lm-eval hook), dependency ranges in its
metadata, the CLI's --version / config --list / train --help, and (slow) a clean-venv install running the demo."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_configs_tasks_and_the_lm_eval_hook_with_ranges_not_pins(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"no build backend in this environment: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("latentlm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")}
    assert {f"latentlm/{c}" for c in configs} <= names  # every config of the repository, as package data
    assert {"latentlm-lm_eval.pth", "_latentlm_lm_eval.py", "latentlm/eval/tasks/latentlm_piqa.yaml"} <= names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("Requires-Dist: torch>=") for r in requires)
    assert not [r for r in requires if "==" in r.split(";")[0]], "exact pins belong in constraints.txt"
    pinned = {
        line.split("==")[0].lower() for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    }
    assert {"torch", "transformers", "lm-eval", "safetensors"} <= {p.replace("_", "-") for p in pinned}


def run_cli(capsys, *args):
    from latentlm.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's --version and --help
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_version_config_list_and_train_help(tmp_path, monkeypatch, capsys):
    import latentlm
    from latentlm.shipped import config_path, list_configs

    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped ones must be found
    assert run_cli(capsys, "--version")[:2] == (0, f"latentlm {latentlm.__version__}\n")
    listed = run_cli(capsys, "config", "--list")[1].split()
    on_disk = sorted(str(p.relative_to(REPO / "configs").with_suffix("")) for p in (REPO / "configs").rglob("*.yaml"))
    assert listed == on_disk == list_configs() and "gpt/tiny" in listed
    assert run_cli(capsys, "config", "--list", "gpt")[1].split() == [n for n in on_disk if n.startswith("gpt/")]
    assert config_path("gpt/tiny").read_text() == (REPO / "configs/gpt/tiny.yaml").read_text()  # by name, any cwd
    rc, helptext, _ = run_cli(capsys, "train", "--help")
    assert rc == 0
    for section in ("model", "data", "train", "eval", "log"):
        assert f"\n  {section} " in helptext
    assert "latentlm config VARIANT" in helptext and "seq_len" in helptext
    rc, out, err = run_cli(capsys, "config", "--list", "nope")
    assert (
        rc == 2
        and out == ""
        and err.strip().splitlines()
        == ["error: unknown variant 'nope'; variants: gpt, free_transformer, thoughtbubbles, latent_thoughts"]
    )


@pytest.mark.slow
def test_wheel_in_a_clean_venv_runs_the_demo_and_lm_evals_cli(tmp_path):
    """`make wheel-check`: pip install the built wheel into a fresh venv, then `latentlm demo` from an empty folder."""
    proc = subprocess.run(
        ["bash", str(REPO / "tests/integration/wheel_check.sh"), str(tmp_path / "venv"), "--only", "gpt"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "wheel-check: ok" in proc.stdout and "latentlm_openbookqa" in proc.stdout
