"""Configuration of the Free Transformer (Fleuret, arXiv 2510.17558)."""

from dataclasses import dataclass

from latentlm.errors import ConfigError
from latentlm.models.config import DecoderConfig


@dataclass
class FreeTransformerConfig(DecoderConfig):
    variant: str = "free_transformer"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""
    latent: bool = True
    """Use the latent Z; false makes the model exactly the baseline GPT (same parameters, same function)."""
    latent_bits: int = 16
    """H: bits per token; Z_t is one of 2^H codes (paper: 16)."""
    inject_layer: int | None = None
    """Index of the block whose keys/values receive Z (0-based); the encoder reads the residual stream entering
    it. None means n_layers // 2 (paper: the middle)."""
    kappa_bits: float = 0.5
    """Free bits per token, in bits: the KL term is mean_t max(0, KL_t - kappa). Must be > 0."""
    kappa_start_bits: float | None = None
    """kappa schedule: start at this larger kappa, hold it for kappa_hold_steps, anneal to kappa_bits over
    kappa_anneal_steps optimizer steps (log-linear in kappa), then stay at kappa_bits. None: kappa_bits from the
    first step. A small target kappa (1/2 bit) learned from scratch often never starts using Z; a warm start at
    ~2 bits gets the encoder and decoder coupled first. The current value is logged as the metric `kappa_bits`."""
    kappa_anneal_steps: int = 0
    """Length of the kappa schedule's anneal in optimizer steps (>= 1 when kappa_start_bits is set)."""
    kappa_hold_steps: int = 0
    """Optimizer steps at kappa_start_bits before the anneal begins (0: anneal from the first step)."""
    inject_scale: str = "init"
    """How large the injected R_t = W_post[:, d_t] is against X_{L/2}: "init" (the table's rows are learned
    freely from an N(0, inject_std) init) | "rms" (R_t = W_post[:, d_t] * RMS(X_{L/2, t}), so the ratio
    |R|/|X| stays near inject_std as the residual stream grows). The metric `r_over_x` logs |R|/|X_{L/2}|."""
    inject_std: float = 1.0
    """Init std of the post-sampler table (must be > 0). 1.0 gives rows of norm ~sqrt(d_model), comparable to
    |X_{L/2}|; with the decoder's init_std (0.02) R is ~3% of the key/value input, drowned by the RMSNorm, and
    the decoder learns to ignore Z (the synthetic task's block position never reaches Z)."""
    inject_weight_decay: bool = False
    """Weight-decay the post-sampler table like any matrix. Off by default: decay shrinks R further while X
    grows. The paper's plain linear layer is `inject_std=0.02 inject_weight_decay=true` (this library's
    previous default)."""
    score_samples: int = 1
    """Prior samples of Z averaged by score() (importance-weighted by the prefix likelihood)."""
    score_seed: int = 0
    """Seed of the prior Z used by score(), so likelihoods are reproducible."""
    mapper_budget: int = 1 << 22
    """Elements per (tokens x codes) chunk in the mapper's backward; bounds its memory whatever B*T*2^H is."""

    def kappa_at(self, step: int | None) -> float:
        """kappa in bits at optimizer step `step` (0-based); None (evaluation) means the target kappa_bits."""
        if step is None or self.kappa_start_bits is None or step >= self.kappa_hold_steps + self.kappa_anneal_steps:
            return self.kappa_bits
        frac = max(0, step - self.kappa_hold_steps) / self.kappa_anneal_steps
        return self.kappa_start_bits ** (1 - frac) * self.kappa_bits**frac

    @property
    def inject_at(self) -> int:
        return self.n_layers // 2 if self.inject_layer is None else self.inject_layer

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.latent_bits <= 20:
            raise ConfigError(f"model.latent_bits={self.latent_bits} must be in [1, 20] (2^H codes per token)")
        if not 0 < self.kappa_bits < float("inf"):  # rejects NaN too
            raise ConfigError(f"model.kappa_bits={self.kappa_bits} must be > 0 and finite (free bits per token)")
        if self.kappa_start_bits is not None:
            if not self.kappa_bits <= self.kappa_start_bits < float("inf"):
                raise ConfigError(
                    f"model.kappa_start_bits={self.kappa_start_bits} must be >= model.kappa_bits={self.kappa_bits} "
                    "(the schedule anneals down to kappa_bits) and finite, or null for no schedule"
                )
            if self.kappa_anneal_steps < 1:
                raise ConfigError(
                    f"model.kappa_anneal_steps={self.kappa_anneal_steps} must be >= 1 when kappa_start_bits is set"
                )
        elif self.kappa_anneal_steps < 0:
            raise ConfigError(f"model.kappa_anneal_steps={self.kappa_anneal_steps} must be >= 0")
        if self.kappa_hold_steps < 0:
            raise ConfigError(
                f"model.kappa_hold_steps={self.kappa_hold_steps} must be >= 0 (steps at kappa_start_bits)"
            )
        if self.inject_scale not in ("init", "rms"):
            raise ConfigError(f"model.inject_scale={self.inject_scale!r} must be one of: init, rms")
        if not 0 < self.inject_std < float("inf"):
            raise ConfigError(f"model.inject_std={self.inject_std} must be > 0 and finite (post-sampler init std)")
        if not 0 <= self.inject_at < self.n_layers:
            raise ConfigError(
                f"model.inject_layer={self.inject_layer} is out of range; allowed 0..{self.n_layers - 1} "
                f"(n_layers={self.n_layers}) or null for the middle"
            )
        if self.score_samples < 1:
            raise ConfigError(f"model.score_samples={self.score_samples} must be >= 1")
