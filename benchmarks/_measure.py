"""Measurement helpers shared by the benchmarks (not a benchmark itself: `make bench` skips files starting with _).

On a shared, noisy machine a single timing means little, so every benchmark here:
- runs the implementations it compares as interleaved, paired repetitions (A, B, B, A, A, B, ...: the order
  alternates so neither always runs right after the other), and reports the median of the per-pair ratios with
  their interquartile range (`*_iqr` = q75 - q25), so background load that hits one pair hits both sides alike;
- measures a physical limit (sgemm FLOP/s, memory bandwidth) as the max over several sizes and over repeated
  rounds spread through the run (`Limit.sample()` before, between and after the timed work), because load can
  only make a kernel slower, never faster;
- checks that no utilisation exceeds 1 (`check_utilisation`): a figure above 1 means the limit was under-measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call (CUDA work included: the device is synchronised before and after)."""
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def paired(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each fn over `reps` rounds; round r runs them in order, reversed on odd rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    times = {k: [] for k in names}
    for r in range(reps):
        for k in names if r % 2 == 0 else reversed(names):
            times[k].append(timed(fns[k]))
    return times


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(q25, median, q75) by linear interpolation (statistics.quantiles, inclusive method)."""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q25, q50, q75 = statistics.quantiles(xs, n=4, method="inclusive")
    return q25, q50, q75


def median_iqr(xs: list[float]) -> tuple[float, float]:
    q25, q50, q75 = quartiles(xs)
    return q50, q75 - q25


def speed_ratio(times: dict[str, list[float]], ours: str, peer: str) -> tuple[float, float]:
    """Median and IQR of the per-round ratios peer_time / ours_time (> 1: ours is faster)."""
    return median_iqr([p / o for o, p in zip(times[ours], times[peer])])


class Limit:
    """A machine limit measured as the best rate over several sizes and several rounds spread over the run."""

    def __init__(self, name: str, kernels: dict[str, tuple[Callable[[], object], float]], reps: int = 3):
        self.name, self.kernels, self.reps = name, kernels, reps  # kernels: label -> (fn, work per call)
        self.best: dict[str, float] = {}

    def sample(self) -> float:
        for label, (fn, work) in self.kernels.items():
            fn()  # warm-up (page faults, MKL's buffers)
            for _ in range(self.reps):
                self.best[label] = max(self.best.get(label, 0.0), work / timed(fn))
        return self.value

    @property
    def value(self) -> float:
        return max(self.best.values())

    @property
    def argmax(self) -> str:
        return max(self.best, key=self.best.get)


def sgemm_limit(
    sizes: tuple[tuple[int, int, int], ...], reps: int = 3, dtype=torch.float32, device: str | torch.device = "cpu"
) -> Limit:
    """FLOP/s of torch.mm (M, K) @ (K, N) at each size: squares and the model's own shapes."""
    kernels = {}
    for m, k, n in sizes:
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        out = torch.empty(m, n, dtype=dtype, device=device)
        kernels[f"mm{m}x{k}x{n}"] = (lambda a=a, b=b, out=out: torch.mm(a, b, out=out), 2.0 * m * k * n)
    return Limit("sgemm", kernels, reps)


def bandwidth_limit(sizes_mib: tuple[int, ...], reps: int = 3, device: str | torch.device = "cpu") -> Limit:
    """Bytes/s moved by a copy (read + write) and read by a sum, at each size; the best of all."""
    kernels = {}
    for mib in sizes_mib:
        n = mib * 2**20 // 4
        src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
        kernels[f"copy{mib}MiB"] = (lambda s=src, d=dst: d.copy_(s), 2.0 * n * 4)
        kernels[f"sum{mib}MiB"] = (lambda s=src: s.sum(), 1.0 * n * 4)
    return Limit("bandwidth", kernels, reps)


def check_utilisation(name: str, value: float, limit: Limit) -> float:
    """Fail loudly when a utilisation exceeds 1: the limit it divides by was under-measured."""
    if value > 1.0:
        raise AssertionError(
            f"{name} = {value:.3f} > 1 against the {limit.name} limit {limit.value:.3g} (best: {limit.argmax}): "
            "the limit is under-measured; add larger sizes or more rounds to it"
        )
    return value


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages, for the JSON (what the figures were measured under)."""
    import os

    return [round(x, 2) for x in os.getloadavg()]


def load_note() -> str:
    """One line stating the machine load the figures were measured under."""
    import os

    la = os.getloadavg()
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
