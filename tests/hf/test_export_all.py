"""Every variant exports, and exported folders come back: latent_thoughts to a plain HF folder plus its latent
machinery (loadable with latentlm hidden), latentlm.load / `latentlm eval|generate` on exported folders, a
latent_thoughts run directory that loads without its base model folder, and the bad inputs."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import torch

from latentlm import load
from latentlm.hf.export import LATENT_META, export_run
from tests.hf.test_hf_wrapper import VARIANTS

HIDDEN_LOADER = r"""
import json, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "latentlm" or name.startswith("latentlm."):
            raise ImportError("hidden")
sys.meta_path.insert(0, Hide())
import torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    torch.save(m(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits, sys.argv[3])
"""


def latent_run(tmp_path, adapter=True):
    from latentlm.config import RunConfig, build
    from latentlm.data.tokenizer import char_tokenizer
    from latentlm.models import build_model
    from latentlm.train.checkpoint import save_checkpoint
    from latentlm.train.optim import build_optimizer
    from tests.tiny_llama import save_tiny_llama

    base = save_tiny_llama(tmp_path / "base", char_tokenizer(), max_position_embeddings=512, tie_word_embeddings=False)
    model_cfg = dict(variant="latent_thoughts", base_model=str(base), method="coconut", max_seq_len=512)
    model_cfg.update(adapter=adapter, adapter_hidden=16)
    cfg = build(RunConfig, {"model": model_cfg, "data": {"tokenizer": "chars", "seq_len": 32}})
    torch.manual_seed(1)
    model = build_model(cfg.model).eval()
    if adapter:
        for p in model.adapter.parameters():  # not the identity-like init: the adapter must matter
            torch.nn.init.normal_(p, 0, 0.3)
    run = tmp_path / "run"
    save_checkpoint(run, 0, model, build_optimizer(model, cfg.train), {"step": 0}, cfg, model.tokenizer, keep=1)
    return run, base, model


def test_latent_thoughts_export_hf_view_latent_view_and_a_self_contained_run_dir(tmp_path):
    from latentlm.nn import SamplingConfig

    run, base, model = latent_run(tmp_path)
    tok = model.tokenizer
    ids = torch.tensor([model.prompt_ids("12+30=")])  # Coconut's inference format (ends with <bot>)

    # the run directory references its base by hash and loads with the base folder gone
    record = json.loads((run / "checkpoints" / "latest" / "base" / "source.json").read_text())
    weights = base / "model.safetensors"
    assert record["sha256"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    out = export_run(run, tmp_path / "hf")
    shutil.rmtree(base)
    reloaded, _ = load(run)
    from latentlm.models.latent_thoughts.base import save_base_record

    again = json.loads((save_base_record(reloaded, tmp_path / "resaved") / "source.json").read_text())
    assert again == record  # a model loaded from the record still references the original base
    greedy = SamplingConfig(temperature=0.0)
    with torch.no_grad():
        expected, trace = model.generate(ids, 12, greedy, policy="fixed", return_trace=True)
        assert any(st["latent"][0] for st in trace["steps"])  # latent steps, then tokens
        torch.testing.assert_close(reloaded.generate(ids, 12, greedy, policy="fixed"), expected, atol=0, rtol=0)

    # latentlm reads the export back: the latent path (adapter included) gives the same generations
    assert (out / "adapter.safetensors").is_file() and json.loads((out / LATENT_META).read_text())[
        "method"
    ] == "coconut"
    back, back_tok = load(out)
    assert back_tok.encode("<latent>12") == tok.encode("<latent>12")
    with torch.no_grad():
        torch.testing.assert_close(back.generate(ids, 12, greedy, policy="fixed"), expected, atol=0, rtol=0)
        for a, b in zip(back.adapter.parameters(), model.adapter.parameters()):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        token_logits = model.base(input_ids=ids).logits  # the plain token path

    # HF, with latentlm hidden, loads the fine-tuned base: the token path's logits
    res = tmp_path / "logits.pt"
    env = {**os.environ, "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    proc = subprocess.run(
        [sys.executable, "-c", HIDDEN_LOADER, str(out), json.dumps(ids.tolist()), str(res)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.testing.assert_close(torch.load(res, weights_only=True), token_logits, atol=1e-5, rtol=0)


def test_exported_decoders_load_back_into_latentlm_with_their_run_config(run_factory, tmp_path):
    ids = torch.randint(1, 90, (2, 16), generator=torch.Generator().manual_seed(0))
    for name, kw in VARIANTS:
        run, model, tok = run_factory(name, **kw)
        out = export_run(run, tmp_path / f"export_{name}")
        back, back_tok = load(out)
        assert back.run_config.model == model.run_config.model if hasattr(model, "run_config") else True
        assert back.run_config.data.tokenizer == "chars" and back_tok.encode("ROMEO") == tok.encode("ROMEO")
        with torch.no_grad():
            torch.testing.assert_close(back.scoring_logits(ids), model.scoring_logits(ids), atol=0, rtol=0)


def test_cli_generate_on_an_export_equals_generate_on_the_run(run_factory, tmp_path, capsys):
    from latentlm.cli import main

    run, _, _ = run_factory("gpt")
    out = export_run(run, tmp_path / "hf")
    texts = []
    for d in (run, out):
        assert main(["generate", str(d), "--prompt", "ROMEO:", "--max-new-tokens", "10", "--temperature", "0"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and len(texts[0]) > len("ROMEO:\n")


def test_an_hf_folder_that_is_not_a_latentlm_export_is_one_error_line(tmp_path, capsys):
    from latentlm.cli import main
    from latentlm.data.tokenizer import char_tokenizer
    from tests.tiny_llama import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "llama", char_tokenizer())
    before = sorted(p.name for p in folder.iterdir())
    for verb in (["eval", str(folder)], ["generate", str(folder), "--prompt", "x"]):
        assert main(verb) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "not a latentlm export" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
