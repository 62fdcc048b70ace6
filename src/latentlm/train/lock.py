"""An exclusive lock on a run directory, so two trainings never write into one `out_dir`.

`out_dir/.lock` is created with O_CREAT | O_EXCL and holds the owner's pid and host. A second trainer finds it and
stops with one error line. A lock whose process no longer exists (on this host) is stale: a killed trainer cannot
remove its lock, so the next trainer removes it, says so, and takes the lock.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from latentlm.errors import InputError

LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`with RunLock(run_dir):` creates run_dir if needed (removed again on exit if it stayed empty)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.created_dir = False
        self.held = False

    def acquire(self) -> RunLock:
        try:
            self.created_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(
                f"cannot create train.out_dir {self.run_dir} ({e.strerror or e}); choose a writable --train.out_dir"
            ) from None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._remove_if_stale():
                    continue
                raise InputError(self._busy_message()) from None
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOSPC):
                    raise InputError(
                        f"cannot write into train.out_dir {self.run_dir} ({e.strerror}); "
                        "choose a writable --train.out_dir"
                    ) from None
                raise
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()} {socket.gethostname()}\n")
            except OSError as e:  # disk full: leave no empty lock behind
                self.path.unlink(missing_ok=True)
                raise InputError(
                    f"cannot write into train.out_dir {self.run_dir} ({e.strerror or e}); free space or choose "
                    "another --train.out_dir"
                ) from None
            self.held = True
            return self
        raise InputError(self._busy_message())

    def _owner(self) -> tuple[int | None, str]:
        try:
            pid, host = self.path.read_text().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None, ""

    def _remove_if_stale(self) -> bool:
        pid, host = self._owner()
        if pid is None:  # being written right now, or unreadable: treat as held
            return False
        if host != socket.gethostname() or _alive(pid):
            return False
        print(f"warning: removed the stale lock of dead process {pid} on {self.run_dir}", file=sys.stderr)
        self.path.unlink(missing_ok=True)
        return True

    def _busy_message(self) -> str:
        pid, host = self._owner()
        who = f"process {pid} on {host}" if pid is not None else "another process"
        return (
            f"{self.run_dir} is in use by another training ({who}); wait for it to finish or choose another "
            f"--train.out_dir (if that process is gone, delete {self.path})"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        if self.created_dir:
            try:
                self.run_dir.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
