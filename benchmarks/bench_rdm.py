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
  for crossnobis, :func:`brainrdl.rsa.crossnobis.crossnobis_fold_major` on the (runs, conditions,
  channels) per-run patterns (what the Dataset path uses for one observation per condition and
  run).
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
                # rsatoolbox's correlation is an unoptimised einsum: minutes at 10,000
                # conditions, so the largest shapes are timed once, without a warm-up
                huge = n * n * d > 2e10
                t_rsa = median_time(lambda: rsatoolbox.rdm.calc_rdm(ds, method),  # noqa: B023
                                    1 if huge else repeat, warmup=0 if huge else 1,
                                    budget_s=1 if huge else 60)
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
    from brainrdl.rsa.crossnobis import crossnobis_fold_major

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
            # tensor engine: per-run patterns (n_runs, n_cond, D), each run one observation
            per_fold = ds.measurements.reshape(n_runs, n_cond, d)
            for device in _devices():
                for dtype in (torch.float32, torch.float64):
                    means = torch.as_tensor(per_fold, dtype=dtype, device=device)
                    prec = torch.as_tensor(np.diag(noise).copy(), dtype=dtype, device=device)
                    # the bare product: the stacked (conditions, runs·channels) patterns
                    flat = means.transpose(0, 1).reshape(n_cond, n_runs * d)
                    t_eng = median_time(
                        lambda: crossnobis_fold_major(means, prec),  # noqa: B023
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


NOTES = """\
How crossnobis is computed. rsatoolbox's estimator (one noise precision P) compares, for each of
the F runs, the run's condition means with the mean of the other runs through
`train_f @ P @ test_f.T`; with a dense (D, D) P (it uses the identity matrix when no noise is
given) that is F · (2·n·D² + 2·n²·D) flops: 96 GFLOP at 1,000 conditions × 8 runs × 2,000
channels. brainrdl uses the exact identity (balanced runs: each condition equally often in every
run), with S = Σ_f m_f, m̄ = S / F and r_f = m_f − m̄:

    Σ_f train_f P test_fᵀ = (S P Sᵀ − Σ_f m_f P m_fᵀ) / (F − 1)
                         = F·m̄ P m̄ᵀ − Σ_f r_f P r_fᵀ / (F − 1).

One (F × F) rotation of the run axis (Helmert contrasts plus the mean; a single memory-bound
GEMM) turns both terms into symmetric Grams of √p-weighted patterns: syrk of an (n, (F−1)·D)
and an (n, D) matrix, n²·F·D multiply-adds in all (16 GFLOP here), i.e. HALF the flops of the
bare product `X @ X.T` of the stacked (n, F·D) patterns in the table (32 GFLOP, a general GEMM
in torch). The rest is memory passes (rows gathered by run, the rotation, centring). Unequal
repetitions across runs, non-diagonal precisions and per-run precision lists keep the general
per-fold products (equal to rsatoolbox; see the tests). The flop ratio against rsatoolbox is
96 / 16 = 6×; a measured speed-up beyond that comes from rsatoolbox's Python-level overhead
(dataset copies, subsets, averaging per fold), not from arithmetic.
"""


def _parse_seconds(text: str) -> Timing | None:
    """Inverse of the table cells: '1.23 s (3)' → Timing(1.23, 3); '–' → None."""
    text = text.strip()
    if text == "–":
        return None
    value, unit, runs = text.replace("(", "").replace(")", "").split()
    factor = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}[unit]
    return Timing(float(value) * factor, int(runs))


def rows_from_markdown(path: Path) -> tuple[str, list[dict]]:
    """The machine paragraph and the rows of a table written by :func:`write_markdown`."""
    info, rows = "", []
    for line in path.read_text().splitlines():
        if line.startswith("CPU:"):
            info = line
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[1] in ("cpu", "cuda"):
            rows.append({"case": cells[0], "device": cells[1], "dtype": cells[2],
                         **{k: _parse_seconds(c) for k, c in
                            zip(("rsatoolbox", "dataset", "tensor", "gemm"), cells[3:7])}})
    return info, rows


