"""Training-step time with RDL on three layers vs without, ResNet-18-like net, batch 128.

Run by hand: ``python benchmarks/bench_training_step.py [--device cuda] [--size 64] [--repeats 5]``.
Writes (appends) a Markdown table to docs/benchmarks-training.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from brainrdl.distances import pairwise_rdm
from brainrdl.losses import RDLLoss
from brainrdl.models import ResNet18Like
from brainrdl.taps import LayerTaps

LAYERS = ("layer2", "layer3", "layer4")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(rdl: bool, args: argparse.Namespace, device: torch.device) -> tuple[list, float]:
    torch.manual_seed(0)
    model = ResNet18Like(num_classes=100).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 100, (args.batch,), device=device)
    loss_fn = RDLLoss()
    taps = LayerTaps(model, LAYERS, reduction=args.reduction) if rdl else None
    # teacher RDMs stand in for brain targets: fixed random features, one Gram each
    targets = {n: pairwise_rdm(torch.randn(args.batch, 64, device=device)) for n in LAYERS}
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.repeats):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        if taps is not None:
            loss = loss + loss_fn(taps.activations, targets)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return times, peak


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=64, help="input side (224 is the ImageNet size)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reduction", default="flatten")
    p.add_argument(
        "--out", default=str(Path(__file__).parents[1] / "docs" / "benchmarks-training.md")
    )
    args = p.parse_args()
    device = torch.device(args.device)
    rows = {}
    for rdl in (False, True, False, True):  # interleaved: drifting machine load hits both
        times, peak = time_steps(rdl, args, device)
        rows.setdefault(rdl, ([], peak))[0].extend(times)
    base, with_rdl = statistics.median(rows[False][0]), statistics.median(rows[True][0])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    line = (
        f"| {name} | {args.size}x{args.size} | {args.batch} | {args.reduction} | "
        f"{base * 1e3:.1f} | {with_rdl * 1e3:.1f} | {with_rdl / base:.3f} | "
        f"{rows[False][1]:.0f} / {rows[True][1]:.0f} | {2 * args.repeats} |"
    )
    print(line)
    out = Path(args.out)
    if not out.exists():
        out.write_text(
            "# Training-step benchmark: RDL on three layers vs none\n\n"
            "ResNet-18-like net (`brainrdl.models.ResNet18Like`, 11.2M parameters, 100 classes),"
            " SGD step, RDL (paper form) on layer2, layer3, layer4 toward fixed target RDMs.\n"
            "Median step time over interleaved runs; written by "
            "`benchmarks/bench_training_step.py`.\n\n"
            "| device | input | batch | reduction | step w/o RDL (ms) | step with RDL (ms) |"
            " ratio | peak MiB w/o / with | steps timed |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
    with out.open("a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
