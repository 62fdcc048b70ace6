"""Training logs: metrics.jsonl (always), TensorBoard (optional), a tqdm bar on rank 0."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm


class MetricsLogger:
    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, progress: bool, total: int, initial: int):
        self.enabled = enabled
        self.file = open(run_dir / "metrics.jsonl", "a") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:  # tensorboard is a core dependency; stay usable without it
                self.tb = None
        self.bar = tqdm(
            total=total, initial=initial, disable=not (enabled and progress), dynamic_ncols=True, leave=False
        )

    def log(self, step: int, metrics: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: _scalar(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{kind}/{k}", v, step)
        if kind == "train":
            self.bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", lr=f"{row.get('lr', 0):.1e}")
        else:
            self.bar.write(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _scalar(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    return v if isinstance(v, int) else float(v)
