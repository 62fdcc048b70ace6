"""FSDP2 checkpoints through torch.distributed.checkpoint: 2 ranks (gloo, CPU) save, other world sizes resume.

Reference: the same 4 steps trained without interruption. FSDP2's reduce-scatter sums gradients in another order
than one process's accumulation, so the comparison is to float tolerance; the loaded state itself is checked
exactly against the gathered weights the checkpoint holds.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentlm.config import load_config
from latentlm.models import build_model
from latentlm.train import dcp as dcp_io
from latentlm.train.checkpoint import load_run
from latentlm.train.optim import build_optimizer
from latentlm.train.trainer import train
from tests.conftest import tiny_run_overrides

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs/gpt/tiny.yaml"


def torchrun(tmp_path, nproc: int, over: list[str]) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import sys\nfrom latentlm.config import load_config\nfrom latentlm.train.trainer import train\n"
        f"train(load_config({str(TINY)!r}, sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(worker),
            *over,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.distributed
def test_fsdp2_dcp_checkpoint_resumes_at_another_world_size(data_root, tmp_path):
    common = {"eval.every": 0, "train.ckpt_every": 2, "train.max_steps": 4, "train.keep_checkpoints": 3}
    over = tiny_run_overrides(tmp_path, **common, **{"train.dist": "fsdp", "train.out_dir": tmp_path / "fsdp"})
    torchrun(tmp_path, 2, over)
    ck2, ck4 = tmp_path / "fsdp/checkpoints/step_000002", tmp_path / "fsdp/checkpoints/step_000004"
    assert dcp_io.is_dcp(ck2) and dcp_io.is_dcp(ck4)
    assert sorted(p.name for p in (ck2 / "dcp").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # both ranks

    # the full weights beside the shards are a normal checkpoint: load_run reads them
    model, _ = load_run(ck4)
    full = load_file(str(ck4 / "model.safetensors"))
    for k, v in full.items():
        assert torch.equal(model.state_dict()[k], v)

    # one process reads the 2-rank shards into a plain model and optimizer: exactly the saved weights
    cfg = load_config(TINY, over)
    plain = build_model(cfg.model)
    opt = build_optimizer(plain, cfg.train)
    dcp_io.load_sharded(ck2, plain, opt)
    for k, v in load_file(str(ck2 / "model.safetensors")).items():
        assert torch.equal(plain.state_dict()[k], v), k
    assert all(s["step"].item() == 2 for s in opt.state.values())  # AdamW state came back (2 updates)

    # resume the step-2 checkpoint in one process (world size 1, grad_accum 2 = the same 4 sequences per step)
    one = tmp_path / "one"
    (one / "checkpoints").mkdir(parents=True)
    shutil.copytree(ck2, one / "checkpoints/step_000002")
    (one / "checkpoints/latest").symlink_to("step_000002")
    train(load_config(TINY, tiny_run_overrides(tmp_path, **common, **{"train.grad_accum": 2, "train.out_dir": one})))
    resumed = load_run(one / "checkpoints/step_000004")[0].state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(resumed[k], v, atol=1e-5, rtol=1e-4)

    # a plain (one-process) checkpoint resumed under FSDP2 at 2 ranks: the full optimizer state is sharded
    plain_over = {**common, "train.grad_accum": 2, "train.out_dir": tmp_path / "plain"}
    train(load_config(TINY, tiny_run_overrides(tmp_path, **{**plain_over, "train.max_steps": 2})))
    assert not dcp_io.is_dcp(tmp_path / "plain/checkpoints/step_000002")
    torchrun(
        tmp_path,
        2,
        tiny_run_overrides(tmp_path, **common, **{"train.dist": "fsdp", "train.out_dir": tmp_path / "plain"}),
    )
    for k, v in load_file(str(tmp_path / "plain/checkpoints/step_000004/model.safetensors")).items():
        torch.testing.assert_close(v, full[k], atol=1e-5, rtol=1e-4)


def test_device_capabilities_name_the_field_and_what_the_machine_supports(monkeypatch):
    from latentlm.config import TrainConfig
    from latentlm.errors import ConfigError
    from latentlm.train import device as dev

    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "bf16_supported", lambda d: False)
    with pytest.raises(ConfigError, match=r"train\.precision=bf16 .*supports train\.precision=fp32"):
        dev.validate_train_device(TrainConfig(precision="bf16"), cpu)
    monkeypatch.setattr(dev.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"train\.compile=true but no C\+\+ compiler.*supports train\.compile=false"):
        dev.validate_train_device(TrainConfig(compile=True), cpu)
    monkeypatch.setattr(dev.dist, "is_gloo_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train\.dist=fsdp on CPU needs the gloo backend"):
        dev.validate_train_device(TrainConfig(dist="fsdp"), cpu, world_size=2)
    dev.validate_train_device(TrainConfig(), cpu, world_size=1)  # fp32, no compile, one process: always fine


def test_cli_bf16_on_a_cpu_without_it_is_one_error_line(tmp_path, monkeypatch, capsys):
    from latentlm import cli
    from latentlm.train import device as dev

    monkeypatch.setattr(dev, "bf16_supported", lambda d: False)
    out = tmp_path / "run"
    code = cli.main(["train", str(TINY), "--train.device=cpu", "--train.precision=bf16", f"--train.out_dir={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: train.precision=bf16"), err
    assert not out.exists()  # nothing written


def test_gpu_check_fsdp_round_trip_runs_on_cpu(tmp_path):
    """benchmarks/_fsdp_roundtrip.py (the FSDP2 part of benchmarks/gpu_check.sh) on one gloo rank: exact."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29731"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/_fsdp_roundtrip.py"), "--device=cpu", f"--dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["weights_equal"] and out["optimizer_equal"] and out["next_step_equal"]


def test_gpu_check_script_refuses_a_machine_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: run `make gpu-check` instead")
    env = {**os.environ, "GPU_CHECK_DIR": str(tmp_path / "gc")}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_check.sh"), sys.executable], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: benchmarks/gpu_check.sh needs a CUDA device")
    assert not (tmp_path / "gc").exists()  # nothing written
