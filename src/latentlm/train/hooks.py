"""Hooks into training: points where code outside the library (tests, tools) can observe or interrupt a run.

Production code installs none; the trainer and the checkpoint writer only call the installed hooks. The crash
tests install their fault injection here (tests/faults.py: SIGKILL after a step or in the middle of a checkpoint
write, ENOSPC inside the writer), so no test switch is read on the training path.

    from latentlm.train import hooks
    with hooks.installed(MyHook()):      # a TrainHook subclass; override what you need
        train(cfg)
"""

from __future__ import annotations

import contextlib
from pathlib import Path


class TrainHook:
    """No-op base: override the events you need."""

    def after_step(self, step: int) -> None:
        """After optimizer step `step` (1-based) and its log/eval/checkpoint work."""

    def checkpoint_writing(self, step: int, folder: Path) -> None:
        """Inside the checkpoint writer, after the weights and before the optimizer state are written to `folder`
        (the temporary folder that is renamed into place once complete)."""


_INSTALLED: list[TrainHook] = []


def install(hook: TrainHook) -> TrainHook:
    _INSTALLED.append(hook)
    return hook


def remove(hook: TrainHook) -> None:
    if hook in _INSTALLED:
        _INSTALLED.remove(hook)


@contextlib.contextmanager
def installed(hook: TrainHook):
    install(hook)
    try:
        yield hook
    finally:
        remove(hook)


def after_step(step: int) -> None:
    for hook in list(_INSTALLED):
        hook.after_step(step)


def checkpoint_writing(step: int, folder: Path) -> None:
    for hook in list(_INSTALLED):
        hook.checkpoint_writing(step, folder)
