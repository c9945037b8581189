"""Benchmark the RDM engine: rsatoolbox vs brainrdl vs one bare matrix product of the same shape.

Run by hand from the repository root (not a test)::

    python benchmarks/bench_rdm.py            # full run, writes docs/benchmarks-rdm.md
    python benchmarks/bench_rdm.py --quick    # small shapes, a smoke run (does not write docs)

Cases: correlation and euclidean at 92×1,000, 1,000×10,000 and 10,000×512 (conditions ×
channels); crossnobis at 92 and 1,000 conditions × 8 runs × 2,000 channels with an identity and
a diagonal noise precision. Columns:

- rsatoolbox: ``rsatoolbox.rdm.calc_rdm`` on a Dataset (float64; NumPy).
- brainrdl Dataset: ``brainrdl.calc_rdm`` on the same Dataset → RDMs (always float64).
- brainrdl tensor: the tensor engine on a torch tensor (float32 and float64; CPU and CUDA);
  for crossnobis, :func:`brainrdl.crossnobis.crossnobis_from_fold_sums` on per-fold sums.
- bare GEMM: ``x @ x.T`` of the same shape. For crossnobis the shape is the stacked per-fold
  patterns (conditions × runs·channels): that product is what the estimator's Gram costs.

Examples
--------
>>> # python benchmarks/bench_rdm.py --quick --repeat 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import Timing, machine_info, median_time  # noqa: E402

FULL_PLAIN = [(92, 1_000), (1_000, 10_000), (10_000, 512)]
QUICK_PLAIN = [(92, 1_000), (300, 2_000)]
FULL_CV = [(92, 8, 2_000), (1_000, 8, 2_000)]
QUICK_CV = [(92, 8, 500)]


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _ratio(a: Timing | None, b: Timing | None) -> str:
    if a is None or b is None:
        return "–"
    return f"{a.seconds / b.seconds:.2f}×"


def _cell(t: Timing | None) -> str:
    return "–" if t is None else f"{t} ({t.runs})"


def bench_plain(shapes, repeat: int, rsa: bool, rows: list[dict], on_row=None) -> list[dict]:
    import rsatoolbox

    import brainrdl

    rng = np.random.default_rng(0)
    for n, d in shapes:
        x64 = rng.normal(size=(n, d)) + rng.normal(size=(1, d))
        ds = rsatoolbox.data.Dataset(x64)
        for method in ("correlation", "euclidean"):
            t_rsa = None
            if rsa:
                t_rsa = median_time(lambda: rsatoolbox.rdm.calc_rdm(ds, method),  # noqa: B023
                                    repeat, budget_s=60)
            t_ds = median_time(lambda: brainrdl.calc_rdm(ds, method), repeat)  # noqa: B023
            for device in _devices():
                for dtype in (torch.float32, torch.float64):
                    xt = torch.as_tensor(x64, dtype=dtype, device=device)
                    t_eng = median_time(lambda: brainrdl.calc_rdm(xt, method),  # noqa: B023
                                        repeat, device=device)
                    t_mm = median_time(lambda: xt @ xt.T, repeat, device=device)  # noqa: B023
                    is_ref = device == "cpu" and dtype == torch.float64
                    rows.append({
                        "case": f"{method} {n}×{d}", "device": device,
                        "dtype": str(dtype).replace("torch.", ""),
                        "rsatoolbox": t_rsa if is_ref else None,
                        "dataset": t_ds if is_ref else None,
                        "tensor": t_eng, "gemm": t_mm,
                    })
                    print(_format_row(rows[-1]), flush=True)
                    if on_row is not None:
                        on_row()
    return rows


def _cv_dataset(n_cond, n_runs, d, rng):
    import rsatoolbox

    conds = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    signal = rng.normal(size=(n_cond, d))
    meas = signal[conds] + rng.normal(size=(n_cond * n_runs, d))
    return rsatoolbox.data.Dataset(meas, obs_descriptors={"stimulus": conds, "run": runs})


def bench_crossnobis(shapes, repeat: int, rsa: bool, rows: list[dict], on_row=None) -> list[dict]:
    import rsatoolbox

    import brainrdl
    from brainrdl.crossnobis import crossnobis_from_fold_sums

    rng = np.random.default_rng(1)
    for n_cond, n_runs, d in shapes:
        ds = _cv_dataset(n_cond, n_runs, d, rng)
        for noise_kind in ("identity", "diagonal"):
            noise = np.eye(d) if noise_kind == "identity" else np.diag(rng.random(d) + 0.5)
            kw = {"descriptor": "stimulus", "cv_descriptor": "run", "noise": noise}
            t_rsa = None
            if rsa:
                t_rsa = median_time(
                    lambda: rsatoolbox.rdm.calc_rdm(ds, "crossnobis", **kw),  # noqa: B023
                    repeat, budget_s=90)
            t_ds = median_time(lambda: brainrdl.calc_rdm(ds, "crossnobis", **kw),  # noqa: B023
                               repeat)
            # tensor engine: per-fold sums (n_cond, n_runs, D), each run one observation
            per_fold = ds.measurements.reshape(n_runs, n_cond, d).transpose(1, 0, 2)
            for device in _devices():
                for dtype in (torch.float32, torch.float64):
                    sums = torch.as_tensor(np.ascontiguousarray(per_fold), dtype=dtype,
                                           device=device)
                    counts = torch.ones(n_cond, n_runs, dtype=dtype, device=device)
                    prec = torch.as_tensor(np.diag(noise).copy(), dtype=dtype, device=device)
                    flat = sums.reshape(n_cond, n_runs * d)
                    t_eng = median_time(
                        lambda: crossnobis_from_fold_sums(sums, counts, prec),  # noqa: B023
                        repeat, device=device)
                    t_mm = median_time(lambda: flat @ flat.T, repeat, device=device)  # noqa: B023
                    is_ref = device == "cpu" and dtype == torch.float64
                    rows.append({
                        "case": f"crossnobis {n_cond}×{n_runs}×{d} ({noise_kind})",
                        "device": device, "dtype": str(dtype).replace("torch.", ""),
                        "rsatoolbox": t_rsa if is_ref else None,
                        "dataset": t_ds if is_ref else None,
                        "tensor": t_eng, "gemm": t_mm,
                    })
                    print(_format_row(rows[-1]), flush=True)
                    if on_row is not None:
                        on_row()
    return rows


HEADER = ("| case | device | dtype | rsatoolbox | brainrdl Dataset→RDMs | brainrdl tensor | "
          "bare GEMM | speed-up vs rsatoolbox (Dataset) | tensor / GEMM | Dataset / GEMM |")


def _format_row(r: dict) -> str:
    return (f"| {r['case']} | {r['device']} | {r['dtype']} | {_cell(r['rsatoolbox'])} | "
            f"{_cell(r['dataset'])} | {_cell(r['tensor'])} | {_cell(r['gemm'])} | "
            f"{_ratio(r['rsatoolbox'], r['dataset'])} | {_ratio(r['tensor'], r['gemm'])} | "
            f"{_ratio(r['dataset'], r['gemm'])} |")


def write_markdown(rows: list[dict], path: Path, repeat: int) -> None:
    lines = [
        "# RDM engine benchmark",
        "",
        "Written by `python benchmarks/bench_rdm.py` (do not edit by hand).",
        "",
        machine_info(),
        "",
        f"Median wall time of at least {repeat} runs after one warm-up (fast calls repeated for",
        "0.3 s; number of timed runs in parentheses; slow rsatoolbox cases stop early after a time",
        "budget). rsatoolbox and the",
        "Dataset path are float64 NumPy/CPU only and appear on the CPU float64 rows. For",
        "crossnobis the bare GEMM is `X @ X.T` with X the stacked per-fold patterns",
        "(conditions × runs·channels), the Gram the estimator needs; the tensor column is",
        "`brainrdl.crossnobis.crossnobis_from_fold_sums` on per-fold sums.",
        "",
        HEADER,
        "|" + "---|" * HEADER.count(" | ") + "---|",
        *(_format_row(r) for r in rows),
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, no docs written")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--no-rsatoolbox", action="store_true", help="skip the rsatoolbox column")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-rdm.md")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:  # NumPy's BLAS (rsatoolbox; brainrdl's CPU syrk Grams) gets the same limit
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is absent: NumPy's BLAS threads are not limited")
    plain = QUICK_PLAIN if args.quick else FULL_PLAIN
    cvs = QUICK_CV if args.quick else FULL_CV
    print(machine_info())
    print(HEADER)
    rows: list[dict] = []
    # the table is rewritten after every case, so an interrupted run still leaves its rows
    on_row = None if args.quick else lambda: write_markdown(rows, args.out, args.repeat)
    bench_crossnobis(cvs, args.repeat, not args.no_rsatoolbox, rows, on_row)
    bench_plain(plain, args.repeat, not args.no_rsatoolbox, rows, on_row)
    if not args.quick:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
