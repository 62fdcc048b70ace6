"""Configuration of Thoughtbubbles (Liu, Murty, Manning, Csordás; arXiv 2510.00219)."""

import math
from dataclasses import dataclass, field
from typing import Literal

from latentlm.errors import ConfigError
from latentlm.models.config import DecoderConfig


@dataclass
class ThoughtbubblesConfig(DecoderConfig):
    variant: str = "thoughtbubbles"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""
    fork_layers: list[int] = field(default_factory=lambda: [1, 2])
    """0-based indices of the blocks that fork their input streams before running (authors: 3 early-middle)."""
    budget: float = 2.0
    """kappa: stream budget as a multiple of the input length (k = min(ceil(kappa * T), 2N) per fork layer)."""
    budget_mode: Literal["global", "causal"] = "global"
    """global: top-k over the whole sequence (the authors' code; later tokens affect which earlier forks survive) |
    causal: each token keeps the candidates whose probability exceeds causal_threshold, at most causal_cap
    streams (zero leak, KV-cached generation)."""
    causal_threshold: float = 0.5
    """causal mode: keep a candidate when exp(cumulative log-score) exceeds this."""
    causal_target: float | None = None
    """causal mode with a FLOP target: instead of the fixed causal_threshold, each fork layer keeps candidates above
    its own threshold, calibrated during training (a running estimate, like a norm's running statistic) so that
    on average `causal_target` streams per token survive it (as far as the fork count and cap allow). The
    threshold is a constant at evaluation, so decisions stay per token (zero leak)."""
    causal_cap: int = 4
    """causal mode: at most this many streams per token."""
    merge: Literal["residual", "distribution", "logit_sum"] = "residual"
    """residual: p-weighted mean of a token's final residuals, then norm and head (authors' JAX code) |
    distribution: decode every stream and mix the distributions with weights p (the paper's description) |
    logit_sum: the authors' v1 PyTorch merge, final norm per stream and logits = sum_j p_j * head(norm(x_j)),
    not normalised by sum_j p_j."""
    ranking: Literal["learned", "random", "worst"] = "learned"
    """Which candidates survive the global top-k: learned (highest c, the authors' code) | random (uniform
    ranking; c still attenuates) | worst (lowest c). random/worst are ablations; the protected last candidate of
    every token survives in all three."""
    score_mode: Literal["window", "prefix"] = "window"
    """How score() (perplexity, multiple choice, lm-eval) gets log p(x_t | x_<t) under a global budget: window
    (one forward over the whole window, the authors' evaluation: later tokens influence which earlier forks
    survive) | prefix (every position from a forward over its own prefix only, as generate() does; T forwards
    per window, batched). Causal budgets and GPT give the same numbers either way."""
    bias_scale: Literal["sqrt", "exact"] = "sqrt"
    """Key bias in attention: c / sqrt(head_dim) (authors' code) or exactly c."""
    bias_channel: Literal["extra", "hijack"] = "extra"
    """extra: the bias rides in an added head channel | hijack: it overwrites the last channel (authors' code)."""
    score_clip: float = -20.0
    """Lower clip of each log-sigmoid fork/keep score."""
    gumbel_scale: float = 0.0
    """Training only: add this times Gumbel noise to the ranking scores (Gumbel-top-k sampling of survivors)."""
    score_noise: float = 0.0
    """Training only: add this times logistic noise to the score logits before the log-sigmoid (the authors'
    unused gumbel_sigmoid_noise helper); unlike gumbel_scale it changes c, hence the attenuation, not only the
    ranking."""
    score_temperature: float = 1.0
    """Divide the score logits by this before the log-sigmoid (< 1 sharpens p towards 0 or 1)."""
    score_init_std: float | None = None
    """Initial std of the score heads' weights (default: init_std)."""
    fork_embedding: bool = True
    """Add a learned embedding to each fork copy at every fork layer."""
    duplicate_tokens: bool = False
    """Baseline: double every token at the first fork layer, p = 1, no scoring, no later forks."""

    def validate(self) -> None:
        super().validate()
        for i in self.fork_layers:
            if not 0 <= i < self.n_layers:
                raise ConfigError(
                    f"model.fork_layers contains {i}, out of range; allowed 0..{self.n_layers - 1} (n_layers={self.n_layers})"
                )
        if len(set(self.fork_layers)) != len(self.fork_layers) or list(self.fork_layers) != sorted(self.fork_layers):
            raise ConfigError(f"model.fork_layers={self.fork_layers} must be strictly increasing")
        if self.budget < 1 or not math.isfinite(self.budget):
            raise ConfigError(f"model.budget={self.budget} must be >= 1 (a multiple of the sequence length)")
        if self.score_noise < 0 or self.gumbel_scale < 0:
            raise ConfigError("model.score_noise and model.gumbel_scale must be >= 0 (0 disables the noise)")
        if not self.score_temperature > 0:
            raise ConfigError(f"model.score_temperature={self.score_temperature} must be > 0")
        if self.fork_layers and not self.duplicate_tokens and self.budget > 2 ** len(self.fork_layers):
            raise ConfigError(
                f"model.budget={self.budget} exceeds the candidate count: {len(self.fork_layers)} fork layer(s) give "
                f"at most {2 ** len(self.fork_layers)} streams per token; use 1 <= budget <= {2 ** len(self.fork_layers)}"
            )
        if self.causal_target is not None and not 1 <= self.causal_target <= self.causal_cap:
            raise ConfigError(
                f"model.causal_target={self.causal_target} must be between 1 and model.causal_cap={self.causal_cap} "
                "streams per token"
            )
        if self.causal_cap < 1:
            raise ConfigError(f"model.causal_cap={self.causal_cap} must be >= 1 stream per token")
        if not 0 < self.causal_threshold < 1:
            raise ConfigError(f"model.causal_threshold={self.causal_threshold} must be in (0, 1)")
        if self.bias_channel == "hijack" and self.head_dim < 4:
            raise ConfigError(
                f"head_dim={self.head_dim} is too small for model.bias_channel=hijack, which overwrites one channel "
                "of every head; use head_dim >= 4 or bias_channel=extra"
            )
        if self.duplicate_tokens and not self.fork_layers:
            raise ConfigError("model.duplicate_tokens needs a fork layer (the first one doubles every token)")
