"""`latentlm export RUN_DIR OUT_DIR`: a folder that `AutoModelForCausalLM.from_pretrained(OUT_DIR,
trust_remote_code=True)` loads without latentlm installed. The variant's spec says how (`VariantSpec.hf_export`);
nothing here names a variant.

HFExport("wrapper") (gpt, thoughtbubbles, free_transformer, any decoder-like variant): the folder holds
model.safetensors, config.json (with auto_map, the model config under `latentlm` and the run config under
`latentlm_run`), generation_config.json, the tokenizer files, and the model's source: the modules of the spec's
model and config classes and every latentlm module they import, flattened into single files next to
modeling_latentlm.py (latentlm.nn.attention -> latentlm_nn_attention.py) with `from latentlm.x import` rewritten to
relative imports. The model code is the same code that trained, not a second copy to keep in sync.

HFExport("base_model") (latent_thoughts): the fine-tuned base model is an ordinary HF causal LM, so the folder is
that model's own save_pretrained layout (it loads with or without trust_remote_code, and HF `generate()` runs the
plain token path), plus what the spec's `write_extras` saves (latent thoughts: the method, the special-token ids
and adapter.safetensors) in latentlm_latent_thoughts.json with the run config. Latent-mode generation needs
latentlm's code: `latentlm generate OUT_DIR` or `latentlm.load(OUT_DIR)[0].generate(...)`.

`latentlm.load(OUT_DIR)` (and so `latentlm eval|generate OUT_DIR`) reads an exported folder back with the installed
latentlm: `load_export`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

from latentlm.errors import InputError

LATENT_META = "latentlm_latent_thoughts.json"


def flat_name(module: str) -> str:
    return module.replace(".", "_")


def module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise InputError(f"cannot locate module {module} to bundle")
    return Path(spec.origin)


def latentlm_imports(path: Path) -> list[str]:
    mods = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentlm") and node.level == 0:
            mods.append(node.module)
            for alias in node.names:  # `from latentlm.nn import attention` style: a submodule import
                sub = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(node.module).submodule_search_locations and importlib.util.find_spec(sub):
                    mods.append(sub)
    return mods


def dependencies(root: str) -> list[str]:
    """latentlm modules reachable from `root` by imports (the bundle)."""
    seen, todo = [], [root]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.append(mod)
        todo.extend(latentlm_imports(module_file(mod)))
    return seen


def rewrite(source: str) -> str:
    return re.sub(
        r"^(\s*)from (latentlm(?:\.\w+)*) import",
        lambda m: f"{m.group(1)}from .{flat_name(m.group(2))} import",
        source,
        flags=re.MULTILINE,
    )


def check_export_target(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> None:
    """Refuse to write where it would destroy something: the run itself (never), another run directory or a
    non-empty folder (unless force), a file."""
    run, out = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out == run or out in run.parents or (run / "checkpoints") in [out, *out.parents]:
        raise InputError(f"cannot export {run_dir} into {out_dir}: it would overwrite the run; choose another folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"export target {out_dir} is a file; choose a folder")
    if force or not out.exists() or not any(out.iterdir()):
        return
    what = "a run directory" if (out / "config.yaml").is_file() or (out / "checkpoints").is_dir() else "not empty"
    raise InputError(f"export target {out_dir} is {what}; choose an empty or new folder, or pass --force to overwrite")


def export_run(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """The run as an HF folder, the way its variant's spec says (`VariantSpec.hf_export`)."""
    check_export_target(run_dir, out_dir, force)  # before anything is loaded or written
    from latentlm import load
    from latentlm.models import VARIANTS
    from latentlm.rundir import load_config_of

    run_cfg = load_config_of(run_dir)
    variant = run_cfg.model.variant
    if variant not in VARIANTS:
        raise InputError(f"runs of variant {variant!r} cannot be exported: unknown variant ({', '.join(VARIANTS)})")
    spec = VARIANTS[variant]
    if spec.hf_export is None:
        raise InputError(f"runs of variant {variant!r} cannot be exported: {spec.hf_export_reason}")
    model, tok = load(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.hf_export.kind == "base_model":
        return export_base_model(spec, model, tok, run_cfg, out)
    return export_wrapper(spec, model, tok, run_cfg, out)


def export_wrapper(spec, model, tok, run_cfg, out: Path) -> Path:
    """LatentLMForCausalLM around the variant's own source, flattened into the folder (module docstring)."""
    from safetensors.torch import save_model

    from latentlm.config import to_dict
    from latentlm.hf.configuration import LatentLMConfig
    from latentlm.hf.modeling import LatentLMForCausalLM

    roots = [spec.model.__module__, spec.config.__module__, "latentlm.nn.loss"]  # + the HF loss
    bundle = [m for root in roots for m in dependencies(root)]
    for mod in dict.fromkeys(bundle):
        (out / f"{flat_name(mod)}.py").write_text(rewrite(module_file(mod).read_text()))
    (out / "configuration_latentlm.py").write_text(module_file("latentlm.hf.configuration").read_text())
    modeling = module_file("latentlm.hf.modeling").read_text()
    start, end = modeling.index("# >>> build"), modeling.index("# <<< build")
    build_block = (
        "# >>> build\nfrom .configuration_latentlm import LatentLMConfig\n"
        f"from .{flat_name(spec.config.__module__)} import {spec.config.__name__} as Config\n"
        f"from .{flat_name(spec.model.__module__)} import {spec.model.__name__} as Model\n"
        f"from .{flat_name('latentlm.nn.loss')} import lm_loss, shift_labels\n\n\n"
        "def build_inner(cfg: dict):\n"
        "    fields = {k: v for k, v in cfg.items()}\n"
        "    return Model(Config(**fields))\n"
    )
    (out / "modeling_latentlm.py").write_text(modeling[:start] + build_block + modeling[end:])

    cfg = LatentLMConfig(
        latentlm=to_dict(model.config),
        latentlm_run=plain_run_config(run_cfg),
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.bos_id,
    )
    cfg.auto_map = {
        "AutoConfig": "configuration_latentlm.LatentLMConfig",
        "AutoModelForCausalLM": "modeling_latentlm.LatentLMForCausalLM",
    }
    cfg.architectures = ["LatentLMForCausalLM"]
    wrapper = LatentLMForCausalLM(cfg)
    wrapper.model.load_state_dict(model.state_dict())
    cfg.save_pretrained(out)
    wrapper.generation_config.save_pretrained(out)
    save_model(wrapper, str(out / "model.safetensors"), metadata={"format": "pt"})
    _hf_tokenizer(tok).save_pretrained(out)
    return out


def plain_run_config(run_cfg) -> dict:
    """The run config as plain JSON types (what config.yaml holds)."""
    import yaml

    from latentlm.config import to_yaml

    return yaml.safe_load(to_yaml(run_cfg))


def _hf_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok.tok, eos_token=tok.eos_token, bos_token=tok.bos_token, pad_token=tok.eos_token
    )


