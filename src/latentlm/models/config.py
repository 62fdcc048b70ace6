"""DecoderConfig: the shape of a Llama-style decoder, shared by every decoder variant."""

from dataclasses import dataclass
from typing import ClassVar

from latentlm.errors import ConfigError


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass
class DecoderConfig:
    variant: str = "gpt"
    """Which model to build: gpt | thoughtbubbles | free_transformer | latent_thoughts."""
    vocab_size: int = 2048
    """Vocabulary size; must cover every token id of the tokenizer."""
    d_model: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Attention (query) heads; head_dim = d_model / n_heads."""
    n_kv_heads: int | None = None
    """Key/value heads for grouped-query attention (must divide n_heads); None means n_heads."""
    ffn_hidden: int | None = None
    """SwiGLU hidden width; None means 8/3 * d_model rounded up to a multiple of 64."""
    max_seq_len: int = 256
    """Longest sequence the model accepts (prompt plus generated tokens)."""
    rope_base: float = 10000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    tie_embeddings: bool = True
    """Share the input embedding and the output head."""
    init_std: float = 0.02
    """Std of the normal init; residual output projections use init_std / sqrt(2 * n_layers)."""
    special_tokens: ClassVar[tuple[str, ...]] = ()
    """Tokens the run's tokenizer gains for this model (VariantConfig); a plain decoder adds none."""

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        return self.ffn_hidden or 64 * -(-(8 * self.d_model // 3) // 64)

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model} "
                f"(head_dim must be an integer); allowed n_heads: {_divisors(self.d_model)}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim = d_model / n_heads = {self.head_dim} must be even for RoPE")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ConfigError(
                f"model.n_kv_heads={self.n_kv_heads} must divide model.n_heads={self.n_heads}; "
                f"allowed: {_divisors(self.n_heads)}"
            )
        if self.ffn_hidden is not None and self.ffn_hidden < 1:
            raise ConfigError(f"model.ffn_hidden must be >= 1 or null, got {self.ffn_hidden}")
