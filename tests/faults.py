"""Fault injection for the crash tests, installed as a `latentlm.train.hooks.TrainHook` (no production code reads
a test switch). A spec is KIND:STEP:
- kill_after_step:N       SIGKILL right after optimizer step N (its log, eval and checkpoint done);
- kill_in_checkpoint:N    SIGKILL in the middle of writing the checkpoint of step N (weights written, rest not);
- enospc_in_checkpoint:N  raise ENOSPC there instead (a full disk, where no small tmpfs can be mounted).

In-process: `with hooks.installed(Fault("enospc_in_checkpoint:8")): train(cfg)`. A real kill needs its own
interpreter: `python -m tests.faults kill_after_step:5 train CONFIG ...` runs the CLI with the fault installed.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from latentlm.train.hooks import TrainHook, install

KINDS = ("kill_after_step", "kill_in_checkpoint", "enospc_in_checkpoint")


class Fault(TrainHook):
    def __init__(self, spec: str):
        kind, _, step = spec.rpartition(":")
        if kind not in KINDS or not step.isdigit():
            raise ValueError(f"fault spec {spec!r}: expected KIND:STEP with KIND one of {', '.join(KINDS)}")
        self.kind, self.step = kind, int(step)

    def after_step(self, step: int) -> None:
        if self.kind == "kill_after_step" and step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def checkpoint_writing(self, step: int, folder) -> None:
        if step != self.step:
            return
        if self.kind == "kill_in_checkpoint":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "enospc_in_checkpoint":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


if __name__ == "__main__":
    install(Fault(sys.argv[1]))
    from latentlm.cli import main

    raise SystemExit(main(sys.argv[2:]))
