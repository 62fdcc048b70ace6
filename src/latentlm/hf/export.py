"""`latentlm export RUN_DIR OUT_DIR`: a folder that `AutoModelForCausalLM.from_pretrained(OUT_DIR,
trust_remote_code=True)` loads without latentlm installed.

The folder holds model.safetensors, config.json (with auto_map), generation_config.json, the tokenizer files, and
the model's source: every latentlm module the variant imports, flattened into single files next to
modeling_latentlm.py (latentlm.nn.attention -> latentlm_nn_attention.py) with `from latentlm.x import` rewritten
to relative imports. The model code is the same code that trained, not a second copy to keep in sync.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from latentlm.errors import InputError

EXPORTABLE = ("gpt", "thoughtbubbles", "free_transformer")


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
    check_export_target(run_dir, out_dir, force)  # before anything is loaded or written
    from safetensors.torch import save_model
    from transformers import PreTrainedTokenizerFast

    from latentlm import load
    from latentlm.config import to_dict
    from latentlm.hf.modeling import LatentLMForCausalLM
    from latentlm.train.checkpoint import load_config_of

    variant = load_config_of(run_dir).model.variant  # before loading: a latent-thoughts base may be absent here
    if variant not in EXPORTABLE:
        raise InputError(
            f"runs of variant {variant!r} cannot be exported as a latentlm HF model (exportable: "
            f"{', '.join(EXPORTABLE)}); latent_thoughts runs already are HF models plus a small adapter"
        )
    model, tok = load(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = f"latentlm.models.{variant}"
    bundle = dependencies(root)
    for mod in bundle:
        (out / f"{flat_name(mod)}.py").write_text(rewrite(module_file(mod).read_text()))
    (out / "configuration_latentlm.py").write_text(module_file("latentlm.hf.configuration").read_text())
    modeling = module_file("latentlm.hf.modeling").read_text()
    start, end = modeling.index("# >>> build"), modeling.index("# <<< build")
    build_block = (
        "# >>> build\nfrom .configuration_latentlm import LatentLMConfig\n"
        f"from .{flat_name(root)} import Config, Model\n\n\n"
        "def build_inner(cfg: dict):\n"
        "    fields = {k: v for k, v in cfg.items()}\n"
        "    return Model(Config(**fields))\n"
    )
    (out / "modeling_latentlm.py").write_text(modeling[:start] + build_block + modeling[end:])

    from latentlm.hf.configuration import LatentLMConfig

    cfg = LatentLMConfig(
        latentlm=to_dict(model.config), eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id
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
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok.tok, eos_token=tok.eos_token, bos_token=tok.bos_token, pad_token=tok.eos_token
    )
    hf_tok.save_pretrained(out)
    return out
