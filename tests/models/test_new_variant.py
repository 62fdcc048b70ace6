"""A new variant is one folder with a VariantSpec plus one registry line: a toy variant registered here (not in
src/) trains, evaluates, generates, exports to HF and loads back with no change anywhere else; and an incomplete
spec fails when it is registered, with one error naming the variant and the missing field."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import latentlm
from latentlm.cli import main
from latentlm.config import load_config
from latentlm.models import VARIANTS, SpecError, VariantSpec, register, variant_spec
from latentlm.models.spec import HFExport, decoder_blocks, decoder_flops, standard_source
from latentlm.shipped import config_path
from latentlm.train.distributed import fsdp_units
from tests.conftest import tiny_run_overrides
from tests.models.toy_variant import ToyConfig, ToyScaled

HIDDEN_LOADER = r"""
import json, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("latentlm", "tests"):
            raise ImportError("hidden")
sys.meta_path.insert(0, Hide())
import torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    torch.save(m(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits, sys.argv[3])
"""

TOY = VariantSpec(
    name="toy",
    config=ToyConfig,
    model=ToyScaled,
    build_source=standard_source,
    shard_units=decoder_blocks,
    hf_export=HFExport("wrapper"),
    flops_per_token=decoder_flops,
)


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    del VARIANTS["toy"]


def train_toy(tmp_path):
    from latentlm.train.trainer import train

    over = tiny_run_overrides(tmp_path, **{"model.variant": "toy", "train.max_steps": 4, "eval.every": 4})
    return train(load_config(config_path("gpt/tiny"), over)), tmp_path / "run"


def test_a_toy_variant_trains_evaluates_exports_and_loads_back(toy, data_root, tmp_path, capsys):
    from latentlm.hf.export import export_run

    summary, run = train_toy(tmp_path)
    assert summary["variant"] == "toy" and summary["steps"] == 4
    val = json.loads((run / "train_summary.json").read_text())["val"]
    assert summary["final_train_loss"] < 5.8 and val["loss"] < 5.8  # below log(300): it learned something
    # accounting comes from the spec: the decoder's FLOPs, and params counting the new gain once
    model, tok = latentlm.load(run)
    assert isinstance(model, ToyScaled) and summary["params"] == sum(p.numel() for p in model.parameters())
    assert summary["flops_per_token"] == model.flops_per_token(32)
    assert not torch.equal(model.gain.detach(), torch.full_like(model.gain, 1.5))  # the new parameters trained

    assert main(["eval", str(run), "--max-batches", "2"]) == 0
    assert main(["generate", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert "ROMEO:" in capsys.readouterr().out
    assert "val[max_batches=2]" in json.loads((run / "results.json").read_text())

    out = export_run(run, tmp_path / "export")
    assert (out / "tests_models_toy_variant.py").is_file()  # the variant's own source, flattened
    ids = torch.randint(1, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    back, _ = latentlm.load(out)
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits, atol=0, rtol=0)


@pytest.mark.slow
def test_the_toy_export_loads_with_transformers_alone(toy, data_root, tmp_path):
    """transformers with latentlm and tests/ hidden runs the folder's flattened copy of the toy's code."""
    from latentlm.hf.export import export_run

    _, run = train_toy(tmp_path)
    model, _ = latentlm.load(run)
    out = export_run(run, tmp_path / "export")
    ids = torch.randint(1, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    env = {**os.environ, "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    script = [sys.executable, "-c", HIDDEN_LOADER, str(out), json.dumps(ids.tolist()), str(tmp_path / "hf.pt")]
    subprocess.run(script, env=env, check=True, cwd=tmp_path, capture_output=True)
    with torch.no_grad():
        want = model(ids).logits
    torch.testing.assert_close(torch.load(tmp_path / "hf.pt", weights_only=True), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "missing, field",
    [
        ("build_source", "build_source (the data-source builder"),
        ("config", "config (the model-config dataclass)"),
        ("shard_units", "shard_units (the FSDP units"),
        ("hf_export", "hf_export (an HFExport, or hf_export=None with hf_export_reason"),
    ],
)
def test_an_incomplete_spec_fails_at_registration_naming_the_variant_and_the_field(missing, field):
    kw = {f: getattr(TOY, f) for f in ("config", "model", "build_source", "shard_units", "hf_export")}
    kw[missing] = None
    with pytest.raises(SpecError) as err:
        register(VariantSpec(name="toy2", **kw))
    assert str(err.value).startswith("variant 'toy2': its VariantSpec lacks ") and field in str(err.value)
    assert str(err.value).count("lacks") == 1 and "toy2" not in VARIANTS


def test_registry_rejects_a_misnamed_spec_and_a_module_without_spec():
    with pytest.raises(SpecError, match="variant 'other': its VariantSpec is named 'toy'"):
        VARIANTS["other"] = TOY
    VARIANTS["nospec"] = "tests.models.toy_variant"  # a module path resolves lazily, on first lookup
    try:
        with pytest.raises(SpecError, match=r"variant 'nospec': module tests.models.toy_variant defines no SPEC"):
            VARIANTS["nospec"]
    finally:
        del VARIANTS["nospec"]


def test_every_registered_variant_has_a_complete_spec():
    for name in VARIANTS:
        spec = VARIANTS[name]
        assert spec.name == name and spec.config().variant == name
        assert (spec.hf_export is None) == bool(spec.hf_export_reason)


def test_a_variant_without_export_says_why_and_writes_nothing(toy, tmp_path):
    from latentlm.errors import InputError
    from tests.hf.conftest import make_run

    VARIANTS["toy"] = replace(TOY, hf_export=None, hf_export_reason="the toy keeps its weights to itself")
    run = tmp_path / "run"
    make_run(run, "toy")
    with pytest.raises(InputError, match="runs of variant 'toy' cannot be exported: the toy keeps its weights"):
        latentlm.hf.export.export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fsdp_units_come_from_the_spec_latent_thoughts_gives_its_base_models_layers(tmp_path):
    from latentlm.data.tokenizer import char_tokenizer
    from tests.conftest import tiny_gpt_config
    from tests.tiny_llama import save_tiny_llama

    gpt = variant_spec("gpt").build(tiny_gpt_config(n_layers=3))
    assert fsdp_units(gpt) == list(gpt.blocks)
    base = save_tiny_llama(tmp_path / "base", char_tokenizer())
    lt = variant_spec("latent_thoughts").build(
        variant_spec("latent_thoughts").config(base_model=str(base), method="coconut")
    )
    units = fsdp_units(lt)
    layers = list(lt.base.model.layers)
    assert units == layers and len(units) == lt.base.config.num_hidden_layers >= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["eval", "{run}", "--score-mode", "prefix"],
            "--score-mode=prefix does not apply to this run (gpt, score modes",
        ),
        (["eval", "{run}", "--allocation"], "--allocation measures thoughtbubbles runs; this run is 'gpt'"),
        (["eval", "{run}", "--bubbles", "ROMEO"], "--bubbles measures thoughtbubbles runs; this run is 'gpt'"),
        (["generate", "{run}", "--prompt", "a", "--trace"], "--trace shows latent steps; this run (gpt) has none"),
    ],
)
def test_the_cli_refuses_what_the_spec_does_not_offer_with_one_line(tmp_path, capsys, argv, message):
    from tests.hf.conftest import make_run

    make_run(tmp_path / "run")
    assert main([a.format(run=tmp_path / "run") for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "results.json").exists()
