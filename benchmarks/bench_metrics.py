"""Benchmark the pattern metrics: ridge encoding vs scikit-learn ``RidgeCV``, CKA vs NumPy.

Run by hand from the repository root (not a test)::

    python benchmarks/bench_metrics.py            # writes docs/benchmarks-metrics.md
    python benchmarks/bench_metrics.py --quick    # small sizes, prints only

Encoding: 1,000 stimuli × 4,096 features → 10,000 voxels, 10 penalties chosen per voxel by
efficient leave-one-out, 5 outer folds. brainrdl runs the whole problem (float64 and float32,
LOO, and GCV in float64). scikit-learn (``RidgeCV(alphas, alpha_per_target=True)`` fitted per
fold, then ``predict``) would take minutes on a shared CPU, so it is timed on voxel subsets
(``--sk-voxels``, default 500 and 1,000, all 5 folds) and extrapolated to 10,000 voxels by a
straight line through the two timings (a fixed cost per fold — centring, Gram, eigendecomposition
— plus a cost per voxel); the table says so. On the largest subset the two agree to the reported
maximum difference.

CKA: ``brainrdl.cka`` against Kornblith's NumPy CKA (the literal reference of tests/test_cka.py,
Gram form) for one large pair and for many layers × one region.

Examples
--------
>>> # python benchmarks/bench_metrics.py --quick
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import format_seconds, machine_info, median_time  # noqa: E402
from brainrdl.stats.cka import cka  # noqa: E402
from brainrdl.stats.encoding import kfold_indices, ridge_encoding  # noqa: E402


def _sklearn_encoding(x: np.ndarray, y: np.ndarray, alphas, folds) -> np.ndarray:
    from sklearn.linear_model import RidgeCV

    pred = np.empty_like(y)
    for test in folds:
        train = np.setdiff1d(np.arange(len(x)), test)
        model = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[train], y[train])
        pred[test] = model.predict(x[test])
    return pred


def _numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s gram-based linear CKA (as tests/test_cka.py)."""

    def centre(g):
        means = g.mean(0)
        means -= means.mean() / 2
        return g - means[:, None] - means[None, :]

    gx, gy = centre(x @ x.T), centre(y @ y.T)
    return float(gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def cpu_time(fn, repeat: int = 1) -> float:
    """Median CPU seconds of this process over ``repeat`` calls (``time.process_time``).

    On a shared machine wall time measures the other jobs as much as this one; the CPU time
    of a single-threaded run (OMP_NUM_THREADS=1) is what the call itself costs.
    """
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print, do not write")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per cell (median)")
    parser.add_argument("--sk-voxels", type=int, nargs=2, default=(500, 1000),
                        help="voxel subsets for scikit-learn (extrapolated)")  # fmt: skip
    parser.add_argument("--voxel-block", type=int, default=4096)  # ridge_encoding's default
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-metrics.md"))
    args = parser.parse_args(argv)

    n, p, v = (200, 512, 1000) if args.quick else (1000, 4096, 10_000)
    sk_sizes = (100, 200) if args.quick else tuple(args.sk_voxels)
    alphas = np.logspace(-1, 8, 10)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, p))
    w = rng.standard_normal((p, v)) * (rng.random((p, v)) < 0.01)
    y = x @ w + rng.standard_normal((n, v)) * 3.0
    folds = kfold_indices(n, 5, seed=0)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: CPU times are comparable single-threaded; run with OMP_NUM_THREADS=1",
              file=sys.stderr)
    info = machine_info()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    # --- scikit-learn on voxel subsets, extrapolated -----------------------------------------
    _sklearn_encoding(x[:50], y[:50, :5], alphas, kfold_indices(50, 5))  # imports, warm-up
    sk_times = []
    for nv in sk_sizes:
        t = cpu_time(lambda nv=nv: _sklearn_encoding(x, y[:, :nv], alphas, folds), args.repeat)
        sk_times.append(t)
        print(f"sklearn {nv} voxels: {t:.1f} s", flush=True)
    slope = (sk_times[1] - sk_times[0]) / (sk_sizes[1] - sk_sizes[0])
    fixed = max(sk_times[0] - slope * sk_sizes[0], 0.0)
    sk_full = fixed + slope * v
    extrapolated = slope > 0
    if not extrapolated:  # timing noise: no line; the larger subset's time is a lower bound
        sk_full = max(sk_times)
    ref = _sklearn_encoding(x, y[:, : sk_sizes[1]], alphas, folds)

    rows = []
    row_times: list[float] = []
    for dev in devices:
        for dtype, cv in ((torch.float64, "loo"), (torch.float32, "loo"), (torch.float64, "gcv")):
            xt = torch.tensor(x, dtype=dtype, device=dev)
            yt = torch.tensor(y, dtype=dtype, device=dev)

            def run(xt=xt, yt=yt, cv=cv):
                return ridge_encoding(xt, yt, alphas=alphas, folds=folds, cv=cv,
                                      voxel_block=args.voxel_block)  # fmt: skip

            if dev == "cpu":
                t = cpu_time(run, args.repeat)
            else:
                t = median_time(run, args.repeat, warmup=1, device=dev).seconds
            res = run()
            diff = float(np.abs(res.predictions[:, : sk_sizes[1]].cpu().double().numpy()
                                - ref).max() / ref.std())  # fmt: skip
            row_times.append(t)
            rows.append([dev, str(dtype).replace("torch.", ""), cv, format_seconds(t),
                         f"{sk_full / t:.1f}×", f"{diff:.1e}"])  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
    peak = _rss_gb()

    # --- CKA -------------------------------------------------------------------------------
    cka_rows = []
    cases = [("1 layer × 1 region", n, p, v, 1), ("20 layers × 1 region, 92 stimuli", 92, 4096,
             500, 20)]  # fmt: skip
    if args.quick:
        cases = [("1 layer × 1 region", n, p, v, 1), ("20 layers × 1 region", 92, 512, 100, 20)]
    for label, nn, pp, vv, n_layers in cases:
        xs = rng.standard_normal((n_layers, nn, pp))
        yy = rng.standard_normal((nn, vv))
        t_np = cpu_time(lambda xs=xs, yy=yy: [_numpy_cka(a, yy) for a in xs], 3)
        ref_cka = np.array([_numpy_cka(a, yy) for a in xs])
        row = [label, f"{nn} × {pp} vs {nn} × {vv}", format_seconds(t_np)]
        for dev in devices:
            xt = torch.tensor(xs, device=dev)
            yt = torch.tensor(yy, device=dev)
            if dev == "cpu":
                t_br = cpu_time(lambda xt=xt, yt=yt: cka(xt, yt), 3)
            else:
                t_br = median_time(lambda xt=xt, yt=yt: cka(xt, yt), 3, device=dev).seconds
            err = float(np.abs(cka(xt, yt).cpu().numpy() - ref_cka).max())
            row += [format_seconds(t_br), f"{t_np / t_br:.1f}×", f"{err:.0e}"]
        cka_rows.append(row)
        print(" | ".join(row), flush=True)

    head = ["device", "dtype", "penalty CV", "brainrdl", "speed-up vs sklearn (≈)",
            "max |Δ| / sd(y) vs sklearn"]  # fmt: skip
    enc_table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    enc_table += ["| " + " | ".join(r) + " |" for r in rows]
    chead = ["case", "shapes", "NumPy (Kornblith)"]
    for dev in devices:
        chead += [f"brainrdl {dev}", f"speed-up {dev}", f"max |Δ| {dev}"]
    cka_table = ["| " + " | ".join(chead) + " |", "|" + "---|" * len(chead)]
    cka_table += ["| " + " | ".join(r) + " |" for r in cka_rows]
    f64 = [sk_full / t for r, t in zip(rows, row_times) if r[:3] == ["cpu", "float64", "loo"]]
    target_text = (
        f"Float64 exact LOO on CPU: {f64[0]:.1f}× the scikit-learn estimate, "
        + ("meeting" if f64[0] >= 10 else "missing") + " the 10× target."
    ) if f64 else ""
    sk_text = ", ".join(f"{nv} voxels: {format_seconds(t)}" for nv, t in zip(sk_sizes, sk_times))
    text = "\n".join([
        "# Benchmark: pattern metrics (encoding, CKA)",
        "",
        info,
        "",
        "CPU times: seconds of CPU used by the benchmark process (`time.process_time`), "
        f"single-threaded (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), for "
        "scikit-learn and brainrdl alike: on this shared machine wall times measure the other "
        "jobs as much as the code. GPU times (when present) are wall times.",
        "",
        "## Cross-validated ridge encoding",
        "",
        f"{n} stimuli × {p} features → {v:,} voxels, {len(alphas)} penalties chosen per voxel "
        "and fold, 5 outer folds (seeded), predictions of every held-out stimulus. brainrdl: "
        f"`ridge_encoding(..., cv=...)`, voxel blocks of {args.voxel_block}. scikit-learn: "
        "`RidgeCV(alphas, alpha_per_target=True)` fitted per fold (float64, efficient LOO), "
        f"timed on voxel subsets ({sk_text}) and "
        + (f"extrapolated linearly to {v:,} voxels: ≈ {format_seconds(sk_full)} (fixed cost "
           f"{format_seconds(fixed)} + {format_seconds(slope)} per voxel)"
           if extrapolated else
           "NOT extrapolated (the larger subset was not slower: timing noise); the larger "
           f"subset's time {format_seconds(sk_full)} stands in, a lower bound")
        + ". Speed-ups are against that estimate. The last "
        f"column compares the predictions of the first {sk_sizes[1]} voxels with scikit-learn's "
        "(GCV picks penalties by a different criterion, so it differs by design; float32 picks "
        "another penalty wherever two penalties' LOO errors agree to float32 precision, e.g. "
        "on nearly flat error curves, and the prediction of such a voxel then differs). "
        "Exact LOO in float64 is the configuration that equals scikit-learn. Peak resident "
        f"memory of the process (data included): {peak:.2f} GB.",
        "",
        *enc_table,
        "",
        "## Linear CKA",
        "",
        "NumPy: Kornblith et al.'s Gram-based CKA, one call per layer (the reference of the "
        "tests). brainrdl: `brainrdl.cka` on a (layers, stimuli, features) batch in one call, "
        "float64.",
        "",
        *cka_table,
        "",
        "How: one Gram of all stimuli, sliced and re-centred per fold, and one "
        "eigendecomposition of the n × n training Gram per fold serve every penalty and voxel. "
        "The residual sum of squares of every penalty and voxel follows from the "
        "singular-basis coefficients (one small product); the LOO error lies between it "
        "divided by the largest and by the smallest (1 − H_ii)², which rules out some "
        "penalties at once. The others are screened in float32 (a triangular product with "
        "the Cholesky factor of Uᵀ D⁻² U, half the cost of float64) inside rigorous error "
        "intervals that hold the float64 value, each voxel's likeliest penalty first; "
        "penalties close to an already screened one (far below or above the feature "
        "spectrum, where LOO errors barely change) get intervals from it without any "
        "product. Only voxels whose best penalties the intervals cannot separate get exact "
        "float64 LOO errors, for those penalties only, so the choice equals the exhaustive "
        "float64 one (tests/test_encoding.py builds near-ties that float32 alone would get "
        "wrong). Predictions use the chosen penalties directly, without forming the p × v "
        "weights (scikit-learn builds them, then predicts). GCV needs no exact step at all. "
        "What remains for exact LOO is mostly Uᵀ Y (one n × n × v product per fold, as in "
        "scikit-learn), the eigendecompositions and the screening products. "
        + target_text + " CKA uses the n × n Grams "
        "(NumPy's symmetric rank-k product on CPU) or the p "
        "× q cross-products, whichever is smaller: it is on par with the NumPy reference on "
        "CPU (the gain is batching and running on a GPU, which was not measured here).",
        "",
        "Written by `python benchmarks/bench_metrics.py`.",
        "",
    ])
    if args.quick:
        print(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
