import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from latentlm.config import load_config
from latentlm.errors import InputError
from latentlm.train import trainer as trainer_mod
from latentlm.train.checkpoint import find_checkpoint, load_run
from latentlm.train.trainer import TrainingDiverged, train
from tests.conftest import tiny_run_overrides


def use_source(monkeypatch, build_source) -> None:
    """Train gpt runs on a test data source: the trainer takes its source from the variant's spec."""
    from dataclasses import replace

    from latentlm.models import VARIANTS

    monkeypatch.setitem(VARIANTS, "gpt", replace(VARIANTS["gpt"], build_source=build_source))


REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs/gpt/tiny.yaml"


def cfg_for(tmp_path, **extra):
    return load_config(TINY, tiny_run_overrides(tmp_path, **extra))


def train_losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def final_params(cfg) -> dict:
    out = {}
    train(cfg, on_end=lambda m: out.update({k: v.detach().clone() for k, v in m.state_dict().items()}))
    return out


class MaskedSource:
    """Micro-batches with very different numbers of ignored labels, to test the token weighting."""

    def __init__(self, micro):
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 300, (8, 33), generator=g)
        self.keep = torch.tensor([33, 3, 20, 9, 33, 1, 15, 27])  # labels kept per row
        self.micro, self.pos = micro, 0

    def next_batch(self):
        rows = torch.arange(self.pos, self.pos + self.micro) % 8
        self.pos += self.micro
        ids, labels = self.data[rows, :-1], self.data[rows, 1:].clone()
        for i, r in enumerate(rows):
            labels[i, self.keep[r] :] = -100
        return {"input_ids": ids, "labels": labels}

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, s):
        self.pos = s["pos"]

    def phase(self, step):
        return 0

    def begin_phase(self, phase, model):
        pass


def step_gradients(cfg) -> dict:
    """The gradients the optimizer sees at its first step (captured by a global pre-step hook)."""
    grads = {}

    def hook(opt, args, kwargs):
        for i, p in enumerate(x for g in opt.param_groups for x in g["params"]):
            grads[i] = p.grad.detach().clone()

    handle = register_optimizer_step_pre_hook(hook)
    try:
        train(cfg)
    finally:
        handle.remove()
    return grads


