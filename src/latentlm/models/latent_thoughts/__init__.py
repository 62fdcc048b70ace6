"""Latent thoughts on a pretrained LM: Coconut, LT-Tuning, Soft Thinking and the CoT / No-CoT / pause baselines."""

from __future__ import annotations

from pathlib import Path

from latentlm.models.latent_thoughts import source as _source  # noqa: F401  (registers the reasoning curriculum)
from latentlm.models.latent_thoughts.config import LatentThoughtsConfig
from latentlm.models.latent_thoughts.model import LatentThoughts
from latentlm.models.spec import Generation, HFExport, VariantSpec, standard_source

Config, Model = LatentThoughtsConfig, LatentThoughts


def _shard_units(model: LatentThoughts):
    """The base model's decoder layers: the module classes HF itself keeps whole (`_no_split_modules`)."""
    keep = set(model.base._no_split_modules or ())
    return [m for m in model.base.modules() if type(m).__name__ in keep]


def _write_extras(model: LatentThoughts, out: Path) -> dict:
    """Beside the fine-tuned base's own save_pretrained: the method, the special-token ids and the adapter."""
    from safetensors.torch import save_file

    if model.adapter is not None:
        save_file({k: v.contiguous() for k, v in model.adapter.state_dict().items()}, str(out / "adapter.safetensors"))
    return {"method": model.config.method, "special_token_ids": model.ids, "adapter": model.adapter is not None}


def _read_extras(model: LatentThoughts, path: Path, meta: dict) -> None:
    from safetensors.torch import load_file

    if meta.get("adapter"):
        model.adapter.load_state_dict(load_file(str(path / "adapter.safetensors")))


def _relocate(model_cfg: dict, path: Path) -> dict:
    return {**model_cfg, "base_model": str(path)}  # the exported folder is the fine-tuned base


def _adopt(config: LatentThoughtsConfig, ckpt: Path) -> None:
    config.adopt_checkpoint(ckpt)


def _save_extras(model: LatentThoughts, ckpt: Path) -> None:
    model.save_checkpoint_extras(ckpt)


SPEC = VariantSpec(
    name="latent_thoughts",
    config=LatentThoughtsConfig,
    model=LatentThoughts,
    build_source=standard_source,  # data.reasoning: the method's curriculum over reasoning tasks
    shard_units=_shard_units,
    ddp_find_unused_parameters=lambda model: model.adapter is not None,  # batches without latents skip it
    hf_export=HFExport(
        "base_model", base=lambda m: m.base, write_extras=_write_extras, read_extras=_read_extras, relocate=_relocate
    ),
    flops_per_token=None,
    num_params=lambda model: model.num_params(),
    eval_extras=frozenset({"reasoning"}),
    generation=Generation(
        trace=True,
        encode_prompt=lambda model, tokenizer, text: model.prompt_ids(text),  # e.g. Coconut appends <bot>
        slide_blocker=lambda config: "its context holds latent thoughts that are not tokens, so it cannot be cropped",
    ),
    save_checkpoint_extras=_save_extras,
    adopt_checkpoint=_adopt,
)
