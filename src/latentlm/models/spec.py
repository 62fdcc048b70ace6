"""The variant contract, written down: what a model folder declares (`VariantSpec`) and what its model and config
provide (`VariantModel`, `VariantConfig`).

Every consumer above `models/` (trainer, distributed wrapper, checkpoint reader, CLI, evaluators, HF export,
comparison harness) reads a variant's capabilities from its spec, `latentlm.models.VARIANTS[name]`, and never
probes the model with hasattr/getattr/inspect. A variant folder's `__init__.py` builds its spec in one place:

    SPEC = VariantSpec(
        name="gpt", config=GPTConfig, model=GPT,
        build_source=build_source,               # the trainer's data source (latentlm.data.build_source)
        shard_units=lambda model: model.blocks,  # FSDP2 wraps each unit, then the root
        hf_export=HFExport("wrapper"),            # or hf_export=None with hf_export_reason="..."
        flops_per_token=decoder_flops,            # or None: no FLOP accounting (compare refuses FLOP budgets)
    )

and `models/__init__.py` registers it with one line. A spec that lacks a required field raises one `SpecError`
naming the variant and the field, when it is built (that is, at registration), not at the first step that needs
it. Fields that point above `models/` (evaluators, HF export) are declarative: names the upper layers implement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from latentlm.errors import LatentLMError
from latentlm.outputs import LMOutput


class SpecError(LatentLMError):
    """A registered variant's spec is incomplete or inconsistent (a programming error of the variant's author)."""


# --- what a variant's config and model provide ---------------------------------------------------------------


class VariantConfig(Protocol):
    """The model section of a run config (a dataclass)."""

    variant: str
    """The registry name this config builds."""
    max_seq_len: int
    """Longest sequence the model accepts."""
    special_tokens: Sequence[str]
    """Tokens `latentlm.data.load_tokenizer` adds to the run's tokenizer, in order (() for none)."""

    def validate(self) -> None:
        """Raise ConfigError naming the field and the fix."""


class VariantModel(Protocol):
    """What the trainer and the evaluators call on every model (an nn.Module)."""

    config: VariantConfig
    score_note: str
    """What `score()` computes, printed beside every likelihood figure."""
    vocab_size: int

    def __call__(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **batch) -> LMOutput:
        """Labels are pre-shifted (labels[:, t] is the token position t predicts; -100 ignored). `loss` is what the
        trainer minimises; `metrics` holds detached scalars logged verbatim."""

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) log p(x_t | x_<t); 0 at t = 0 and at padding."""

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, sampling=None, **kw) -> torch.Tensor:
        """(B, T + new) ids; keyword arguments eos_token_id and callback."""

    def parameters(self, recurse: bool = True) -> Iterable[nn.Parameter]: ...


# --- the declarative parts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HFExport:
    """How `latentlm export` writes a run as an HF folder, and how `latentlm.load` reads it back.

    wrapper: `LatentLMForCausalLM` (hf/modeling.py) around the variant's own source, flattened into the folder
      (the modules of `spec.model` and `spec.config` and every latentlm module they import). The model provides
      `scoring_logits(input_ids, attention_mask)`, `tok_emb` and `head`.
    base_model: the model holds a pretrained HF causal LM, `base(model)`, written with its own save_pretrained;
      `write_extras(model, out_dir) -> dict` saves what else the model needs beside it (returns the metadata kept
      in the folder) and `read_extras(model, path, meta)` restores it; `relocate(run_model_dict, path)` points the
      run's model config at the exported base.
    """

    kind: Literal["wrapper", "base_model"]
    base: Callable[[Any], Any] | None = None
    write_extras: Callable[[Any, Path], dict] | None = None
    read_extras: Callable[[Any, Path, dict], None] | None = None
    relocate: Callable[[dict, Path], dict] | None = None

    def __post_init__(self):
        if self.kind not in ("wrapper", "base_model"):
            raise SpecError(f"HFExport.kind must be 'wrapper' or 'base_model', got {self.kind!r}")
        if self.kind == "base_model" and None in (self.base, self.write_extras, self.read_extras, self.relocate):
            raise SpecError("HFExport('base_model') needs base, write_extras, read_extras and relocate")


def _tokenizer_prompt(model, tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text)


def _not_established(config) -> str:
    return f"sliding is not established for variant {config.variant!r}"


@dataclass(frozen=True)
class Generation:
    """Generation options beyond `model.generate(ids, n, sampling, eos_token_id=, callback=)`."""

    trace: bool = False
    """generate(..., return_trace=True) returns (ids, {"steps": [...]}) with each step's mode (latent/token)."""
    encode_prompt: Callable[[Any, Any, str], list[int]] = _tokenizer_prompt
    """(model, tokenizer, text) -> prompt ids in the variant's inference format (default: tokenizer.encode)."""
    slide_blocker: Callable[[Any], str | None] = _not_established
    """(config) -> None when the context may be cropped to the window and prefilled again (latentlm.generation),
    else why not."""


def _count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _never(model) -> bool:
    return False


def _none(model) -> tuple:
    return ()


EVAL_EXTRAS = {
    "allocation": "eval/allocation.py: streams vs entropy, selection table (needs model.fork_map)",
    "bubbles": "viz/bubbles.py: fork map of a text (needs model.fork_map)",
    "reasoning": "eval/reasoning.py: exact-match accuracy with latent thoughts",
}


