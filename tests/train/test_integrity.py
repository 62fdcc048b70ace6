"""Run integrity: the run-directory lock, checksum fallback, disk full, resume hygiene, data identity, sliding
generation, report labels and partial marks, the export guard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from latentlm.config import load_config
from latentlm.errors import InputError
from latentlm.train.checkpoint import find_checkpoint, load_run
from latentlm.train.trainer import train
from tests.conftest import tiny_gpt_config, tiny_run_overrides

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs/gpt/tiny.yaml"


def cfg_for(tmp_path, **extra):
    return load_config(TINY, tiny_run_overrides(tmp_path, **extra))


def metric_steps(run: Path, kind="train") -> list[int]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["kind"] == kind]


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


# --- the lock ---------------------------------------------------------------------------------------------


def test_second_trainer_is_refused_and_sigint_says_how_to_resume(data_root, tmp_path):
    over = tiny_run_overrides(tmp_path, **{"train.max_steps": 100000, "train.ckpt_every": 2, "eval.every": 0})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LATENTLM_DATA": str(data_root)}
    first = subprocess.Popen(
        [sys.executable, "-m", "latentlm", "train", str(TINY), *over],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run started as a background job (`cmd &`, nohup) ignores SIGINT, and the child
        # would inherit that and train on through the Ctrl-C this test sends
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    run = tmp_path / "run"
    try:
        deadline = time.time() + 180
        while find_checkpoint(run) is None:  # in its training loop, holding the lock
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() else "slow"
            time.sleep(0.2)
        before = (run / "config.yaml").read_text()
        with pytest.raises(InputError, match=rf"is in use by another training \(process {first.pid} on "):
            train(cfg_for(tmp_path, **{"train.max_steps": 100000, "train.ckpt_every": 2, "eval.every": 0}))
        assert (run / "config.yaml").read_text() == before
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: training stopped at step ")
    assert "run the same command again to resume from step" in lines[0]
    assert not (run / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_removed(data_root, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{dead.pid} {os.uname().nodename}\n")
    train(cfg_for(tmp_path, **{"train.max_steps": 2, "eval.every": 0}))
    assert f"removed the stale lock of dead process {dead.pid}" in capsys.readouterr().err
    assert find_checkpoint(run).name == "step_000002" and not (run / ".lock").exists()


def test_live_lock_is_respected(data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()} {os.uname().nodename}\n")  # this very process: alive
    with pytest.raises(InputError, match="is in use by another training"):
        train(cfg_for(tmp_path, **{"train.max_steps": 2, "eval.every": 0}))
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


# --- checksums, fallback, resume hygiene -------------------------------------------------------------------


def test_damaged_latest_checkpoint_falls_back_and_resume_stays_exact(data_root, tmp_path, capsys):
    common = {"eval.every": 0, "train.ckpt_every": 4, "train.schedule": "constant"}  # lr independent of max_steps
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 10, "train.out_dir": tmp_path / "full"}))
    part = tmp_path / "part"
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 8, "train.out_dir": part}))
    manifest = json.loads((part / "checkpoints/step_000008/manifest.json").read_text())
    assert manifest["latentlm"] and set(manifest["sha256"]) >= {"model.safetensors", "optimizer.pt", "config.yaml"}
    opt = part / "checkpoints/step_000008/optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])  # truncated
    (part / "checkpoints/.tmp-step_000012-99999").mkdir()  # a killed writer's leftover
    capsys.readouterr()
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 10, "train.out_dir": part}))
    out = capsys.readouterr()
    assert "warning: checkpoint file" in out.err and "optimizer.pt is corrupted" in out.err
    assert "using the previous checkpoint" in out.err and "step_000004" in out.err
    assert f"resumed from step 4 (checkpoint {part / 'checkpoints/step_000004'})" in out.out
    assert not list((part / "checkpoints").glob(".tmp-*"))
    a, b = losses(tmp_path / "full"), losses(part)
    assert all(a[s] == b[s] for s in range(1, 11))  # steps 5-8 redone bit-identically
    assert metric_steps(part) == list(range(1, 11))  # each step once: rows after step 4 were cut on resume


class Killed(BaseException):
    """Stands for SIGKILL after a step (in-process, so the test needs no second interpreter)."""


def test_resume_after_a_crash_keeps_each_metrics_and_tensorboard_step_once(data_root, tmp_path):
    from latentlm.train import hooks

    class Die(hooks.TrainHook):
        def after_step(self, step):
            if step == 6:
                raise Killed

    over = tiny_run_overrides(tmp_path, **{"train.max_steps": 8, "eval.every": 4, "log.tensorboard": True})
    with hooks.installed(Die()), pytest.raises(Killed):
        train(load_config(TINY, over))
    run = tmp_path / "run"
    assert metric_steps(run) == list(range(1, 7)) and find_checkpoint(run).name == "step_000004"
    train(load_config(TINY, over))
    assert metric_steps(run) == list(range(1, 9)) and metric_steps(run, "val") == [4, 8]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))  # purge_step dropped the old 5-6


def _fill(path: Path, leave: int) -> Path:
    st = os.statvfs(path)
    filler = path / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_disk_full_during_checkpoint_keeps_the_previous_one(data_root, tmp_path):
    from tests.integration.test_fuzz_cli import invoke

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mount.stderr.strip() or 'not root'}); see the ENOSPC fault test"
        )
    try:
        over = tiny_run_overrides(tmp_path, **{"train.out_dir": mnt / "run", "eval.every": 0})
        assert invoke(["train", TINY, *over, "--train.max_steps=4"])[0] == 0
        filler = _fill(mnt, leave=64 * 1024)  # room for log rows, not for a checkpoint
        rc, err = invoke(["train", TINY, *over])
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "could not write the checkpoint of step 8" in err and "disk full" in err
        assert "step_000004 is intact" in err
        assert not list((mnt / "run/checkpoints").glob(".tmp-*"))
        assert find_checkpoint(mnt / "run").name == "step_000004"
        load_run(mnt / "run")  # verifies against its manifest
        filler.unlink()
        assert invoke(["train", TINY, *over])[0] == 0
        assert find_checkpoint(mnt / "run").name == "step_000008"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_enospc_fault_in_the_checkpoint_writer(data_root, tmp_path):
    from latentlm.train import hooks
    from tests.faults import Fault

    train(cfg_for(tmp_path, **{"train.max_steps": 4, "eval.every": 0}))
    with (
        hooks.installed(Fault("enospc_in_checkpoint:8")),
        pytest.raises(InputError, match=r"step 8 .*disk full.*step_000004 is intact"),
    ):
        train(cfg_for(tmp_path, **{"eval.every": 0}))
    assert not list((tmp_path / "run/checkpoints").glob(".tmp-*"))
    assert find_checkpoint(tmp_path / "run").name == "step_000004"


# --- data identity --------------------------------------------------------------------------------------------


def test_edited_corpus_is_prepared_again_and_a_resume_on_it_is_refused(data_root, tmp_path):
    from latentlm.data.corpora import iter_documents, prepare_tokens

    corpus = tmp_path / "corpus.txt"
    train(cfg_for(tmp_path, **{"train.max_steps": 2, "eval.every": 0}))
    shards = prepare_tokens(str(corpus), "bpe", 300)
    corpus.write_text(corpus.read_text().replace("ROMEO", "MERCUTIO") + "\nA new line of verse.\n")
    again = prepare_tokens(str(corpus), "bpe", 300)
    assert again == shards and "MERCUTIO" in next(iter_documents(again.parent))
    with pytest.raises(InputError, match="the run's tokenizer .* differs from the data's tokenizer"):
        train(cfg_for(tmp_path, **{"train.max_steps": 4, "eval.every": 0}))
    meta = json.loads((shards / "meta.json").read_text())
    forced = prepare_tokens(str(corpus), "bpe", 300, force=True)
    assert json.loads((forced / "meta.json").read_text())["documents_sha256"] == meta["documents_sha256"]


# --- generation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["gpt", "thoughtbubbles"])
def test_sliding_generation_matches_a_naive_cropping_loop(variant):
    from latentlm.generation import generate
    from latentlm.models import build_model
    from latentlm.models.gpt import GPT
    from latentlm.nn import SamplingConfig

    if variant == "gpt":
        model = GPT(tiny_gpt_config(max_seq_len=16)).eval()
    else:  # forks recomputed from the window's tokens on every prefill
        over = ["--model.max_seq_len=16", "--data.seq_len=16", "--model.d_model=32", "--model.vocab_size=64"]
        model = build_model(load_config(REPO / "configs/thoughtbubbles/tiny.yaml", over).model).eval()
    prompt = torch.randint(0, 64, (1, 5))
    out = generate(model, prompt, 40, SamplingConfig(temperature=0.0))
    ids = prompt
    with torch.no_grad():
        for _ in range(40):  # nanoGPT: predict from the last window of tokens, recomputed from scratch
            logits = model(ids[:, -15:]).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)
    a = generate(model, prompt, 40, SamplingConfig(temperature=1.0, seed=3))
    b = generate(model, prompt, 40, SamplingConfig(temperature=1.0, seed=3))
    assert torch.equal(a, b) and a.shape == (1, 45)


def test_sliding_is_refused_where_the_context_holds_latents():
    from latentlm.generation import generate

    for cfg in (
        SimpleNamespace(max_seq_len=16, variant="latent_thoughts"),
        SimpleNamespace(max_seq_len=16, variant="free_transformer", latent=True),
    ):
        with pytest.raises(InputError, match=r"cannot slide its window .*use --max-new-tokens <= 11"):
            generate(SimpleNamespace(config=cfg), torch.zeros(1, 5, dtype=torch.long), 40)


# --- report and export --------------------------------------------------------------------------------------


def test_report_labels_runs_by_path_and_marks_partial_evaluations(tmp_path):
    from latentlm.eval.report import build_report
    from latentlm.results import merge_results
    from tests.eval.test_report import fake_run

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = fake_run(tmp_path / "a", "gpt", "gpt", 2.5, 7e6)
    b = fake_run(tmp_path / "b", "gpt", "gpt", 2.25, 7e6)
    results = json.loads((b / "results.json").read_text())
    (b / "results.json").unlink()
    merge_results(b, "val[max_batches=2]", results["val"])
    text = build_report([a, b], tmp_path / "out").read_text()
    assert "| a/gpt | gpt |" in text and "| b/gpt | gpt |" in text
    assert "2.2500* |" in text and "*partial: max_batches=2" in text and "2.5000 |" in text


def test_export_guard(tmp_path):
    from latentlm.hf.export import check_export_target

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("x")
    for target, force in ((run, True), (run / "checkpoints", True), (other, False)):
        with pytest.raises(InputError):
            check_export_target(run, target, force)
    check_export_target(run, other, force=True)
    check_export_target(run, tmp_path / "new", force=False)
    check_export_target(run, run / "hf", force=False)


def test_read_metrics_skips_a_torn_line_and_takes_the_file_or_its_run_folder(tmp_path):
    from latentlm.train.logging import read_metrics

    rows = [{"step": 1, "kind": "train", "loss": 2.5}, {"step": 1, "kind": "val", "loss": 2.7}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 2, "kind": "tr')  # killed mid-write
    assert read_metrics(tmp_path) == rows == read_metrics(tmp_path / "metrics.jsonl")
    assert read_metrics(tmp_path / "absent") == []
