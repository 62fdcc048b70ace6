"""Statistics every comparison in latentlm reports: Wilson intervals, paired differences, rank correlations.

One implementation, used by the comparison harness, the experiments and the evaluators, so that every table
computes its intervals the same way. Pure Python + numpy; no torch.

- ``wilson(k, n)``: 95 % Wilson score interval for a proportion (never leaves [0, 1], sane at k = 0 or n).
- ``paired_diff(a, b)``: mean of the per-seed differences a_i - b_i with a two-sided 95 % Student-t interval
  (n - 1 degrees of freedom). With one pair the interval is undefined (NaN); with all differences equal it is
  exactly [d, d]. ``significant`` is True only where the interval excludes 0.
- ``bootstrap_ci(x, stat)``: percentile bootstrap interval of any statistic, seeded.
- ``spearman(x, y)``: rank correlation with average ranks for ties; ``partial_spearman(x, y, z)`` removes the
  linear effect of z's ranks from both; ``spearman_ci`` is its bootstrap interval (resampling pairs or, with
  ``groups``, whole windows so that within-passage dependence is respected).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (beyond 30 the normal 1.96 is within 2 %
# and the table is interpolated towards it). Written out so that the module needs no scipy.
_T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    return 1.96 + (2.042 - 1.96) * 30 / df  # ~ 1.96 + 2.4/df, within 0.1 % of the exact value for df > 30


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for ``correct`` successes out of ``n``; (0, 0) when n == 0."""
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_sd(x: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return (math.nan, math.nan)
    return (float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan)


def paired_diff(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired difference a - b over matched units (seeds): mean, SD, 95 % t interval, significance.

    ``a[i]`` and ``b[i]`` must come from the same seed and data order. Returns
    ``{"n", "mean_diff", "sd", "ci95": [lo, hi], "significant", "method"}``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_diff needs equal lengths, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        raise ValueError("paired_diff needs at least one pair")
    mean = float(d.mean())
    if n == 1:
        return {"n": 1, "mean_diff": mean, "sd": math.nan, "ci95": [math.nan, math.nan], "significant": False,
                "method": "paired t (n=1: no interval)"}  # fmt: skip
    sd = float(d.std(ddof=1))
    half = t975(n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    return {
        "n": n,
        "mean_diff": mean,
        "sd": sd,
        "ci95": [lo, hi],
        "significant": bool(lo > 0 or hi < 0),
        "method": f"paired t, {n - 1} df",
    }


def bootstrap_ci(
    x: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the rows of ``x`` (rows resampled with replacement)."""
    a = np.asarray(x)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    vals = np.array([stat(a[i]) for i in idx])
    alpha = (1 - level) / 2
    return (float(np.nanquantile(vals, alpha)), float(np.nanquantile(vals, 1 - alpha)))


def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata(method='average'))."""
    a = np.asarray(x, dtype=np.float64)
    n = len(a)
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = sa[1:] != sa[:-1]  # NaN != NaN: every NaN is its own group, as before
    group = np.cumsum(new_group) - 1  # 0-based tie group of each sorted entry
    bounds = np.append(np.flatnonzero(new_group), n)  # first sorted index of each group, then n
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = (bounds[group] + bounds[group + 1] - 1) / 2 + 1  # average of 1-based ranks i+1 .. j+1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else math.nan


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN when either side is constant."""
    return _pearson(rankdata(x), rankdata(y))


def partial_spearman(x, y, z) -> float:
    """Spearman correlation of x and y with the (rank-)linear effect of z removed from both."""
    rx, ry, rz = rankdata(x), rankdata(y), rankdata(z)

    def resid(r):
        zc = rz - rz.mean()
        denom = float((zc * zc).sum())
        beta = float(((r - r.mean()) * zc).sum()) / denom if denom > 0 else 0.0
        return r - r.mean() - beta * zc

    return _pearson(resid(rx), resid(ry))


def spearman_ci(x, y, z=None, groups=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman (or partial Spearman on z) with a 95 % bootstrap interval.

    ``groups`` (one label per point, e.g. the window a token came from) makes it a cluster bootstrap: whole groups
    are resampled, which is the honest interval when points within a passage are dependent.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    zz = None if z is None else np.asarray(z, dtype=np.float64)

    def stat(ix):
        return spearman(x[ix], y[ix]) if zz is None else partial_spearman(x[ix], y[ix], zz[ix])

    rng = np.random.default_rng(seed)
    n = len(x)
    if groups is None:
        draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    else:
        g = np.asarray(groups)
        labels = np.unique(g)
        members = [np.flatnonzero(g == lab) for lab in labels]
        draws = [np.concatenate([members[k] for k in rng.integers(0, len(labels), len(labels))]) for _ in range(n_boot)]
    vals = np.array([stat(ix) for ix in draws])
    return {
        "rho": stat(np.arange(n)),
        "ci95": [float(np.nanquantile(vals, 0.025)), float(np.nanquantile(vals, 0.975))],
        "n": n,
        "method": "cluster bootstrap over groups" if groups is not None else "bootstrap over points",
    }
