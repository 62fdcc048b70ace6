"""Loss curves and comparison charts from run directories (matplotlib, Agg backend).

Charts that compare arms are made to show the differences: the value axis is fitted to the data (and says so
when it does not start at 0), values are printed to 3 decimals, error bars and per-seed points are drawn, and a
bar whose likelihood leaks or is a prior-Z estimate is hatched and labelled on the bar itself.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from latentlm.train.logging import read_metrics  # noqa: E402

FLAG_TEXT = {"leak": "LEAKS", "prior_z": "prior Z"}


def _save(fig, out: Path, bottom: float = 0.0) -> Path:
    """Lay out (leaving the lower `bottom` fraction of the figure to notes printed there), write, close."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _finite(xs) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def fitted_limits(values: list[float], pad: float = 0.18) -> tuple[float, float]:
    """An axis range around the data, so that differences are visible (never a flat 0-based range)."""
    vals = _finite(values)
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span <= 0:
        span = max(abs(hi) * 0.02, 1e-3)
    return (lo - pad * span, hi + 2 * pad * span)


def _flag_label(flags: dict | None) -> str:
    return " / ".join(FLAG_TEXT[k] for k in FLAG_TEXT if flags and flags.get(k))


def loss_band(arms: dict[str, list[Path]], out: Path, title: str = "loss over seeds") -> Path:
    """Per arm: mean train loss over seeds (line) with the min-max band over seeds, and mean val loss (markers),
    at the steps every seed logged."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, (name, run_dirs) in enumerate(arms.items()):
        color = f"C{i}"
        for kind, style in (("train", {}), ("val", {"marker": "o", "ls": "--"})):
            series = []
            for d in run_dirs:
                rows = [r for r in read_metrics(d) if r.get("kind") == kind and r.get("loss") is not None]
                series.append({r["step"]: r["loss"] for r in rows})
            steps = sorted(set.intersection(*[set(s) for s in series])) if series else []
            if not steps:
                continue
            y = np.array([[s[t] for t in steps] for s in series])  # (seeds, steps)
            n = len(series)
            label = f"{name} {kind} (mean of {n} seed{'s' if n > 1 else ''})"
            ax.plot(steps, y.mean(0), color=color, lw=1.2 if kind == "train" else 1, label=label, **style)
            if n > 1:
                ax.fill_between(steps, y.min(0), y.max(0), color=color, alpha=0.18 if kind == "train" else 0.1, lw=0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    one = all(len(v) <= 1 for v in arms.values())
    ax.set_title(f"{title}\n" + ("one seed: no band" if one else "band: min-max over seeds"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out)


def bars(
    values: dict[str, float],
    out: Path,
    ylabel: str,
    title: str,
    *,
    errors: dict[str, float] | None = None,
    points: dict[str, list[float]] | None = None,
    flags: dict[str, dict] | None = None,
    notes: dict[str, str] | None = None,
    zero_based: bool | None = None,
) -> Path:
    """Bars with optional error bars (errors: half-widths), per-seed points, and leak / prior-Z flags.

    The axis is fitted to the data unless zero_based (default: fitted for positive values whose spread is small
    against their size, e.g. bits per byte); the axis label says where it starts."""
    names = list(values)
    means = [values[n] for n in names]
    errs = [(errors or {}).get(n) or 0.0 for n in names]
    errs = [e if math.isfinite(e) else 0.0 for e in errs]
    pts = points or {}
    extent = [m - e for m, e in zip(means, errs)] + [m + e for m, e in zip(means, errs)]
    extent += [v for n in names for v in pts.get(n, [])]
    lo, hi = fitted_limits(extent, pad=0.18)
    hi += 0.35 * (hi - lo) if flags and any(_flag_label(f) for f in flags.values()) else 0.0  # room for the flags
    if zero_based is None:
        zero_based = min(_finite(means) or [0]) <= 0 or lo <= 0
    if zero_based:
        lo, hi = min(0.0, lo), max(hi, 0.0)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.9 * len(names)), 4.0 if not notes else 4.0 + 0.22 * len(notes)))
    x = np.arange(len(names))
    bottom = 0.0 if zero_based else lo
    heights = [m - bottom for m in means]
    colors = [f"C{i}" for i in range(len(names))]
    bar_objs = ax.bar(x, heights, bottom=bottom, color=colors, alpha=0.85, yerr=errs, capsize=5, ecolor="black")
    for i, n in enumerate(names):
        if pts.get(n):
            ax.scatter([i] * len(pts[n]), pts[n], color="black", s=12, zorder=3)
        label = f"{means[i]:.3f}" + (f" ± {errs[i]:.3f}" if errs[i] else "")
        top = max([means[i] + errs[i]] + list(pts.get(n, [])))
        ax.annotate(label, (i, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
        flag = _flag_label((flags or {}).get(n))
        if flag:  # hatched, red-edged bar and the flag above its value, where it cannot be missed
            bar_objs[i].set_hatch("//")
            bar_objs[i].set_edgecolor("red")
            ax.annotate(flag, (i, top), xytext=(0, 15), textcoords="offset points", ha="center", va="bottom",
                        color="red", fontsize=8, fontweight="bold")  # fmt: skip
    long = sum(len(n) for n in names) > 9 * len(names)
    ax.set_xticks(x, names, rotation=15 if long or len(names) > 3 else 0, ha="right" if long else "center")
    ax.set_ylim(lo, hi)
    ax.set_ylabel(ylabel if zero_based else f"{ylabel}\n(axis starts at {lo:.3f}, not 0)")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if notes:
        text = "\n".join(f"{n}: {notes[n]}" for n in names if notes.get(n))
        fig.text(0.01, 0.01, text, fontsize=6.5, va="bottom", ha="left", wrap=True)
        return _save(fig, out, bottom=0.05 * len(notes) + 0.02)
    return _save(fig, out)


def scatter_errors(rows: list[dict], out: Path, xlabel: str, ylabel: str, title: str, log_x: bool = True) -> Path:
    """rows: {name, x, xerr, y, yerr, flags, note}: points with error bars in both directions (e.g. bpb vs FLOPs);
    each row's note (what its likelihood is) is printed under the chart."""
    notes = [f"{r['name']}: likelihood: {r['note']}" for r in rows if r.get("note")]
    fig, ax = plt.subplots(figsize=(6.5, 4.3 + 0.2 * len(notes)))
    for i, r in enumerate(rows):
        flag = _flag_label(r.get("flags"))
        ax.errorbar(
            r["x"], r["y"], xerr=r.get("xerr") or None, yerr=r.get("yerr") or None, fmt="o", color=f"C{i}",
            capsize=4, mfc="white" if flag else f"C{i}", label=r["name"] + (f" ({flag})" if flag else ""),
        )  # fmt: skip
        ax.annotate(
            f"{r['name']} {r['y']:.3f}", (r["x"], r["y"]), fontsize=8, xytext=(5, 5), textcoords="offset points"
        )
    if log_x and all(r["x"] > 0 for r in rows):
        ax.set_xscale("log")
    ax.set_ylim(
        *fitted_limits([r["y"] - (r.get("yerr") or 0) for r in rows] + [r["y"] + (r.get("yerr") or 0) for r in rows])
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=6.5, va="bottom", ha="left")
        return _save(fig, out, bottom=0.045 * len(notes) + 0.02)
    return _save(fig, out)


def forest(rows: list[dict], out: Path, xlabel: str, title: str) -> Path:
    """rows: {label, mean, lo, hi, significant}: paired differences with their 95 % intervals and a line at 0."""
    fig, ax = plt.subplots(figsize=(7, 1.9 + 0.5 * max(1, len(rows))))
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        have_ci = r["lo"] is not None and r["hi"] is not None and math.isfinite(r["lo"]) and math.isfinite(r["hi"])
        color = "C3" if r.get("significant") else "C0"
        if have_ci:
            ax.plot([r["lo"], r["hi"]], [y, y], color=color, lw=2)
        ax.plot(r["mean"], y, "o", color=color)
        ci = f" [{r['lo']:.3f}, {r['hi']:.3f}]" if have_ci else " (one seed: no interval)"
        ax.annotate(f"{r['mean']:+.3f}{ci}", (r["mean"], y), fontsize=7, xytext=(0, 6), textcoords="offset points",
                    ha="center")  # fmt: skip
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(textwrap.fill(title, 70) + "\nred: interval excludes 0", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)
