"""Bootstrap over stimuli: brainrdl (vectorised) vs rsatoolbox's eval_bootstrap_pattern.

20 layer RDMs x 8 subject RDMs, spearman and corr. rsatoolbox runs fewer resamples when slow; its
time per resample is then extrapolated to the same count (labelled "extrapolated").

Both sides run with the same number of torch threads (``--threads``, default 1): rsatoolbox's
loop is single-threaded NumPy, and on a shared, oversubscribed CPU torch's intra-op threads mostly
measure the scheduler (we saw the same run take 2 s on one thread and 8-30 s on two).

Run: ``python benchmarks/bench_bootstrap.py [--n-cond 92 1000] [--n-boot 1000] [--rsa-boot 20]
[--threads 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import numpy as np
import torch
from _report import write_section
from rsatoolbox.inference.evaluate import eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs

from brainrdl.stats.bootstrap import bootstrap_compare


def _data(n_cond, n_layers=20, n_subj=8, seed=0):
    rng = np.random.default_rng(seed)
    k = n_cond * (n_cond - 1) // 2
    truth = rng.random(k)
    return truth + rng.normal(0, 0.5, (n_layers, k)), truth + rng.normal(0, 0.5, (n_subj, k))


def _load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-cond", type=int, nargs="+", default=[92, 1000])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--ours-boot-large", type=int, default=100, help="our resamples at >500 cond")
    p.add_argument("--rsa-boot", type=int, default=20)
    p.add_argument("--rsa-boot-large", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--methods", nargs="+", default=["spearman", "corr"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n_cond in args.n_cond:
        layers, brain = _data(n_cond)
        models = [ModelFixed(f"l{i}", RDMs(layers[i : i + 1])) for i in range(len(layers))]
        data = RDMs(brain)
        for method in args.methods:
            n_ours = args.n_boot if n_cond <= 500 or method == "corr" else args.ours_boot_large
            t = time.perf_counter()
            bootstrap_compare(layers, brain, method=method, n_bootstrap=n_ours, seed=0)
            ours = (time.perf_counter() - t) * args.n_boot / n_ours
            n_rsa = args.rsa_boot if n_cond <= 500 else args.rsa_boot_large
            t = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # rsatoolbox's tqdm bar
                eval_bootstrap_pattern(models, data, method=method, N=n_rsa,
                                       boot_noise_ceil=False)  # fmt: skip
            rsa = (time.perf_counter() - t) * args.n_boot / n_rsa
            rows.append((n_cond, method, n_ours, ours, n_rsa, rsa))
            print(f"{n_cond} cond {method}: brainrdl {ours:.2f} s, rsatoolbox {rsa:.1f} s "
                  f"-> {rsa / ours:.0f}x", flush=True)  # fmt: skip
    lines = [
        "## Bootstrap (20 layers x 8 subject RDMs, resampling stimuli)",
        "",
        f"CPU: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()} (both sides), load average at start {_load()}; times for "
        f"{args.n_boot} resamples. A run with fewer resamples is scaled linearly to that count "
        "(set-up included, so brainrdl's extrapolations overstate its time) and marked "
        "*extrapolated*.",
        "",
        "| conditions | method | brainrdl (s) | rsatoolbox eval_bootstrap_pattern (s) | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n_cond, method, n_ours, ours, n_rsa, rsa in rows:
        o = f"{ours:.2f}" + ("" if n_ours == args.n_boot else f" (extrapolated from {n_ours})")
        r = f"{rsa:.1f}" + ("" if n_rsa == args.n_boot else f" (extrapolated from {n_rsa})")
        lines.append(f"| {n_cond} | {method} | {o} | {r} | {rsa / ours:.0f}x |")
    lines += [
        "",
        "How: a resample is pair weights c_p c_q (self-pairs dropped). corr: all weighted moments "
        "for all resamples are GEMMs of the draw counts against the stacked layer x brain "
        "products, one per triangle row (float64, no (resamples x pairs) weight matrix). "
        "spearman: one argsort per vector at set-up; per resample the weights are gathered into "
        "sorted order, cumulated in place and gathered back (float32, exact for integer "
        "weights), then one float64 batched product; resamples are chunked to stay in cache.",
    ]
    write_section("bench_bootstrap", "\n".join(lines))


if __name__ == "__main__":
    main()