def export_base_model(spec, model, tok, run_cfg, out: Path) -> Path:
    """The variant's fine-tuned HF base as a plain HF folder + its extras and metadata (module docstring)."""
    how = spec.hf_export
    how.base(model).save_pretrained(out)
    _hf_tokenizer(tok).save_pretrained(out)
    meta = {
        "format": f"latentlm {spec.name} export 1",
        "variant": spec.name,
        **how.write_extras(model, out),
        "run": plain_run_config(run_cfg),
        "note": "AutoModelForCausalLM loads the fine-tuned base (token path); latent mode: latentlm.load(this folder)",
    }
    (out / LATENT_META).write_text(json.dumps(meta, indent=1))
    return out


def is_export(path: str | Path) -> bool:
    """An HF-style folder (config.json) rather than a latentlm run directory or checkpoint (config.yaml)."""
    p = Path(path)
    return (p / "config.json").is_file() and not (p / "config.yaml").is_file() and not (p / "checkpoints").exists()


def load_export(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a folder made by `latentlm export`, built with the installed latentlm code."""
    import torch
    from safetensors.torch import load_model

    from latentlm.config import RunConfig, build
    from latentlm.data.tokenizer import Tokenizer
    from latentlm.models import variant_spec

    path = Path(path)
    hf = json.loads((path / "config.json").read_text())
    if (path / LATENT_META).is_file():  # a base_model export (VariantSpec.hf_export)
        meta = json.loads((path / LATENT_META).read_text())
        run = dict(meta["run"])
        spec = variant_spec(run["model"]["variant"])
        run["model"] = spec.hf_export.relocate(run["model"], path)  # the fine-tuned base is this folder
        cfg = build(RunConfig, run)
        model = spec.build(cfg.model)
        spec.hf_export.read_extras(model, path, meta)
    elif hf.get("model_type") == "latentlm" and isinstance(hf.get("latentlm"), dict):
        from latentlm.hf.configuration import LatentLMConfig
        from latentlm.hf.modeling import LatentLMForCausalLM

        run = dict(hf.get("latentlm_run") or {})
        run["model"] = hf["latentlm"]
        cfg = build(RunConfig, run)
        wrapper = LatentLMForCausalLM(LatentLMConfig(**{k: v for k, v in hf.items() if k != "model_type"}))
        load_model(wrapper, str(path / "model.safetensors"), device=str(device))
        model = wrapper.model
    else:
        raise InputError(
            f"{path} is an HF model folder but not a latentlm export (its config.json has model_type "
            f"{hf.get('model_type')!r} and no {LATENT_META}); load it with transformers, or give a latentlm run "
            "directory or a folder made by `latentlm export`"
        )
    model.to(torch.device(device)).eval()
    model.run_config = cfg
    model.checkpoint_path = None  # results.json provenance: not a checkpoint of a run directory
    return model, Tokenizer.load(path)
