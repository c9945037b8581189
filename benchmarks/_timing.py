"""Median wall-clock timing shared by the benchmark scripts (run by hand, not by the tests).

Examples
--------
>>> from benchmarks._timing import median_time
>>> t = median_time(lambda: sum(range(1000)), repeat=3)
>>> t.seconds > 0 and t.runs >= 3
True
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """Median seconds over ``runs`` timed calls (after warm-up)."""

    seconds: float
    runs: int

    def __str__(self) -> str:
        return format_seconds(self.seconds)


def _sync(device: str | torch.device | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(
    fn: Callable[[], object],
    repeat: int = 5,
    *,
    warmup: int = 1,
    budget_s: float = 20.0,
    min_time_s: float = 0.3,
    max_runs: int = 50,
    device: str | torch.device | None = None,
) -> Timing:
    """Median wall time of ``fn()`` over at least ``repeat`` runs after ``warmup`` untimed runs.

    Fast calls are repeated until they have run for ``min_time_s`` (at most ``max_runs`` runs),
    so that the median of short calls is stable on a shared machine. Stops early once the timed
    runs have used ``budget_s`` seconds (slow baselines get fewer runs; the count is reported).
    A warm-up that alone exceeds ``budget_s`` counts as the single timed run. CUDA work is
    synchronised before and after each run when ``device`` is CUDA.
    """
    times: list[float] = []
    for _ in range(warmup):
        gc.collect()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed > budget_s:
            return Timing(elapsed, 1)
    while len(times) < max_runs:
        gc.collect()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        total = sum(times)
        if total > budget_s or (len(times) >= repeat and total >= min_time_s):
            break
    return Timing(statistics.median(times), len(times))


def format_seconds(seconds: float) -> str:
    """Human-readable duration: µs, ms or s with three significant digits.

    Examples
    --------
    >>> format_seconds(0.00123)
    '1.23 ms'
    """
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def machine_info() -> str:
    """One markdown paragraph describing the machine and library versions."""
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; "
        f"CUDA: {cuda}. Python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}, {platform.system()} {platform.release()}. "
        f"Load average at the start (1, 5, 15 min): {load} (other jobs share the CPU)."
    )
