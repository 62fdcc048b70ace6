"""A variant that lives outside src/: registered by tests/models/test_new_variant.py, never by the package.

ToyScaled is a decoder whose token embeddings pass through a learned per-channel gain; the gain is new parameters
and new computation (token-local, so the inherited KV-cached decoding stays exact). It imports only torch and
latentlm, so `latentlm export` can flatten it into an HF folder like any built-in variant.
"""

from dataclasses import dataclass

import torch
from torch import nn

from latentlm.models.config import DecoderConfig
from latentlm.models.decoder import Decoder


@dataclass
class ToyConfig(DecoderConfig):
    variant: str = "toy"
    """Which model to build (a test-only variant)."""
    gain_init: float = 1.5
    """Initial value of every channel of the embedding gain."""


class ToyScaled(Decoder):
    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.gain = nn.Parameter(torch.full((config.d_model,), config.gain_init))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tok_emb(input_ids) * self.gain
