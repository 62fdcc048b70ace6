"""Loss curves and comparison bars from run directories (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir: Path) -> list[dict]:
    f = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def loss_curves(runs: dict[str, Path], out: Path, title: str = "training and validation loss") -> Path:
    """One panel: train loss (thin) and val loss (markers) per run, against optimizer steps."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, run_dir) in enumerate(runs.items()):
        rows = read_metrics(run_dir)
        color = f"C{i}"
        train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
        val = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "val"]
        if train:
            ax.plot(*zip(*train), color=color, lw=1, alpha=0.7, label=f"{name} train")
        if val:
            ax.plot(*zip(*val), color=color, marker="o", ls="--", label=f"{name} val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def bars(values: dict[str, float], out: Path, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(values)), 3.5))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
