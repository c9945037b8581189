"""Benchmark RDM comparisons: ``rsatoolbox.rdm.compare`` vs ``brainrdl.compare``.

Run by hand from the repository root (not a test)::

    python benchmarks/bench_compare.py            # writes docs/benchmarks-compare.md
    python benchmarks/bench_compare.py --quick    # fewer RDMs/conditions, prints only

Cases: 50 model RDMs × 20 data RDMs at 92 and 1,000 conditions, every method. Columns: the
rsatoolbox time (float64 RDMs objects; for tau-a at 1,000 conditions measured on 2 × 2 pairs
and scaled to 1,000 pairs, marked "≈"), and brainrdl on tensors in float64 and float32 (CPU;
CUDA when present), always on all 50 × 20 pairs. Medians of several runs
(benchmarks/_timing.py). ``--threads`` sets brainrdl's threads (torch intra-op threads, which
also size its pools of row sorts and tau-a pairs; default: torch's own, which follows
OMP_NUM_THREADS); the page states them and the BLAS threads NumPy (hence rsatoolbox) ran with.
On a machine whose cores are busy with other jobs, more threads make torch slower, not faster.

Examples
--------
>>> # python benchmarks/bench_compare.py --quick --repeat 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import format_seconds, machine_info, median_time  # noqa: E402
from brainrdl.rsa.comparison import METHODS, compare  # noqa: E402

# rsatoolbox runs one Python-level call per pair for these: time a subset, scale up
_PER_PAIR = ("tau-a",)


def _rsa_time(v1: np.ndarray, v2: np.ndarray, method: str, repeat: int) -> tuple[float, bool]:
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsa_compare

    n1, n2 = len(v1), len(v2)
    scaled = method in _PER_PAIR and v1.shape[1] > 10_000  # rsatoolbox only: minutes else
    if scaled:  # 2 × 2 pairs at 1,000 conditions already take seconds
        v1, v2 = v1[:2], v2[:2]
    r1, r2 = RDMs(v1), RDMs(v2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, cpu = _timed(lambda: rsa_compare(r1, r2, method), repeat, budget_s=30.0)
    if scaled:
        t *= (n1 * n2) / (len(v1) * len(v2))
        cpu *= (n1 * n2) / (len(v1) * len(v2))
    return t, cpu, scaled


#: the issue's target rows: measured in alternating rounds (see _paired_rounds)
_PAIRED = ("spearman", "rho-a", "tau-a")


def _paired_rounds(
    v1: np.ndarray, v2: np.ndarray, method: str, repeat: int, rounds: int
) -> tuple[float, float, float, float, float]:
    """Alternate rsatoolbox and brainrdl (CPU, float64) ``rounds`` times.

    Returns the median rsatoolbox seconds and CPU seconds, the median brainrdl seconds and CPU
    seconds, and the median of the per-round speed-ups: each ratio compares two measurements
    taken within seconds of each other, so a drift of the shared machine's speed over minutes
    (±15 % here) does not land on one side only.
    """
    a, b = torch.tensor(v1), torch.tensor(v2)
    rsa, ours = [], []
    for _ in range(rounds):
        t_rsa, cpu_rsa, _ = _rsa_time(v1, v2, method, repeat)
        rsa.append((t_rsa, cpu_rsa))
        ours.append(_timed(lambda: compare(a, b, method), repeat))
    ratio = statistics.median(r[0] / o[0] for r, o in zip(rsa, ours))
    med = [statistics.median(x[i] for x in side) for side in (rsa, ours) for i in (0, 1)]
    return med[0], med[1], med[2], med[3], ratio


def _blas_threads() -> str:
    """The BLAS thread count NumPy runs with (threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"unknown (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    counts = {f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
              if i.get("user_api") == "blas"}  # fmt: skip
    return ", ".join(sorted(counts)) or "none found"


