"""Makes `lm_eval --model latentlm ... --tasks latentlm_piqa` work from lm-eval's own CLI.

lm-eval 0.4.x has no plugin mechanism: models come from a registry filled by `lm_eval/models/__init__.py`, tasks
from its own folder plus `--include_path` (requests for entry points / an include-package flag are open upstream:
EleutherAI/lm-evaluation-harness issues #1457, #1621, #3282). So the latentlm wheel installs `latentlm-lm_eval.pth`,
a standard `site` startup file whose one line imports this module. It imports nothing heavy (no lm_eval, no torch,
no latentlm): it only adds an import hook that acts when lm-eval itself is imported:

- after `lm_eval.api.registry` loads: registers the model name `latentlm` as a lazy placeholder
  (`latentlm.eval.harness:LatentLMEvalLM`), which lm-eval's registry supports for its own models;
- after `lm_eval.tasks.manager` loads: TaskManager(include_defaults=True) also indexes latentlm's task folder
  (the YAMLs rendered for the local data root by `latentlm data prepare TASK`, <data root>/tasks/lm_eval, or else the
  shipped ones, whose data paths are relative to the default data root `data/`). Paths passed with --include_path
  come later and override these.

Set LATENTLM_LM_EVAL_HOOK=0 to switch it off. Failures never break the interpreter: the hook then does nothing.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

MODEL = "latentlm"
TARGET = "latentlm.eval.harness:LatentLMEvalLM"


def task_dir() -> str | None:
    """<data root>/tasks/lm_eval when prepared, else the task YAMLs shipped in the package."""
    import importlib.util

    rendered = os.path.join(os.environ.get("LATENTLM_DATA", "data"), "tasks", "lm_eval")
    if os.path.isdir(rendered):
        return os.path.abspath(rendered)
    spec = importlib.util.find_spec("latentlm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    shipped = os.path.join(list(spec.submodule_search_locations)[0], "eval", "tasks")
    return shipped if os.path.isdir(shipped) else None


def _register(module) -> None:
    if MODEL not in module.model_registry:
        module.model_registry.register(MODEL, target=TARGET)


def _patch_task_manager(module) -> None:
    import inspect

    cls = module.TaskManager
    orig = cls.__init__
    sig = inspect.signature(orig)

    def __init__(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        ours = task_dir()
        if ours and bound.arguments.get("include_defaults", True):
            given = bound.arguments.get("include_path")
            given = list(given) if isinstance(given, (list, tuple)) else ([given] if given else [])
            bound.arguments["include_path"] = [ours, *given]
        orig(*bound.args, **bound.kwargs)

    __init__.__wrapped__ = orig
    cls.__init__ = __init__


HOOKS = {"lm_eval.api.registry": _register, "lm_eval.tasks.manager": _patch_task_manager}


class _AfterImport(MetaPathFinder):
    """Runs HOOKS[name](module) right after lm-eval's module `name` has executed."""

    def find_spec(self, name, path=None, target=None):
        if name not in HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            try:
                HOOKS[name](module)
            except Exception:  # a changed lm-eval: stay out of the way
                pass

        loader.exec_module = exec_module
        return spec


def install() -> None:
    if os.environ.get("LATENTLM_LM_EVAL_HOOK", "1") == "0":
        return
    if any(isinstance(f, _AfterImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _AfterImport())
    for name, hook in HOOKS.items():  # lm-eval already imported (e.g. this module imported late)
        if name in sys.modules:
            try:
                hook(sys.modules[name])
            except Exception:
                pass


install()
