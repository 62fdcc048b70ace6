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
    """Free bits per token, in bits: the KL term is mean_t max(0, KL_t - kappa)."""
    score_samples: int = 1
    """Prior samples of Z averaged by score() (importance-weighted by the prefix likelihood)."""
    score_seed: int = 0
    """Seed of the prior Z used by score(), so likelihoods are reproducible."""
    mapper_budget: int = 1 << 22
    """Elements per (tokens x codes) chunk in the mapper's backward; bounds its memory whatever B*T*2^H is."""

    @property
    def inject_at(self) -> int:
        return self.n_layers // 2 if self.inject_layer is None else self.inject_layer

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.latent_bits <= 20:
            raise ConfigError(f"model.latent_bits={self.latent_bits} must be in [1, 20] (2^H codes per token)")
        if not self.kappa_bits >= 0 or self.kappa_bits == float("inf"):  # rejects NaN too
            raise ConfigError(f"model.kappa_bits={self.kappa_bits} must be >= 0 (free bits per token)")
        if not 0 <= self.inject_at < self.n_layers:
            raise ConfigError(
                f"model.inject_layer={self.inject_layer} is out of range; allowed 0..{self.n_layers - 1} "
                f"(n_layers={self.n_layers}) or null for the middle"
            )
        if self.score_samples < 1:
            raise ConfigError(f"model.score_samples={self.score_samples} must be >= 1")
