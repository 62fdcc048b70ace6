"""Files that ship inside the package: the run configs (configs/ of the repository) and the lm-eval task YAMLs.

`configs_dir()` is the one lookup the CLI and the demo use. In a checkout, src/latentlm/configs is a symlink to the
repository's configs/; in an installed wheel it is a real folder (the build copies the files), so the same
importlib.resources path works in both.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from latentlm.errors import InputError


def configs_dir() -> Path:
    return Path(str(resources.files("latentlm") / "configs"))


def tasks_dir() -> Path:
    return Path(str(resources.files("latentlm.eval") / "tasks"))


def list_configs(variant: str | None = None) -> list[str]:
    """Shipped config names, `variant/name` (e.g. gpt/tiny), optionally of one variant."""
    root = configs_dir()
    names = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
    if variant is None:
        return names
    variants = sorted({n.split("/")[0] for n in names})
    if variant not in variants:
        raise InputError(f"no shipped configs for variant {variant!r}; variants with configs: {', '.join(variants)}")
    return [n for n in names if n.split("/")[0] == variant]


def config_path(spec: str | Path) -> Path:
    """A config file: an existing path as given, else a shipped config by name (gpt/tiny or configs/gpt/tiny.yaml)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removeprefix("configs/").removesuffix(".yaml")
    shipped = configs_dir() / f"{name}.yaml"
    return shipped if shipped.is_file() else path
