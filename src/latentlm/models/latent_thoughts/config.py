"""Configuration of latent thoughts on a pretrained LM: Coconut, LT-Tuning, Soft Thinking and their baselines."""

from dataclasses import dataclass, field
from typing import Literal

from latentlm.errors import ConfigError
from latentlm.models.latent_thoughts.methods import METHODS, get_method


@dataclass
class LatentThoughtsConfig:
    variant: str = "latent_thoughts"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""
    base_model: str = "smollm2"
    """A local HF causal-LM folder, or a prepared name (smollm2 -> `latentlm data prepare smollm2`)."""
    method: Literal["nocot", "cot", "pause", "coconut", "lt_tuning", "soft_thinking"] = "coconut"
    """nocot | cot (CoT-SFT) | pause (pause tokens) | coconut | lt_tuning | soft_thinking (inference on a CoT model)."""
    max_seq_len: int = 384
    """Longest sequence (prompt, latents and answer) the run accepts."""
    special_tokens: list[str] = field(default_factory=lambda: ["<bot>", "<eot>", "<latent>", "<thinking>"])
    """Added to the base tokenizer in this order (embeddings initialised from `init_token`)."""
    init_token: str = "<<"
    """Existing token whose embedding initialises the special tokens (Coconut uses "<<")."""
    latent_embedding: Literal["auto", "hidden", "fusion", "soft"] = "auto"
    """Input embedding of a latent: auto = the method's (methods.py; coconut: hidden, lt_tuning: stage 1 hidden,
    stage 2 fusion, soft_thinking: soft)."""
    fusion_alpha: float = 0.6
    """LT-Tuning: weight of the hidden state in alpha * h + (1 - alpha) * E^T p~ (alpha = 1 is Coconut)."""
    fusion_top_p: float = 0.9
    fusion_temperature: float = 1.0
    soft_top_k: int = 10
    """Soft Thinking: concept token over the top-k tokens (after temperature and min-p)."""
    soft_min_p: float = 0.001
    soft_temperature: float = 0.6
    adapter: bool = False
    """Map latents through Linear -> GELU -> Linear -> LayerNorm (LT-Tuning + Adapter)."""
    adapter_hidden: int = 1024
    # curricula (data transforms; the stage is the data source's phase)
    c_thought: int = 1
    """Coconut: latents per replaced reasoning step."""
    max_latent_stage: int = 3
    """Coconut (official rule): stage k <= max replaces the first k steps with k*c latents and keeps the rest; the
    stage after max drops every step and keeps min(max, #steps)*c latents (max*c with pad_latent_to_max)."""
    pad_latent_to_max: bool = False
    """Coconut: always max_latent_stage*c latents in the last stage and at inference (the official GSM setting);
    otherwise min(max_latent_stage, #steps)*c per example, as the official ProsQA/ProntoQA runs do."""
    pause_tokens: int = 3
    """pause baseline: <latent> tokens (plain, learned embeddings) between question and answer."""
    stage_steps: list[int] = field(default_factory=lambda: [100, 100, 100])
    """Optimizer steps per curriculum stage, stages numbered from 0 (methods.py). Coconut: stage 0 = CoT, stages
    1..max and the all-latent stage max+1, one entry each, the last one repeating; LT-Tuning: stages 0 (CoT-SFT),
    1 (hidden-state <thinking>), 2 (fusion) - the paper's stages 1, 2, 3."""
    lt_threshold: list[float] = field(default_factory=lambda: [0.3, 0.2])
    """LT-Tuning: a response token is a candidate when p(gold) under the current model is below this; one value per
    insertion stage, [stage 1, stage 2] (stage 0 is CoT-SFT and inserts nothing)."""
    lt_cap: list[int] = field(default_factory=lambda: [6, 8])
    """LT-Tuning: at most this many insertion points per example, [stage 1, stage 2]."""
    lt_insert_prob: list[float] = field(default_factory=lambda: [0.85, 0.95])
    lt_second_prob: list[float] = field(default_factory=lambda: [0.15, 0.2])
    # inference
    policy: Literal["auto", "fixed", "learned", "threshold", "cold_stop", "none"] = "auto"
    """auto = the method's: coconut fixed count, lt_tuning learned <thinking>, soft_thinking cold stop, else none."""
    n_latents: int | None = None
    """fixed policy: latents after <bot>; None = Coconut's rule (max_latent_stage*c, or min(max, #gold steps)*c per
    example when the evaluator knows the example and pad_latent_to_max is off)."""
    threshold: float = 0.5
    """threshold policy: a latent step whenever the top next-token probability is below this."""
    threshold_cap: int = 8
    """threshold policy: at most this many latent steps (learned policy: 8x this)."""
    soft_cap: int = 1024
    """Soft Thinking: at most this many soft steps, then plain decoding with nothing forced (the default exceeds any
    max_new_tokens, so only cold stop ends thinking)."""
    cold_stop_entropy: float = 0.01
    """cold stop: end thinking when the entropy (nats) stays below this ..."""
    cold_stop_steps: int = 4
    """... for this many consecutive steps (Soft Thinking's k; scaled down for small models)."""

    @property
    def n_stages(self) -> int:
        return get_method(self.method).n_stages(self)

    def adopt_checkpoint(self, ckpt) -> None:
        """Loading a checkpoint that holds a base record (base/source.json): build the base from it, so the
        checkpoint needs nothing outside itself (its model.safetensors holds every weight)."""
        from pathlib import Path

        if (Path(ckpt) / "base" / "source.json").is_file():
            self.base_model = str(Path(ckpt) / "base")

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown model.method={self.method!r}; known: {', '.join(METHODS)}")
        if self.max_seq_len < 8:
            raise ConfigError(f"model.max_seq_len={self.max_seq_len} is too short")
        if not 0 <= self.fusion_alpha <= 1:  # (NaN fails the comparison, so it is rejected too)
            raise ConfigError(f"model.fusion_alpha={self.fusion_alpha} must be in [0, 1]")
        if self.c_thought < 1 or self.max_latent_stage < 0:
            raise ConfigError("model.c_thought must be >= 1 and model.max_latent_stage >= 0")
        for name in ("n_latents", "pause_tokens", "threshold_cap", "soft_cap", "soft_top_k", "adapter_hidden"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"model.{name}={v}: a latent/token count must be >= 0")
        if self.cold_stop_steps < 1:
            raise ConfigError(f"model.cold_stop_steps={self.cold_stop_steps} must be >= 1")
        if not self.stage_steps or any(s < 0 for s in self.stage_steps) or sum(self.stage_steps) == 0:
            raise ConfigError(
                f"model.stage_steps={self.stage_steps} must list step counts >= 0 (0 skips a stage, e.g. stage 0 "
                "when starting from a CoT-SFT model), not all 0"
            )
        for name in ("lt_threshold", "lt_cap", "lt_insert_prob", "lt_second_prob"):
            if len(getattr(self, name)) != 2:
                raise ConfigError(
                    f"model.{name}={getattr(self, name)} needs one value per LT-Tuning insertion stage: [stage 1, "
                    "stage 2] (stage 0 is CoT-SFT)"
                )
        method = get_method(self.method)
        missing = [t for t in method.special_tokens if t not in self.special_tokens]
        if missing:
            raise ConfigError(f"model.special_tokens lacks {missing} which method {self.method!r} needs")

    def tokenizer_path(self):
        from latentlm.models.latent_thoughts.base import resolve_base

        return resolve_base(self.base_model)
