"""Mixed precision for :func:`brainrdl.fit`: autocast per step, float32 RDMs and losses inside.

``precision="bf16"`` or ``"fp16"`` runs the forward pass under ``torch.autocast``; the RDMs and
alignment losses are computed with autocast off on float32 copies of the activations (a
B×B Gram in half precision loses the small distance differences RDL learns from). ``"fp16"``
scales the loss with a ``GradScaler`` so small gradients do not flush to zero. ``fit`` refuses to
run inside an autocast region someone else opened: it decides the precision of each step itself.

Examples
--------
>>> import torch
>>> p = Precision("bf16", torch.device("cpu"))
>>> with p.autocast():
...     y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
>>> y.dtype
torch.bfloat16
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from brainrdl.validation import check_choice

__all__ = ["PRECISIONS", "OuterAutocastError", "Precision", "refuse_outer_autocast"]

PRECISIONS = ("32", "bf16", "fp16")
_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class OuterAutocastError(RuntimeError):
    """``fit`` was called inside ``torch.autocast``; pass ``precision=`` instead.

    Examples
    --------
    >>> issubclass(OuterAutocastError, RuntimeError)
    True
    """


def refuse_outer_autocast(device: torch.device) -> None:
    """Raise :class:`OuterAutocastError` when an autocast region is open on the CPU or ``device``.

    Examples
    --------
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     refuse_outer_autocast(torch.device("cpu"))
    Traceback (most recent call last):
    ...
    brainrdl.train.precision.OuterAutocastError: fit was called inside torch.autocast('cpu', ...)...
    """
    for kind in dict.fromkeys(("cpu", device.type)):
        try:
            enabled = torch.is_autocast_enabled(kind)
        except (RuntimeError, TypeError):  # a device type without autocast support
            enabled = False
        if enabled:
            raise OuterAutocastError(
                f"fit was called inside torch.autocast({kind!r}, ...): the alignment losses "
                "would see half-precision RDMs and the optimiser half-precision losses. Call fit "
                "outside the autocast block and pass precision='bf16' (or 'fp16'): fit autocasts "
                "each step itself and keeps RDMs and losses in float32"
            )


class Precision:
    """Autocast and loss scaling for one precision on one device.

    Parameters
    ----------
    precision : str
        ``"32"`` (no autocast), ``"bf16"`` or ``"fp16"`` (with a ``GradScaler``).
    device : torch.device
        The training device.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.name = check_choice("precision", str(precision), PRECISIONS)
        self.device = device
        self.dtype = _DTYPES[self.name]
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's autocast region (a no-op for ``"32"``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def full(self) -> contextlib.AbstractContextManager[Any]:
        """A float32 region inside the forward pass (RDMs, alignment losses)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, enabled=False)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