def _timed(fn, repeat: int, **kwargs) -> tuple[float, float]:
    """(median wall seconds, mean CPU seconds of this process) per call.

    On a shared machine the wall time also measures the other jobs; the CPU time does not
    (it adds up all threads, so it shows no gain from threading: a conservative figure).
    """
    cpu: list[float] = []

    def timed() -> None:
        start = time.process_time()
        fn()
        cpu.append(time.process_time() - start)

    timing = median_time(timed, repeat, **kwargs)
    return timing.seconds, statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print, do not write")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="brainrdl threads (torch intra-op; default: torch's, e.g. OMP_NUM_THREADS)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5,
        help="alternating rsatoolbox/brainrdl rounds for spearman, rho-a, tau-a below 500 "
        "conditions (the speed-up is the median of the per-round ratios)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-compare.md"))
    args = parser.parse_args(argv)
    if args.threads:  # e.g. --threads 2 on a quiet 2-core machine (oversubscribed: slower)
        torch.set_num_threads(args.threads)

    n1, n2 = (10, 5) if args.quick else (50, 20)
    sizes = [40, 200] if args.quick else [92, 1_000]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    info = machine_info()
    header = ["conditions", "method", "rsatoolbox f64"]
    for dev in devices:
        header += [f"brainrdl {dev} f64", f"brainrdl {dev} f32", f"speed-up {dev} f64"]
    header += ["speed-up cpu f64 (CPU time)"]
    rows = []
    targets: list[tuple[int, str, float]] = []  # issue 15: spearman, rho-a and tau-a >= 10x
    sorts: list[tuple[int, float, float, float]] = []
    for n_cond in sizes:
        k = n_cond * (n_cond - 1) // 2
        v1 = rng.random((n1, k))
        v2 = rng.random((n2, k))
        for method in METHODS:
            paired = method in _PAIRED and n_cond < 500 and args.rounds > 1
            if paired:
                t_rsa, cpu_rsa, t_ours, cpu_ours, ratio = _paired_rounds(
                    v1, v2, method, args.repeat, args.rounds)
                scaled = False
            else:
                t_rsa, cpu_rsa, scaled = _rsa_time(v1, v2, method, args.repeat)
            row = [str(n_cond), method, ("≈ " if scaled else "") + format_seconds(t_rsa)]
            for dev in devices:
                times, cpu_times = {}, {}
                for dtype in (torch.float64, torch.float32):
                    if paired and dev == "cpu" and dtype == torch.float64:
                        times[dtype], cpu_times[dtype] = t_ours, cpu_ours
                        continue
                    a = torch.tensor(v1, dtype=dtype, device=dev)
                    b = torch.tensor(v2, dtype=dtype, device=dev)
                    times[dtype], cpu_times[dtype] = _timed(
                        lambda a=a, b=b, m=method: compare(a, b, m), args.repeat, device=dev
                    )
                speed_up = ratio if paired and dev == "cpu" else t_rsa / times[torch.float64]
                row += [
                    format_seconds(times[torch.float64]),
                    format_seconds(times[torch.float32]),
                    f"{speed_up:.1f}×",
                ]
                if dev == "cpu":
                    cpu_ratio = f"{cpu_rsa / cpu_times[torch.float64]:.1f}×"
                    if method in _PAIRED:
                        targets.append((n_cond, method, speed_up))
                    if method == "spearman":  # the floor: one bare sort of every vector
                        both = np.concatenate([v1, v2])
                        t_sort = _timed(lambda both=both: np.sort(both, axis=-1), args.repeat)
                        sorts.append((n_cond, t_sort[0], times[torch.float64], t_rsa))
            row.append(cpu_ratio)
            rows.append(row)
            print(" | ".join(row), flush=True)

    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    met = [f"{m} at {c} ({r:.1f}×)" for c, m, r in targets if r >= 10]
    missed = [f"{m} at {c} ({r:.1f}×)" for c, m, r in targets if r < 10]
    verdict = (
        "Target (spearman, rho-a and tau-a at least 10× rsatoolbox, wall time, CPU float64): "
        f"met for {', '.join(met) or 'none'}; missed for {', '.join(missed) or 'none'}."
    )
    threads = (
        f"Threads: brainrdl {torch.get_num_threads()} (torch intra-op threads; its row sorts "
        "and tau-a pair counts run on a pool of that many threads); rsatoolbox runs as it "
        "runs: its loops over RDMs and pairs are single-threaded Python, its NumPy calls use "
        f"the BLAS threads of this process ({_blas_threads()}). Both in one process."
    )
    text = "\n".join(
        [
            "# Benchmark: RDM comparisons",
            "",
            f"{n1} model RDMs × {n2} data RDMs (one many-vs-many call), random dissimilarities, "
            "medians of several runs. rsatoolbox: `rsatoolbox.rdm.compare` on `RDMs` (float64). "
            "brainrdl: `brainrdl.compare` on tensors (n, k), always all pairs. \"≈\": "
            "rsatoolbox timed on 2 × 2 pairs and scaled to all pairs (it loops over pairs in "
            "Python). The last column is the ratio of CPU seconds (`time.process_time`, all "
            "threads summed) per call: on a shared machine the wall times also measure the "
            "other jobs, the CPU times do not; since they add up the threads, they show no gain "
            "from threading (a conservative figure). "
            f"Spearman, rho-a and tau-a below 500 conditions: {args.rounds} alternating rounds "
            "of rsatoolbox and brainrdl (CPU float64), times are medians over the rounds and the "
            "speed-up is the median of the per-round ratios, so that the shared machine's drift "
            "in speed over minutes (±15 % between runs of this page) falls on both sides.",
            "",
            threads,
            "",
            info,
            "",
            *table,
            "",
            verdict,
            "",
            "How brainrdl gets there: ranks by a compiled bucket sort per row "
            "(brainrdl/rsa/_rank_kernel.py, numba: linear buckets between the row's minimum "
            "and maximum, about half an entry per bucket, entries insertion-sorted into their "
            "bucket as they land, a coarse pass first for long rows so that the scatter stays "
            "in cache; the row norms come with the ranks; rows it would sort slowly fall back "
            "to one SIMD `np.sort` of packed (value, position) keys); rows of both sides on one "
            "lasting pool of threads; tau-a by one "
            "sort per vector, one gather per vector of the smaller side and scipy's compiled "
            "Fenwick-tree count per pair (the O(k²) sign-product GEMM for k ≤ 300 or on CUDA); "
            "corr_cov / cosine_cov with the default sigma_k from a closed form on the vectors "
            "(a GEMM plus the row sums of each RDM, O(n_rdms·k), no (n, n) matrices). "
            "For scale, what a comparison sort alone costs: one bare single-threaded `np.sort` "
            "of all "
            f"{n1 + n2} vectors takes "
            + "; ".join(
                f"{format_seconds(t)} at {c} conditions ({t / t_b:.0%} of brainrdl's "
                f"spearman call, rsatoolbox / sort = {t_r / t:.1f}×)"
                for c, t, t_b, t_r in sorts
            )
            + ".",
            "",
            "Written by `python benchmarks/bench_compare.py`.",
            "",
        ]
    )
    if args.quick:
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
