"""Shared fixtures: offline, seeded, CPU fp32, tiny configs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from latentlm.models.gpt import GPT, GPTConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def tiny_gpt_config(**kw) -> GPTConfig:
    base = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=64)
    base.update(kw)
    return GPTConfig(**base)


@pytest.fixture
def tiny_gpt() -> GPT:
    return GPT(tiny_gpt_config()).eval()


TINY_TEXT = "\n".join(
    f"{who}: {what} the {thing} of {place}, {n} times."
    for n, (who, what, thing, place) in enumerate(
        (w, v, t, p)
        for w in ("ROMEO", "JULIET", "HAMLET", "LEAR")
        for v in ("I saw", "thou knowest", "we sing", "they fear")
        for t in ("moon", "crown", "ghost", "storm", "rose")
        for p in ("Verona", "Denmark", "Britain")
    )
)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A private data root with a small text corpus at tmp/corpus.txt."""
    root = tmp_path / "data"
    monkeypatch.setenv("LATENTLM_DATA", str(root))
    (tmp_path / "corpus.txt").write_text(TINY_TEXT * 3)
    return root


def tiny_model_overrides(tmp_path) -> dict:
    """The data and model part of every tiny test run: configs/gpt/tiny.yaml shrunk to the small test corpus."""
    return {
        "data.corpus": str(tmp_path / "corpus.txt"),
        "data.vocab_size": 300,
        "data.seq_len": 32,
        "model.vocab_size": 300,
        "model.d_model": 32,
        "model.n_layers": 2,
        "model.n_heads": 2,
        "model.max_seq_len": 64,
    }


def tiny_run_overrides(tmp_path, **extra) -> list[str]:
    """Overrides that make configs/gpt/tiny.yaml train in a second on the small test corpus."""
    base = {
        **tiny_model_overrides(tmp_path),
        "train.out_dir": str(tmp_path / "run"),
        "train.max_steps": 8,
        "train.batch_size": 4,
        "train.lr": 3e-3,
        "train.warmup_steps": 2,
        "train.ckpt_every": 4,
        "eval.every": 4,
        "eval.batches": 2,
        "log.every": 1,
        "log.progress": False,
        "log.tensorboard": False,
    }
    base.update(extra)
    return [f"--{k}={v}" for k, v in base.items()]
