"""Peak RAM of extract_rdms: ~20 block outputs of a ResNet-18-sized network (random init).

Run: ``python benchmarks/bench_extract_memory.py [--n 1000] [--size 224] [--budget 1e9]
[--threads 2]``
Peak resident memory is the process's ru_maxrss (includes torch and the model).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from _report import write_section
from torch import nn

from brainrdl.analysis.layer_rdms import extract_rdms


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)) if stride != 1 or cin != cout
                     else nn.Identity())  # fmt: skip

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.down(x))


def resnet18() -> nn.Module:
    """The ResNet-18 layout (11.7 M parameters) without torchvision."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]  # fmt: skip
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


LAYERS = ["0", "1", "3", "4.conv1", "4", "5.conv1", "5", "6.conv1", "6", "7.conv1", "7",
          "8.conv1", "8", "9.conv1", "9", "10.conv1", "10", "11.conv1", "11", "12"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--budget", type=float, default=1e9)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = resnet18()
    stimuli = torch.rand(args.n, 3, args.size, args.size)  # generated: 0.6 GB at 1000 x 224²
    t = time.perf_counter()
    rdms = extract_rdms(net, stimuli, LAYERS, batch_size=args.batch_size, memory_budget=args.budget,
                        progress=False)  # fmt: skip
    seconds = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    stim_gb = stimuli.numel() * 4 / 1e9
    with torch.no_grad():
        from brainrdl.nets.taps import LayerTaps

        with LayerTaps(net.eval(), LAYERS, detach=True) as taps:
            widths = {k: v.shape[1] for k, v in taps.extract(stimuli[:1]).items()}
    full_gb = sum(widths.values()) * args.n * 4 / 1e9
    print(f"{rdms.n_rdm} layers, {args.n} stimuli {args.size}x{args.size}: {seconds:.0f} s, peak "
          f"RSS {peak_gb:.2f} GB (stimuli {stim_gb:.2f} GB; all activations would be "
          f"{full_gb:.1f} GB)")  # fmt: skip
    write_section("bench_extract_memory", "\n".join([
        "## Layer RDMs in bounded memory (ResNet-18 layout, random init, CPU)",
        "",
        f"{rdms.n_rdm} block outputs, {args.n} stimuli of {args.size}x{args.size}, batch "
        f"{args.batch_size}, memory_budget {args.budget:.3g} bytes, float32, torch threads "
        f"{torch.get_num_threads()}: **peak RSS "
        f"{peak_gb:.2f} GB** (includes the {stim_gb:.2f} GB stimulus tensor held by the script), "
        f"{seconds:.0f} s. Holding all activations would need {full_gb:.1f} GB.",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