def targets(rows: list[dict]) -> list[str]:
    """Issue 2's targets, judged on the CPU float64 rows (tensor and Dataset paths)."""
    out = []
    for r in rows:
        if r["device"] != "cpu" or r["dtype"] != "float64":
            continue
        case, rsa, ds, eng, mm = r["case"], r["rsatoolbox"], r["dataset"], r["tensor"], r["gemm"]
        if rsa is not None and ds is not None and (
                case.startswith("crossnobis 1000") or case == "correlation 1000×10000"):
            speed = rsa.seconds / ds.seconds
            out.append(f"- {case}: {speed:.1f}× faster than rsatoolbox (target ≥ 10×): "
                       f"{'met' if speed >= 10 else 'MISSED'}")
        for name, t in (("tensor", eng), ("Dataset", ds)):
            if t is not None and mm is not None:
                ratio = t.seconds / mm.seconds
                if ratio > 2:
                    out.append(f"- {case}: {name} path {ratio:.2f}× the bare GEMM (target ≤ 2×): "
                               "MISSED")
    worst = [r["tensor"].seconds / r["gemm"].seconds for r in rows
             if r["tensor"] is not None and r["gemm"] is not None]
    if worst:
        out.append(f"- tensor / GEMM over all rows: at most {max(worst):.2f}×; rows not listed "
                   "above meet ≤ 2×")
    return out


def write_markdown(rows: list[dict], path: Path, repeat: int, info: str | None = None) -> None:
    lines = [
        "# RDM engine benchmark",
        "",
        "Written by `python benchmarks/bench_rdm.py` (do not edit by hand).",
        "",
        info or machine_info(),
        "",
        f"Median wall time of at least {repeat} runs after one warm-up (fast calls repeated for",
        "0.3 s; number of timed runs in parentheses; slow rsatoolbox cases stop early after a time",
        "budget; rsatoolbox at 10,000 conditions is timed ONCE, without a warm-up: its",
        "correlation is an unoptimised `np.einsum` taking minutes). rsatoolbox and the",
        "Dataset path are float64 NumPy/CPU only and appear on the CPU float64 rows. For",
        "crossnobis the bare GEMM is `X @ X.T` with X the stacked per-run patterns",
        "(conditions × runs·channels); the tensor column is",
        "`brainrdl.rsa.crossnobis.crossnobis_fold_major` on the (runs, conditions, channels)",
        "patterns.",
        "The CPU is shared with other jobs: compare columns within a row, not across runs.",
        "",
        HEADER,
        "|" + "---|" * HEADER.count(" | ") + "---|",
        *(_format_row(r) for r in rows),
        "",
        "## Targets (issue 2, CPU float64 rows)",
        "",
        *targets(rows),
        "",
        "## Notes",
        "",
        NOTES,
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
    parser.add_argument("--rewrite", action="store_true",
                        help="re-render --out from its own table (notes, targets); no timing")
    args = parser.parse_args(argv)
    if args.rewrite:
        info, rows = rows_from_markdown(args.out)
        write_markdown(rows, args.out, args.repeat, info)
        print("\n".join(targets(rows)))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:  # NumPy's BLAS (rsatoolbox; brainrdl's CPU syrk Grams) gets the same limit
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is absent: NumPy's BLAS threads are not limited")
    plain = QUICK_PLAIN if args.quick else FULL_PLAIN
    cvs = QUICK_CV if args.quick else FULL_CV
    info = machine_info()  # the load at the start, not at each rewrite
    print(info)
    print(HEADER)
    rows: list[dict] = []
    # the table is rewritten after every case, so an interrupted run still leaves its rows
    on_row = None if args.quick else lambda: write_markdown(rows, args.out, args.repeat, info)
    bench_crossnobis(cvs, args.repeat, not args.no_rsatoolbox, rows, on_row)
    bench_plain(plain, args.repeat, not args.no_rsatoolbox, rows, on_row)
    if not args.quick:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
