"""extract_rdms on torchvision's ResNet-50 (random weights, ``layers="auto"``) over 1,000 stimuli.

Run: ``python benchmarks/bench_extract_resnet50.py [--n 1000] [--budget 1e9] [--threads 2]``

The stimuli are 224×224 RGB images drawn on the fly from a seeded generator (a Dataset), so the
script holds no stimulus tensor: peak resident memory (ru_maxrss) is torch + the model + the
activations that ``memory_budget`` allows + the Gram matrices. With fewer stimuli than
``--target`` (default 1000), ``--scale-budget`` shrinks the budget in proportion so that the run
makes the same number of passes over the stimuli as the full run would, and the time is scaled
to ``--target`` stimuli (forward passes are linear in N at a fixed number of passes; the Gram
products, quadratic, are a small share); the page says so.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import torch
from _report import write_section

from brainrdl.analysis.layer_rdms import extract_rdms
from brainrdl.nets.loading import load_model


class RandomImages(torch.utils.data.Dataset):
    """``n`` seeded random RGB images (3, size, size), generated per item."""

    def __init__(self, n: int, size: int = 224, transform=None) -> None:
        self.n, self.size, self.transform = n, size, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        x = torch.rand(3, self.size, self.size, generator=g)
        return self.transform(x) if self.transform is not None else x


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000, help="stimuli in this run")
    p.add_argument("--target", type=int, default=1000, help="stimuli the page reports")
    p.add_argument("--budget", type=float, default=1e9, help="memory_budget of the full run")
    p.add_argument("--scale-budget", action="store_true",
                   help="shrink the budget by n / target (same passes as the full run)")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    torch.manual_seed(0)
    model, _, layers = load_model("torchvision:resnet50")
    budget = args.budget * (args.n / args.target if args.scale_budget else 1.0)
    stimuli = RandomImages(args.n)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t = time.perf_counter()
    rdms = extract_rdms(model, stimuli, layers, batch_size=args.batch_size, memory_budget=budget,
                        progress=True)  # fmt: skip
    seconds = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    with torch.no_grad():
        from brainrdl.nets.taps import LayerTaps

        with LayerTaps(model, layers, detach=True) as taps:
            widths = {k: v.shape[1] for k, v in taps.extract(stimuli[0][None]).items()}
    per_stimulus = sum(widths.values()) * 4
    passes = max(1, math.ceil(args.n * per_stimulus / budget))
    full_gb = per_stimulus * args.target / 1e9
    scaled = seconds * args.target / args.n
    gram_gb = len(layers) * args.target**2 * 8 / 1e9
    print(f"{rdms.n_rdm} layers {layers}, {args.n} stimuli: {seconds:.0f} s ({passes} passes), "
          f"peak RSS {peak_gb:.2f} GB (before: {rss_before:.2f} GB)")  # fmt: skip
    if args.n == args.target:
        timing = f"{seconds:.0f} s"
        memory = f"**peak RSS {peak_gb:.2f} GB**"
    else:
        # at the target size the budget is args.budget and the Grams grow with N²
        est = peak_gb + (args.budget - budget) / 1e9 + gram_gb * (1 - (args.n / args.target) ** 2)
        timing = (f"{seconds:.0f} s for {args.n} stimuli, *extrapolated* to about {scaled:.0f} s "
                  f"for {args.target} (linear in N at the same {passes} passes)")  # fmt: skip
        memory = (f"peak RSS {peak_gb:.2f} GB measured with a budget of {budget:.2g} bytes; "
                  f"**about {est:.1f} GB** estimated at {args.target} stimuli with "
                  f"{args.budget:.2g} bytes (measured + the larger budget + the larger Grams)")
    write_section("bench_extract_resnet50", "\n".join([
        "## Layer RDMs of ResNet-50 (torchvision, random weights, `layers=\"auto\"`, CPU)",
        "",
        f"{rdms.n_rdm} layers ({', '.join(layers)}), {args.target} stimuli of 224x224 (generated "
        f"on the fly), batch {args.batch_size}, memory_budget {args.budget:.3g} bytes, float32, "
        f"torch threads {torch.get_num_threads()} ({os.cpu_count()} CPUs, load average at start "
        f"{load}), {passes} passes over the stimuli: {timing}; "
        f"{memory} (torch and the model alone: {rss_before:.2f} GB). Holding all activations "
        f"would need {full_gb:.1f} GB; the Gram matrices take {gram_gb:.2f} GB.",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
