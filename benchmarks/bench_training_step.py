"""Training-step time and peak memory with RDL on three layers vs without, ResNet-18-like net.

Run by hand::

    python benchmarks/bench_training_step.py [--device cuda] [--size 64] [--repeats 10]
        [--rounds 1] [--threads auto|N]

Time: one process alternates steps with and without RDL on the same model in ABBA order (the
layer hooks stay registered; without RDL their capture flag is off), so drifting machine load hits
both settings alike; reported are the medians of each setting's step times, the median of the
per-pair ratios, and the medians of the process CPU time per step (steadier than wall time on a
shared machine: with a fixed thread count it hardly depends on other jobs).

Memory: each setting runs two steps in its own fresh process, so the peak resident set size
(``resource.getrusage(...).ru_maxrss``; on CUDA ``torch.cuda.max_memory_allocated``) is the peak
of that setting alone.

``--fit`` instead times ``brainrdl.fit`` against the hand-written RDL step above, on the same
model, batch and target RDMs (ABBA over whole runs of ``--fit-steps`` steps; fit's per-call setup
is included, amortised over those steps): fit's step overhead (its checks, logging and runaway
watch, one host transfer per step). That row goes to the "fit vs hand-written step" table.

``--threads auto`` uses 2 torch (and BLAS) threads when the 1-minute load average is below 1 and
1 thread otherwise (on a busy 2-core machine two threads wait on each other at every parallel
op). The row is printed and appended to docs/benchmarks-training.md (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from brainrdl.nets.models import ResNet18Like
from brainrdl.nets.taps import LayerTaps
from brainrdl.rsa.distances import pairwise_rdm
from brainrdl.train.losses import RDLLoss

LAYERS = ("layer2", "layer3", "layer4")
HEADER = (
    "| device | code | torch threads | load avg (start-end) | input | batch "
    "| step w/o RDL (ms) | step with RDL (ms) | ratio (median of pair ratios) "
    "| CPU time w/o / with (ms) = ratio | peak MiB w/o / with (RSS; CUDA: allocated) "
    "| overhead MiB | RDL tensors MiB (B·ΣD + 3B²) | steps timed |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _setup(args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    model = ResNet18Like(num_classes=100).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 100, (args.batch,), device=device)
    taps = LayerTaps(model, LAYERS, reduction=args.reduction)
    # teacher RDMs stand in for brain targets: fixed random features, one Gram each
    targets = {n: pairwise_rdm(torch.randn(args.batch, 64, device=device)) for n in LAYERS}
    return model, opt, x, y, taps, targets


def _step(rdl: bool, model, opt, x, y, taps, targets, loss_fn, device) -> tuple[float, float]:
    """One SGD step; RDL (paper form) on the tapped layers when ``rdl``.

    Returns (wall seconds, CPU seconds of this process). With a fixed thread count the CPU time
    hardly depends on what else the machine runs, so on a shared CPU it is the steadier figure.
    """
    taps.capture = rdl  # hooks stay registered; a disabled hook returns at once
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    if rdl:
        loss = loss + loss_fn(taps.activations, targets)
    loss.backward()
    opt.step()
    _sync(device)
    taps.clear()
    return time.perf_counter() - t0, time.process_time() - c0


def paired_times(args: argparse.Namespace, device: torch.device) -> dict:
    """Step times with and without RDL alternating on one model (ABBA order) in this process.

    Alternating steps within one process is what makes a 10 % question answerable on a shared
    machine: load drifts over seconds, and both settings see the same drift.
    """
    model, opt, x, y, taps, targets = _setup(args, device)
    loss_fn = RDLLoss()
    for i in range(args.warmup):
        _step(i % 2 == 1, model, opt, x, y, taps, targets, loss_fn, device)
    times: dict[str, list[float]] = {"base": [], "rdl": [], "base_cpu": [], "rdl_cpu": []}
    for i in range(args.repeats):
        for rdl in (False, True) if i % 2 == 0 else (True, False):
            wall, cpu = _step(rdl, model, opt, x, y, taps, targets, loss_fn, device)
            times["rdl" if rdl else "base"].append(wall)
            times["rdl_cpu" if rdl else "base_cpu"].append(cpu)
    return times


class _FixedTeacher:
    """A teacher handing out the fixed target RDMs of the hand-written step (all pairs valid)."""

    def __init__(self, targets: dict[str, torch.Tensor]) -> None:
        from brainrdl.train.teachers import Target

        b = next(iter(targets.values())).shape[0]
        mask = ~torch.eye(b, dtype=torch.bool, device=next(iter(targets.values())).device)
        self.names = list(targets)
        self._targets = {n: Target(t, mask) for n, t in targets.items()}

    def targets(self, inputs: torch.Tensor, stimulus_ids=None) -> dict:
        return self._targets


def fit_times(args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds per step of ``brainrdl.fit`` and of the hand-written RDL step, alternating ABBA."""
    from brainrdl.train.loop import fit

    model, opt, x, y, taps, targets = _setup(args, device)
    loss_fn = RDLLoss()
    teacher = _FixedTeacher(targets)
    loader = [(x, y)] * args.fit_steps
    for _ in range(args.warmup):
        _step(True, model, opt, x, y, taps, targets, loss_fn, device)
    times: dict[str, list[float]] = {"hand": [], "fit": [], "hand_cpu": [], "fit_cpu": []}
    for i in range(args.repeats):
        for which in ("hand", "fit") if i % 2 == 0 else ("fit", "hand"):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            if which == "hand":
                for _ in range(args.fit_steps):
                    _step(True, model, opt, x, y, taps, targets, loss_fn, device)
            else:
                taps.capture = False  # fit taps the layers itself
                fit(model, loader, teacher=teacher, alignment={n: n for n in LAYERS},
                    loss=loss_fn, optimizer=opt, device=device, progress=False)
            _sync(device)
            times[which].append((time.perf_counter() - t0) / args.fit_steps)
            times[f"{which}_cpu"].append((time.process_time() - c0) / args.fit_steps)
    return times


