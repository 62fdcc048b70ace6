"""The variant registry: one line per variant, resolved lazily (no import side effects).

Each variant module exposes `Config` (a dataclass; decoders extend DecoderConfig) and `Model`.
"""

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    module: str

    @property
    def config(self) -> type:
        return importlib.import_module(self.module).Config

    @property
    def model(self) -> type:
        return importlib.import_module(self.module).Model


VARIANTS: dict[str, Variant] = {
    "gpt": Variant("latentlm.models.gpt"),
    "free_transformer": Variant("latentlm.models.free_transformer"),
    "thoughtbubbles": Variant("latentlm.models.thoughtbubbles"),
    "latent_thoughts": Variant("latentlm.models.latent_thoughts"),
}


def build_model(config):
    """Instantiate the model class registered for config.variant."""
    return VARIANTS[config.variant].model(config)
