"""lm-eval task YAMLs shipped with latentlm, and their copies resolved for a data root.

The shipped YAMLs are plain lm-eval task configs whose data files sit under the default data root, relative to the
working directory (`data/tasks/piqa.jsonl`). `install_tasks(root)` writes copies with the absolute data root into
<root>/tasks/lm_eval/ (`latentlm data prepare TASK` calls it), so lm-eval finds the data from any directory:

    lm_eval --model latentlm --model_args run_dir=R --tasks latentlm_piqa            # with the latentlm wheel's hook
    lm_eval --model hf --model_args pretrained=EXPORT,trust_remote_code=True \\
        --include_path data/tasks/lm_eval --tasks latentlm_piqa                        # no hook needed
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_ROOT = "data/tasks/"


def shipped() -> dict[str, str]:
    """task name -> YAML text of every task shipped in this folder."""
    folder = resources.files(__name__)
    return {f.name[:-5]: f.read_text() for f in folder.iterdir() if f.name.endswith(".yaml")}


def resolve(text: str, data_root: Path, corpus: str | None = None) -> str:
    text = text.replace(f'"{DEFAULT_ROOT}', f'"{Path(data_root).resolve()}/tasks/')
    if corpus is not None:
        text = text.replace("/heldout.jsonl", f"/heldout_{corpus}.jsonl")
    return text


def install_tasks(data_root: Path, out_dir: Path | None = None, corpus: str | None = None) -> Path:
    """Write the shipped YAMLs with `data_root` resolved into out_dir (default <data_root>/tasks/lm_eval)."""
    out = Path(out_dir) if out_dir is not None else Path(data_root) / "tasks" / "lm_eval"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in shipped().items():
        (out / f"{name}.yaml").write_text(resolve(text, data_root, corpus))
    return out
