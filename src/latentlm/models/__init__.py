"""The variant registry: one line per variant, resolved lazily (no import side effects).

Each entry names the module whose `SPEC` (a `latentlm.models.spec.VariantSpec`) declares the variant: its config,
model, data source, FSDP units, HF export, evaluators, generation options, accounting and hooks. A new variant is
one folder with such a `SPEC` plus one line here (or `register(spec)` at run time, e.g. from a plugin or a test).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from latentlm.models.spec import SpecError, VariantSpec


class Registry(MutableMapping):
    """name -> VariantSpec. Values may be given as a module path, imported on first lookup."""

    def __init__(self, entries: dict[str, str | VariantSpec]):
        self._entries: dict[str, str | VariantSpec] = {}
        for name, entry in entries.items():
            self[name] = entry

    def __getitem__(self, name: str) -> VariantSpec:
        entry = self._entries[name]
        if isinstance(entry, str):
            spec = getattr(importlib.import_module(entry), "SPEC", None)
            if not isinstance(spec, VariantSpec):
                raise SpecError(f"variant {name!r}: module {entry} defines no SPEC = VariantSpec(...)")
            self._check(name, spec)
            self._entries[name] = entry = spec
        return entry

    def __setitem__(self, name: str, entry: str | VariantSpec) -> None:
        if isinstance(entry, VariantSpec):
            self._check(name, entry)
        elif not isinstance(entry, str):
            raise SpecError(f"variant {name!r}: register a VariantSpec or a module path, not {type(entry).__name__}")
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _check(name: str, spec: VariantSpec) -> None:
        if spec.name != name:
            raise SpecError(f"variant {name!r}: its VariantSpec is named {spec.name!r}; register it under that name")


VARIANTS = Registry(
    {
        "gpt": "latentlm.models.gpt",
        "free_transformer": "latentlm.models.free_transformer",
        "thoughtbubbles": "latentlm.models.thoughtbubbles",
        "latent_thoughts": "latentlm.models.latent_thoughts",
    }
)


def register(spec: VariantSpec) -> VariantSpec:
    """Add a variant at run time (the spec was validated when it was built)."""
    VARIANTS[spec.name] = spec
    return spec


def variant_spec(name_or_config) -> VariantSpec:
    """The spec of a registry name or of a model config (its `variant`)."""
    name = name_or_config if isinstance(name_or_config, str) else name_or_config.variant
    return VARIANTS[name]


def build_model(config):
    """Instantiate the model class registered for config.variant."""
    return variant_spec(config).build(config)


__all__ = ["VARIANTS", "VariantSpec", "SpecError", "register", "variant_spec", "build_model"]
