"""latentlm: latent-space reasoning in transformers, on one shared core, trainer and evaluator."""

from latentlm.config import RunConfig, load_config
from latentlm.models import VARIANTS, build_model, register
from latentlm.models.config import DecoderConfig
from latentlm.models.spec import VariantSpec
from latentlm.outputs import LMOutput

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a run directory, a checkpoint or a folder made by `latentlm export` -> (model, tokenizer).
    Needs nothing but the path."""
    from latentlm.hf.export import is_export, load_export
    from latentlm.rundir import load_run

    if is_export(path):
        return load_export(path, device=device)
    return load_run(path, device=device)


__all__ = [
    "load",
    "VARIANTS",
    "VariantSpec",
    "register",
    "build_model",
    "RunConfig",
    "DecoderConfig",
    "LMOutput",
    "load_config",
]
