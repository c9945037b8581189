"""Small networks for the demo and the benchmarks: digit CNNs and a ResNet-18-like net.

``DigitCNN`` is sized for the 8×8 scikit-learn digits (student: ~40k parameters; teacher via
:func:`digit_teacher`: ~0.6M). ``resnet18_like`` follows the ResNet-18 layout (He et al. 2016:
four stages of two basic blocks, 64-512 channels, ~11M parameters) for timing; torchvision is not
a dependency.
"""

from __future__ import annotations

from torch import Tensor, nn


class DigitCNN(nn.Module):
    """Two 3×3 conv layers, 2×2 max-pool, one hidden fully connected layer, a classifier.

    Layer names for taps: ``conv1``, ``conv2``, ``fc1`` (after ReLU), ``fc2`` (logits).

    Parameters
    ----------
    width : int
        Channels of ``conv1`` (``conv2`` has twice as many).
    hidden : int
        Units of ``fc1``.
    n_classes : int
        Outputs of ``fc2``.
    dropout : float
        Dropout before ``fc2`` (the teacher uses some).

    Examples
    --------
    >>> import torch
    >>> DigitCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, width: int = 16, hidden: int = 64, n_classes: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.fc1(self.pool(self.conv2(self.conv1(x))))))


def digit_student() -> DigitCNN:
    """The small student CNN (width 8, 32 hidden units).

    Examples
    --------
    >>> sum(p.numel() for p in digit_student().parameters()) < 20_000
    True
    """
    return DigitCNN(width=8, hidden=32)


def digit_teacher() -> DigitCNN:
    """The larger teacher CNN (width 64, 256 hidden units, dropout 0.3).

    Examples
    --------
    >>> sum(p.numel() for p in digit_teacher().parameters()) > 500_000
    True
    """
    return DigitCNN(width=64, hidden=256, dropout=0.3)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs with BatchNorm and an identity (or 1×1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet18Like(nn.Module):
    """ResNet-18 layout (torchvision names: ``layer1`` … ``layer4``, ``fc``).

    Examples
    --------
    >>> import torch
    >>> net = ResNet18Like(num_classes=5)
    >>> net(torch.zeros(2, 3, 32, 32)).shape, sum(p.numel() for p in net.parameters()) > 11e6
    (torch.Size([2, 5]), True)
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, c_in, stages = (64, 128, 256, 512), 64, []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, w, stride), BasicBlock(w, w)))
            c_in = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
