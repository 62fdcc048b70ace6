"""Training logs: metrics.jsonl (always), TensorBoard (optional), Weights & Biases (optional), a tqdm bar on rank 0.

`resume_step`: the step training (re)starts from. Rows after it, written by a run that was killed after its last
checkpoint, are cut from metrics.jsonl, and TensorBoard purges its events after it (`purge_step`), so a resumed
run's logs hold every step exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm

from latentlm.errors import InputError


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl (or of RUN/metrics.jsonl given the run folder); a line torn by a crash is
    skipped. [] when there is no file."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the rows of metrics.jsonl with row step <= `step` (atomically; a torn last line is dropped)."""
    if not path.is_file():
        return
    keep, changed = [], False
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            changed = True
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > step:
            changed = True
            continue
        keep.append(line)
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text("".join(x + "\n" for x in keep))
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        progress: bool,
        total: int,
        initial: int,
        resume_step: int | None = None,
        run_config=None,
    ):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        try:
            if enabled and resume_step is not None:
                truncate_metrics(self.path, resume_step)
            self.file = open(self.path, "a") if enabled else None
        except OSError as e:
            raise InputError(f"cannot write {self.path} ({e.strerror or e}); free space or fix the folder") from None
        wandb_on = run_config is not None and getattr(run_config.log, "wandb", False)
        self.wandb = WandbLogger(run_dir, run_config) if enabled and wandb_on else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_step is None or not (run_dir / "tb").exists() else resume_step + 1
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
            except ImportError:  # tensorboard is a core dependency; stay usable without it
                self.tb = None
        self.bar = tqdm(
            total=total, initial=initial, disable=not (enabled and progress), dynamic_ncols=True, leave=False
        )

    def log(self, step: int, metrics: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: _scalar(v) for k, v in metrics.items()}}
        try:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except OSError as e:
            raise InputError(
                f"cannot write {self.path} ({e.strerror or e}); free space, then rerun the same command to resume"
            ) from None
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{kind}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log(step, row, kind)
        if kind == "train":
            self.bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", lr=f"{row.get('lr', 0):.1e}")
        else:
            self.bar.write(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
        if self.file:
            try:
                self.file.close()
            except OSError:  # disk full: the error that matters was raised already
                pass
        if self.tb is not None:
            try:
                self.tb.close()
            except OSError:
                pass
        if self.wandb is not None:
            self.wandb.close()


class WandbLogger:
    """Weights & Biases: the rows of metrics.jsonl as `kind/name` at their step, the run config as the W&B config.

    The W&B run id is kept in run_dir/wandb_id, so a resumed run continues the same W&B run. Files go to
    run_dir/wandb; with WANDB_MODE=offline nothing leaves the machine (`wandb sync run_dir/wandb` uploads later).
    """

    def __init__(self, run_dir: Path, run_config):
        try:
            import wandb
        except ImportError:
            from latentlm.errors import ConfigError

            raise ConfigError(
                "log.wandb=true needs wandb: pip install 'latentlm[wandb]' (or set log.wandb=false)"
            ) from None
        from latentlm.config import to_dict

        run_dir = Path(run_dir)
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        self.run = wandb.init(
            project=run_config.log.wandb_project,
            name=run_dir.name,
            dir=str(run_dir),
            config=_plain(to_dict(run_config)),
            id=run_id,
            resume="allow",
        )
        id_file.write_text(str(self.run.id))

    def log(self, step: int, row: dict, kind: str) -> None:
        values = {f"{kind}/{k}": v for k, v in row.items() if k not in ("step", "kind") and isinstance(v, (int, float))}
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x if isinstance(x, (str, int, float, bool)) or x is None else str(x)


def _scalar(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    return v if isinstance(v, int) else float(v)
