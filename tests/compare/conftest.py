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
