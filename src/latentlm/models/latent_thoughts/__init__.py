"""Latent thoughts on a pretrained LM: Coconut, LT-Tuning, Soft Thinking and the CoT / No-CoT / pause baselines."""

from latentlm.models.latent_thoughts import source as _source  # noqa: F401  (registers the reasoning curriculum)
from latentlm.models.latent_thoughts.config import LatentThoughtsConfig
from latentlm.models.latent_thoughts.model import LatentThoughts

Config, Model = LatentThoughtsConfig, LatentThoughts
