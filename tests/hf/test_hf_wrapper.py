"""Export round trip: an exported folder loads through AutoModelForCausalLM(trust_remote_code=True) in a
process where `import latentlm` fails, and gives our logits and our greedy generations."""

import json
import os
import subprocess
import sys

import pytest
import torch

from latentlm.hf.export import export_run

LOADER = r"""
import json, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "latentlm" or name.startswith("latentlm."):
            raise ImportError("hidden")
sys.meta_path.insert(0, Hide())
try:
    import latentlm
    sys.exit("latentlm is importable: the test would prove nothing")
except ImportError:
    pass
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
ids = torch.tensor(json.loads(sys.argv[1]))
out = {}
for d in sys.argv[3:]:
    m = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    with torch.no_grad():
        out[d] = {"logits": m(input_ids=ids).logits, "gen": m.generate(ids[:, :6], max_new_tokens=8, do_sample=False),
                  "tok": tok("ROMEO: hi")["input_ids"]}
torch.save(out, sys.argv[2])
"""

VARIANTS = [
    ("gpt", {}),
    ("tb_global", {"variant": "thoughtbubbles", "budget": 1.5}),
    ("tb_causal", {"variant": "thoughtbubbles", "budget_mode": "causal", "causal_threshold": 0.3}),
    ("free_transformer", {"variant": "free_transformer", "latent_bits": 6}),
]


def test_exported_folders_load_without_latentlm_and_match(run_factory, tmp_path):
    ids = torch.randint(1, 90, (2, 16), generator=torch.Generator().manual_seed(0))
    ours, dirs = {}, []
    for name, kw in VARIANTS:
        run, model, tok = run_factory(name, **kw)
        out = export_run(run, tmp_path / f"export_{name}")
        assert {"config.json", "model.safetensors", "modeling_latentlm.py", "tokenizer.json"} <= {
            p.name for p in out.iterdir()
        }
        ours[str(out)] = (model, tok)
        dirs.append(str(out))
    res = tmp_path / "hf.pt"
    env = {**os.environ, "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(ids.tolist()), str(res), *dirs],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf = torch.load(res, weights_only=True)
    for d, (model, tok) in ours.items():
        with torch.no_grad():
            torch.testing.assert_close(hf[d]["logits"], model.scoring_logits(ids), atol=1e-5, rtol=0)
        assert hf[d]["tok"] == tok.encode("ROMEO: hi")
        if "free_transformer" not in d:  # FT's own sampler draws fresh prior Z; HF's recompute uses score's Z
            with pytest.warns(UserWarning) if "tb_global" in d else _nullcontext():
                expected = model.generate(ids[:, :6], 8, eos_token_id=tok.eos_id)
            assert torch.equal(hf[d]["gen"], expected), d


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_scoring_logits_give_score(run_factory):
    for name, kw in VARIANTS:
        _, model, _ = run_factory(name, **kw)
        ids = torch.randint(1, 90, (2, 12))
        from latentlm.models.decoder import token_logprobs

        with torch.no_grad():
            torch.testing.assert_close(
                token_logprobs(model.scoring_logits(ids), ids), model.score(ids), atol=1e-5, rtol=0
            )
