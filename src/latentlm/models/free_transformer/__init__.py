"""Free Transformer variant: a conditional-VAE decoder with a per-token binary latent."""

from latentlm.models.free_transformer.config import FreeTransformerConfig
from latentlm.models.free_transformer.model import FreeTransformer

Config, Model = FreeTransformerConfig, FreeTransformer
