"""Helpers for the comparison-harness tests: tiny GPT arms on the small test corpus."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_model_overrides

REPO = Path(__file__).resolve().parents[2]
GPT_TINY = str(REPO / "configs/gpt/tiny.yaml")


def tiny_overrides(tmp_path, **extra) -> dict:
    base = {
        **tiny_model_overrides(tmp_path),
        "train.max_steps": 4,
        "train.batch_size": 4,
        "train.warmup_steps": 1,
        "train.ckpt_every": 4,
        "eval.every": 2,
        "eval.batches": 1,
        "log.every": 1,
        "log.progress": False,
        "log.tensorboard": False,
    }
    base.update(extra)
    return base


def write_spec(tmp_path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def grid_spec(tmp_path, data_root):
    """A 2-arm x 2-seed spec of tiny GPTs; arm b is arm a under another name (same config)."""
    items = [{"context": f"{who}: I saw the", "choices": [" moon", " crown"], "label": i % 2} for i, who in
             enumerate(["ROMEO", "JULIET", "HAMLET", "LEAR", "ROMEO", "LEAR"])]  # fmt: skip
    (tmp_path / "choice.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp_path / "heldout.txt").write_text("JULIET: the moon of Verona, and the storm of Britain.\n" * 6)
    return {
        "name": "g",
        "seeds": [1, 2],
        "overrides": tiny_overrides(tmp_path),
        "arms": {"a": {"config": GPT_TINY}, "b": {"config": GPT_TINY}},
        "heldout": [str(tmp_path / "heldout.txt")],
        "eval": {"val_batches": 2, "choice": [str(tmp_path / "choice.jsonl")]},
    }


LT_COT = str(REPO / "configs/latent_thoughts/cot.yaml")
TEST_SEED = 1000


def tiny_llama_base(directory, task: str = "perm") -> Path:
    """A random tiny Llama over the word vocabulary of `task` (tests/tiny_llama.py), as a base-model folder."""
    from latentlm.data.reasoning import reasoning_examples, word_tokenizer
    from tests.tiny_llama import save_tiny_llama

    tok = word_tokenizer(reasoning_examples(task, "val", 400, 4242))
    return save_tiny_llama(directory, tok, hidden=16, layers=1, heads=2, kv_heads=2, max_position_embeddings=64,
                           tie_word_embeddings=True)  # fmt: skip


def lt_overrides(base_dir, steps: int = 3) -> dict:
    """A latent-thoughts run of a few steps on perm from `base_dir` (CPU: a second or so)."""
    return {
        "model.base_model": str(base_dir),
        "model.max_seq_len": 48,
        "data.reasoning": "perm",
        "data.tokenizer": "model",
        "data.reasoning_examples": 32,
        "data.seq_len": 8,
        "train.max_steps": steps,
        "train.batch_size": 4,
        "train.lr": 1e-2,
        "train.warmup_steps": 1,
        "train.ckpt_every": steps,
        "train.keep_checkpoints": 1,
        "eval.every": 0,
        "log.every": 1,
        "log.progress": False,
        "log.tensorboard": False,
    }


def lt_chain_spec(base_dir) -> dict:
    """base (CoT) -> tuned (CoT, init_from base) -> soft (eval-only: tuned decoded with soft tokens, cold stop);
    every run scores the same 6 test items (reasoning_test_seed)."""
    return {
        "name": "chain",
        "seeds": [1, 2],
        "budget": "none",
        "overrides": lt_overrides(base_dir),
        "arms": {
            "base": {"config": LT_COT},
            "tuned": {"config": LT_COT, "init_from": "base", "overrides": {"train.max_steps": 2}},
            "soft": {
                "from": "tuned",
                "eval_overrides": {"model.latent_embedding": "soft"},
                "eval": {"policy": "cold_stop", "reasoning_limit": 4},
            },  # fmt: skip
        },
        "eval": {
            "val_batches": 1,
            "leak": False,
            "reasoning": True,
            "reasoning_limit": 6,
            "reasoning_test_seed": TEST_SEED,
            "reasoning_batch": 6,
        },  # fmt: skip
    }


def run_experiment(script: str, *args: str):
    """An experiments/ script as a user runs it (one thread, the repository's src and tests importable) ->
    CompletedProcess with its text output."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, str(REPO / "experiments" / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