FIT_HEADER = (
    "| device | code | torch threads | load avg (start-end) | input | batch | steps per run "
    "| hand-written step (ms) | fit step (ms) | ratio (median of pair ratios) "
    "| CPU time hand / fit (ms) = ratio | runs timed |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def peak_memory(rdl: bool, args: argparse.Namespace, device: torch.device) -> dict:
    """Peak memory of two steps of one setting (run in a fresh process)."""
    model, opt, x, y, taps, targets = _setup(args, device)
    loss_fn = RDLLoss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        _step(rdl, model, opt, x, y, taps, targets, loss_fn, device)
    widths = {}
    if rdl:
        taps.capture = True
        model.eval()  # probe the tapped widths (after the measured steps)
        with torch.no_grad():
            model(x[:1])
        widths = {n: a[0].numel() for n, a in taps.activations.items()}
    return {
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "cuda_mib": (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                     else None),
        "widths": widths,
    }


def _threads(choice: str) -> int:
    if choice != "auto":
        return int(choice)
    return 2 if os.getloadavg()[0] < 1.0 else 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=64, help="input side (224 is the ImageNet size)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="memory processes per setting")
    p.add_argument("--threads", default="auto", help="torch threads: a number or 'auto'")
    p.add_argument("--reduction", default="flatten")
    p.add_argument("--label", default="this version", help="the table's 'code' column")
    p.add_argument("--fit", action="store_true", help="time brainrdl.fit vs the hand-written step")
    p.add_argument("--fit-steps", type=int, default=3, help="steps per fit call (--fit)")
    p.add_argument("--worker", choices=("time", "rdl", "base", "fit"), help=argparse.SUPPRESS)
    p.add_argument(
        "--out", default=str(Path(__file__).parents[1] / "docs" / "benchmarks-training.md")
    )
    args = p.parse_args()
    device = torch.device(args.device)

    if args.worker:  # one job in this process; results as JSON on the last stdout line
        torch.set_num_threads(int(args.threads))
        if args.worker == "time":
            result = paired_times(args, device)
        elif args.worker == "fit":
            result = fit_times(args, device)
        else:
            result = peak_memory(args.worker == "rdl", args, device)
        print(json.dumps(result))
        return

    threads = _threads(args.threads)
    load_start = os.getloadavg()[0]

    def worker(job: str) -> dict:
        cmd = [sys.executable, __file__, "--worker", job, "--threads", str(threads)]
        for key in ("device", "size", "batch", "repeats", "warmup", "reduction", "fit_steps"):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        # BLAS pools too (NumPy's OpenBLAS serves the no-grad Gram): same thread count as torch
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "OPENBLAS_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        return json.loads(done.stdout.strip().splitlines()[-1])

    if args.fit:
        _fit_row(args, worker("fit"), threads, load_start, device)
        return
    times = worker("time")
    for key in ("base", "rdl", "base_cpu", "rdl_cpu"):
        print(f"{key}: " + ", ".join(f"{t * 1e3:.0f}" for t in times[key]) + " ms", flush=True)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    order = [(False, True) if r % 2 == 0 else (True, False) for r in range(args.rounds)]
    for rdl in (setting for pair in order for setting in pair):
        runs[rdl].append(worker("rdl" if rdl else "base"))
        print(f"{'with' if rdl else 'w/o '} RDL: peak RSS {runs[rdl][-1]['rss_mib']:.0f} MiB",
              flush=True)
    load_end = os.getloadavg()[0]

    def peak(rdl: bool) -> float:
        key = "cuda_mib" if device.type == "cuda" else "rss_mib"
        return statistics.median(r[key] for r in runs[rdl])

    base, with_rdl, ratios, cpu = _medians(times, "base", "rdl", device)
    widths = runs[True][0]["widths"]
    itemsize = torch.finfo(torch.get_default_dtype()).bits // 8
    analytic = (args.batch * sum(widths.values()) + 3 * args.batch**2) * itemsize / 2**20
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    line = (
        f"| {name} | {args.label} | {threads} | {load_start:.1f}-{load_end:.1f} "
        f"| {args.size}x{args.size} | {args.batch} | {base * 1e3:.0f} | {with_rdl * 1e3:.0f} "
        f"| {with_rdl / base:.3f} ({statistics.median(ratios):.3f}) | {cpu} "
        f"| {peak(False):.0f} / {peak(True):.0f} "
        f"| {peak(True) - peak(False):+.0f} | {analytic:.1f} "
        f"| {len(times['base'])} + {len(times['rdl'])} |"
    )
    print(line)
    out = Path(args.out)
    if not out.exists():
        out.write_text(
            "# Training-step benchmark: RDL on three layers vs none\n\n"
            "Written by `benchmarks/bench_training_step.py`.\n\n" + HEADER
        )
    with out.open("a") as f:
        f.write(line + "\n")



def _medians(times: dict, a: str, b: str, device: torch.device) -> tuple:
    """Median wall times of settings ``a`` and ``b``, their pair ratios, the CPU-time cell."""
    ratios = [y / x for x, y in zip(times[a], times[b])]
    cpu = "n/a (GPU)"
    if device.type == "cpu":
        a_cpu, b_cpu = statistics.median(times[f"{a}_cpu"]), statistics.median(times[f"{b}_cpu"])
        cpu = f"{a_cpu * 1e3:.0f} / {b_cpu * 1e3:.0f} = {b_cpu / a_cpu:.3f}"
    return statistics.median(times[a]), statistics.median(times[b]), ratios, cpu


def _fit_row(args: argparse.Namespace, times: dict, threads: int, load_start: float,
             device: torch.device) -> None:  # fmt: skip
    """Print and append the fit-vs-hand-written row."""
    for key in ("hand", "fit", "hand_cpu", "fit_cpu"):
        print(f"{key}: " + ", ".join(f"{t * 1e3:.0f}" for t in times[key]) + " ms", flush=True)
    hand, fitted, ratios, cpu = _medians(times, "hand", "fit", device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    line = (
        f"| {name} | {args.label} | {threads} | {load_start:.1f}-{os.getloadavg()[0]:.1f} "
        f"| {args.size}x{args.size} | {args.batch} | {args.fit_steps} | {hand * 1e3:.0f} "
        f"| {fitted * 1e3:.0f} | {fitted / hand:.3f} ({statistics.median(ratios):.3f}) | {cpu} "
        f"| {len(times['hand'])} + {len(times['fit'])} |"
    )
    print(line)
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    if "## fit vs the hand-written step" not in text:
        text += (
            "\n## fit vs the hand-written step\n\n"
            "`python benchmarks/bench_training_step.py --fit`: the same model, batch and RDL "
            "terms, once through `brainrdl.fit` (a teacher handing out the fixed target RDMs) and "
            "once by hand; ABBA over whole runs, fit's per-call setup included. Target: fit / "
            "hand-written ≤ 1.10.\n\n" + FIT_HEADER
        )
    out.write_text(text + line + "\n")


if __name__ == "__main__":
    main()