@dataclass(frozen=True)
class VariantSpec:
    """Everything the layers above `models/` may know about a variant. Required: name, config, model,
    build_source, shard_units, and hf_export or hf_export_reason."""

    name: str
    """Registry name, the value of `model.variant` in a run config."""
    config: type | None = None
    """The model-config dataclass (VariantConfig)."""
    model: type | None = None
    """The nn.Module class, built as model(config) (VariantModel)."""
    build_source: Callable | None = None
    """(cfg, tokenizer, split, rank, world_size) -> the trainer's data source (see latentlm.data)."""
    shard_units: Callable[[Any], Iterable[nn.Module]] | None = None
    """model -> the submodules FSDP2 shards one by one before the root (the transformer blocks)."""
    ddp_find_unused_parameters: Callable[[Any], bool] = _never
    """model -> whether a step can leave parameters without gradient (DDP's find_unused_parameters)."""
    hf_export: HFExport | None = None
    """How the run exports to an HF folder; None with hf_export_reason when it cannot."""
    hf_export_reason: str | None = None
    flops_per_token: Callable[..., float] | None = None
    """(model, seq_len, output=None) -> training FLOPs per input token (forward + backward). A variable-compute
    model computes them from the given forward output (its stream counts), else from its configuration; never
    from state left by an earlier call. None: no FLOP accounting (FLOP-matched comparisons refuse the variant)."""
    num_params: Callable[[Any], int] = _count_params
    """model -> parameter count reported in train_summary.json (unique tensors)."""
    no_weight_decay: Callable[[Any], Iterable[nn.Parameter]] = _none
    """model -> matrices AdamW must not decay (norms, biases and vectors never decay anyway)."""
    score_modes: tuple[str, ...] = ()
    """Values `latentlm eval --score-mode` may set on `model.config.score_mode` (() when score() has one mode)."""
    eval_extras: frozenset[str] = frozenset()
    """Evaluators beyond perplexity / choice / lm-eval / leak that apply (keys of EVAL_EXTRAS)."""
    diagnostics: Callable[..., dict | None] | None = None
    """(model, tokenizer, cfg, split, max_batches) -> a report printed after `latentlm eval` (with a "report"
    list of lines), or None when it does not apply to this model (e.g. the latent-use report of the FT)."""
    generation: Generation = field(default_factory=Generation)
    begin_step: Callable[[Any, int], None] | None = None
    """(model, step) before each optimizer step (0-based): step-dependent losses (a KL schedule)."""
    save_checkpoint_extras: Callable[[Any, Path], None] | None = None
    """(model, checkpoint_dir): files the variant writes beside the weights (included in the manifest)."""
    adopt_checkpoint: Callable[[Any, Path], None] | None = None
    """(model_config, checkpoint_dir) before building the model: take what the checkpoint holds (e.g. the base
    model's record), so the checkpoint loads without outside files."""

    def __post_init__(self):
        missing = [
            f"{f} ({why})"
            for f, why in (
                ("config", "the model-config dataclass"),
                ("model", "the model class"),
                ("build_source", "the data-source builder, e.g. latentlm.data.build_source"),
                ("shard_units", "the FSDP units, e.g. lambda model: model.blocks"),
            )
            if getattr(self, f) is None
        ]
        if self.hf_export is None and not self.hf_export_reason:
            missing.append("hf_export (an HFExport, or hf_export=None with hf_export_reason saying why)")
        if missing:
            raise SpecError(f"variant {self.name!r}: its VariantSpec lacks {', '.join(missing)}")
        unknown = sorted(set(self.eval_extras) - set(EVAL_EXTRAS))
        if unknown:
            raise SpecError(f"variant {self.name!r}: unknown eval_extras {unknown}; known: {', '.join(EVAL_EXTRAS)}")
        names = {f.name for f in fields(self.config)} if hasattr(self.config, "__dataclass_fields__") else None
        if names is None:
            raise SpecError(f"variant {self.name!r}: config {self.config.__name__} must be a dataclass")
        for attr in ("variant", "max_seq_len", "special_tokens", "validate"):
            if attr not in names and not hasattr(self.config, attr):
                raise SpecError(f"variant {self.name!r}: config {self.config.__name__} lacks {attr} (VariantConfig)")
        for attr in ("forward", "score", "generate", "score_note"):
            if not hasattr(self.model, attr):
                raise SpecError(f"variant {self.name!r}: model {self.model.__name__} lacks {attr} (VariantModel)")

    # --- what consumers call ------------------------------------------------------------------------------

    def build(self, config) -> nn.Module:
        return self.model(config)

    def flops(self, model, seq_len: int, output: LMOutput | None = None) -> float | None:
        return None if self.flops_per_token is None else float(self.flops_per_token(model, seq_len, output))


# --- building blocks variants share --------------------------------------------------------------------------


def standard_source(cfg, tokenizer, split: str = "train", rank: int = 0, world_size: int = 1):
    """latentlm.data.build_source: token shards for text, the reasoning curriculum or graph paths for task data."""
    from latentlm.data import build_source

    return build_source(cfg, tokenizer, split, rank, world_size)


def decoder_blocks(model) -> Iterable[nn.Module]:
    """The FSDP units of a models/decoder.py Decoder: its transformer blocks."""
    return list(model.blocks)


def decoder_flops(model, seq_len: int, output: LMOutput | None = None) -> float:
    """A fixed-compute decoder's FLOPs depend on the sequence length only (models/decoder.py flops_per_token)."""
    return model.flops_per_token(seq_len)


def decoder_params(model) -> int:
    return model.num_params()


def slides(config) -> str | None:
    """A RoPE decoder's window may slide: attention depends only on relative positions."""
    return None