@pytest.mark.parametrize("masked", [False, True])
def test_grad_accumulation_equals_one_big_batch(data_root, tmp_path, monkeypatch, masked):
    """k micro-batches of b rows give the gradient of one batch of k*b rows, also with unequal label masks."""
    if masked:
        use_source(monkeypatch, lambda cfg, tok, split, r, w: MaskedSource(8 // cfg.train.grad_accum))
    common = {"train.max_steps": 1, "train.batch_size": 8, "eval.every": 0}
    big = step_gradients(cfg_for(tmp_path, **common, **{"train.out_dir": tmp_path / "big"}))
    small = step_gradients(cfg_for(tmp_path, **common, **{"train.grad_accum": 4, "train.out_dir": tmp_path / "acc"}))
    assert len(big) == len(small) > 0
    for i in big:
        assert big[i].abs().max() > 0
        torch.testing.assert_close(small[i], big[i], atol=1e-7, rtol=1e-5)


def test_the_trainer_reads_the_device_once_per_step_and_never_per_micro_batch(data_root, tmp_path, monkeypatch):
    """Metrics stay on the device: with 4 micro-batches per step of a model that reports 10 metrics (FT), the
    trainer's own code makes one device->host read per step (loss sum and gradient norm together) and one more per
    log step (all metrics together), none per micro-batch. Counted: tensor reads called from trainer.py."""
    reads = collections.Counter()

    def counting(name, orig):
        def counted(self, *a, **k):
            frame = sys._getframe(1)
            if frame.f_code.co_filename == trainer_mod.__file__:
                reads[(frame.f_code.co_name, name)] += 1
            return orig(self, *a, **k)

        return counted

    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    extra = {"train.max_steps": 4, "train.grad_accum": 4, "log.every": 2, "eval.every": 0, "model.latent_bits": 4}
    train(load_config(REPO / "configs/free_transformer/tiny.yaml", tiny_run_overrides(tmp_path, **extra)))
    monkeypatch.undo()
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and {"ce", "r_over_x"} <= set(rows[0])  # metrics were logged
    assert sum(reads.values()) == 4 + 2, reads


def test_loss_decreases_and_run_directory_is_complete(data_root, tmp_path):
    summary = train(cfg_for(tmp_path, **{"train.max_steps": 30, "eval.every": 30, "train.ckpt_every": 10}))
    losses = train_losses(tmp_path / "run")
    assert losses[30] < losses[1] - 1.0
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.jsonl", "tokenizer.json", "train_summary.json"} <= {p.name for p in run.iterdir()}
    ckpt = find_checkpoint(run)
    assert ckpt.name == "step_000030" and sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_000020",
        "step_000030",
    ]
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "config.yaml", "tokenizer.json"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert summary["tokens_seen"] == 30 * 4 * 32 and summary["val"]["bits_per_byte"] > 0
    model, tok = load_run(run)  # load() needs nothing but the directory
    assert tok.decode(tok.encode("ROMEO: I saw")) == "ROMEO: I saw"


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(data_root, tmp_path, monkeypatch):
    real = trainer_mod.build_model
    calls = {"n": 0}

    def poisoned(cfg):
        model = real(cfg)
        forward = model.forward

        def fwd(*a, **k):
            out = forward(*a, **k)
            calls["n"] += 1
            if calls["n"] == 6:  # the 6th optimizer step
                out.loss = out.loss * float("nan")
            return out

        model.forward = fwd
        return model

    monkeypatch.setattr(trainer_mod, "build_model", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"non-finite loss nan at step 6; the last good checkpoint is .*step_000004"
    ):
        train(cfg_for(tmp_path, **{"eval.every": 0}))
    model, _ = load_run(tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def run_cli(args, fault=None, check=True):
    """The CLI in its own interpreter; `fault` (tests/faults.py, e.g. "kill_after_step:5") is installed first."""
    entry = ["-m", "tests.faults", fault] if fault else ["-m", "latentlm"]
    proc = subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=os.environ, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_resume_after_sigkill_is_bit_identical(data_root, tmp_path):
    full = tiny_run_overrides(tmp_path, **{"train.out_dir": tmp_path / "full", "train.max_steps": 10})
    run_cli(["train", str(TINY), *full])
    part = tiny_run_overrides(tmp_path, **{"train.out_dir": tmp_path / "part", "train.max_steps": 10})
    killed = run_cli(["train", str(TINY), *part], "kill_after_step:5", check=False)
    assert killed.returncode == -9  # SIGKILL after step 5; the last checkpoint is step 4
    assert find_checkpoint(tmp_path / "part").name == "step_000004"
    run_cli(["train", str(TINY), *part])  # resume=auto
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    assert all(a[s] == b[s] for s in range(5, 11))  # bitwise equal, including steps redone after the kill


def test_kill_during_checkpoint_write_keeps_the_previous_one(data_root, tmp_path):
    over = tiny_run_overrides(tmp_path, **{"train.ckpt_every": 2, "train.max_steps": 6})
    killed = run_cli(["train", str(TINY), *over], "kill_in_checkpoint:4", check=False)
    assert killed.returncode == -9
    assert find_checkpoint(tmp_path / "run").name == "step_000002"
    load_run(tmp_path / "run")  # loadable
    run_cli(["train", str(TINY), *over])  # and resumable to the end
    assert find_checkpoint(tmp_path / "run").name == "step_000006"


def test_resume_refuses_another_variant_and_existing_runs_are_not_overwritten(data_root, tmp_path, monkeypatch):
    from dataclasses import replace

    from latentlm.models import VARIANTS

    train(cfg_for(tmp_path, **{"train.max_steps": 2, "eval.every": 0}))
    before = (tmp_path / "run" / "config.yaml").read_text()
    monkeypatch.setitem(VARIANTS, "other", replace(VARIANTS["gpt"], name="other"))
    with pytest.raises(InputError, match=r"it is a 'gpt' checkpoint and this config builds 'other'"):
        train(cfg_for(tmp_path, **{"model.variant": "other"}))
    with pytest.raises(InputError, match="already holds a run; continue it with --train.resume=auto"):
        train(cfg_for(tmp_path, **{"train.resume": "false"}))
    assert (tmp_path / "run" / "config.yaml").read_text() == before


@pytest.mark.distributed
def test_ddp_two_ranks_match_each_other_and_single_process(data_root, tmp_path):
    over = tiny_run_overrides(tmp_path, **{"train.max_steps": 3, "eval.every": 0, "train.out_dir": tmp_path / "ddp"})
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import sys, torch, torch.distributed as dist\n"
        "from latentlm.config import load_config\nfrom latentlm.train.trainer import train\n"
        f"cfg = load_config({str(TINY)!r}, sys.argv[1:])\n"
        "def dump(m):\n"
        "    torch.save({k: v.clone() for k, v in m.state_dict().items()}, f'{cfg.train.out_dir}/rank{dist.get_rank()}.pt')\n"
        "train(cfg, on_end=dump)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), *over],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "ddp/rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ddp/rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    single = final_params(
        cfg_for(
            tmp_path,
            **{"train.max_steps": 3, "eval.every": 0, "train.grad_accum": 2, "train.out_dir": tmp_path / "single"},
        )
    )
    for k in r0:
        torch.testing.assert_close(r0[k], single[k], atol=1e-5, rtol=1e-4)


class PhasedSource(MaskedSource):
    """Three-step phases, like a curriculum; the optimizer is reset at each boundary."""

    def phase(self, step):
        return step // 3


def test_resume_across_curriculum_phases_is_exact(data_root, tmp_path, monkeypatch):
    use_source(monkeypatch, lambda cfg, tok, split, r, w: PhasedSource(4))
    common = {
        "train.reset_optimizer_on_phase": "true",
        "train.schedule": "constant",
        "eval.every": 0,
        "train.ckpt_every": 4,
        "train.batch_size": 4,
        "train.warmup_steps": 1,
    }
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 8, "train.out_dir": tmp_path / "full"}))
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 4, "train.out_dir": tmp_path / "part"}))
    train(cfg_for(tmp_path, **common, **{"train.max_steps": 8, "train.out_dir": tmp_path / "part"}))  # resumes at 4
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    assert all(a[s] == b[s] for s in range(1, 9))  # step 5 (mid-phase) kept the restored optimizer state
