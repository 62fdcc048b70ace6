"""Hub ids for model.base_model / data.tokenizer (resolved by huggingface_hub from a local cache built here; no
network), the offline error line, and the optional wandb logger (against a recording stand-in for the wandb module,
and against the real package in offline mode where it is installed)."""

import json
import sys
import types

import pytest
import torch

from latentlm.data.tokenizer import Tokenizer, char_tokenizer
from latentlm.errors import InputError


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty HF hub cache, offline (huggingface_hub reads these constants at call time)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_repo(cache, repo_id: str, make):
    """Lay out repo_id in the hub cache as huggingface_hub does (snapshots/<commit>, refs/main)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    make(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_hub_ids_resolve_from_the_hf_cache_like_local_folders(hub_cache, tmp_path):
    from latentlm.data.corpora import build_tokenizer
    from latentlm.models.latent_thoughts.config import LatentThoughtsConfig
    from latentlm.models.latent_thoughts.model import LatentThoughts
    from tests.tiny_llama import save_tiny_llama

    local = save_tiny_llama(tmp_path / "local", char_tokenizer(), max_position_embeddings=128)
    snap = cache_repo(
        hub_cache,
        "someorg/tiny-llama",
        lambda d: save_tiny_llama(d, char_tokenizer(), seed=0, max_position_embeddings=128),
    )
    assert build_tokenizer("someorg/tiny-llama", 0).encode("ROMEO: hi") == Tokenizer.load(local).encode("ROMEO: hi")
    torch.manual_seed(0)
    from_hub = LatentThoughts(LatentThoughtsConfig(base_model="someorg/tiny-llama", method="cot", max_seq_len=64))
    from_dir = LatentThoughts(LatentThoughtsConfig(base_model=str(local), method="cot", max_seq_len=64))
    ids = torch.tensor([from_dir.tokenizer.encode("12+30=42")])
    with torch.no_grad():
        torch.testing.assert_close(from_hub(ids).logits, from_dir(ids).logits, atol=0, rtol=0)
    assert (snap / "config.json").is_file()


def test_a_hub_id_offline_and_not_cached_is_one_error_line(hub_cache, tmp_path, capsys, monkeypatch):
    from latentlm.cli import main
    from latentlm.models.latent_thoughts.base import resolve_base

    monkeypatch.setenv("LATENTLM_DATA", str(tmp_path / "data"))
    (tmp_path / "corpus.txt").write_text("to be or not to be\n" * 50)
    assert main(["data", "prepare", str(tmp_path / "corpus.txt"), "--tokenizer", "HuggingFaceTB/SmolLM2-135M"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.tokenizer='HuggingFaceTB/SmolLM2-135M'"), err
    assert "HF_HUB_OFFLINE=1" in err[0]
    with pytest.raises(InputError, match=r"model.base_model='meta-llama/Llama-3.2-1B'.*HF_HUB_OFFLINE=1") as e:
        resolve_base("meta-llama/Llama-3.2-1B")
    assert "\n" not in str(e.value)
    assert not any(hub_cache.iterdir())  # nothing was written to the cache


class FakeWandb(types.ModuleType):
    """Records what latentlm hands to wandb.init / run.log / run.finish."""

    def __init__(self):
        super().__init__("wandb")
        self.runs = []

    def init(self, **kw):
        run = types.SimpleNamespace(id=kw.get("id") or f"run{len(self.runs)}", init=kw, logged=[], finished=False)
        run.log = lambda values, step: run.logged.append((step, values))
        run.finish = lambda: setattr(run, "finished", True)
        self.runs.append(run)
        return run


def test_wandb_logs_the_rows_of_metrics_jsonl_and_resumes_the_same_run(data_root, tmp_path, monkeypatch):
    from latentlm.config import load_config
    from latentlm.shipped import config_path
    from latentlm.train.trainer import train
    from tests.conftest import tiny_run_overrides

    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    over = tiny_run_overrides(tmp_path, **{"log.wandb": "true", "log.wandb_project": "proj", "train.max_steps": 4})
    train(load_config(config_path("gpt/tiny"), over))
    (run,) = fake.runs
    assert run.finished and run.init["project"] == "proj" and run.init["config"]["train"]["max_steps"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    logged = {step: v for step, v in run.logged if "train/loss" in v}
    assert train_rows and all(logged[r["step"]]["train/loss"] == r["loss"] for r in train_rows)
    assert (tmp_path / "run" / "wandb_id").read_text() == run.id
    train(load_config(config_path("gpt/tiny"), [*over, "--train.max_steps=6", "--train.resume=auto"]))
    assert fake.runs[1].init["id"] == run.id  # same W&B run continued


def test_wandb_missing_is_a_config_error_naming_the_extra(data_root, tmp_path, monkeypatch):
    from latentlm.config import load_config
    from latentlm.errors import ConfigError
    from latentlm.shipped import config_path
    from latentlm.train.trainer import train
    from tests.conftest import tiny_run_overrides

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"latentlm\[wandb\]"):
        train(load_config(config_path("gpt/tiny"), tiny_run_overrides(tmp_path, **{"log.wandb": "true"})))


def test_real_wandb_offline(data_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from latentlm.config import load_config
    from latentlm.shipped import config_path
    from latentlm.train.trainer import train
    from tests.conftest import tiny_run_overrides

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(
        load_config(
            config_path("gpt/tiny"), tiny_run_overrides(tmp_path, **{"log.wandb": "true", "train.max_steps": 2})
        )
    )
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
