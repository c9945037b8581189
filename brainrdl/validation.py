"""Boundary checks shared by the public functions (scikit-learn style: validate once, at the edge).

Every message names the argument and what was expected, so a user can fix the call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them.

    Examples
    --------
    >>> check_choice("method", "euclidean", ["euclidean", "correlation"])
    'euclidean'
    """
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {choices}")
    return value


def check_patterns(
    name: str, x: torch.Tensor, *, min_conditions: int = 2, allow_nan: bool = False
) -> torch.Tensor:
    """Check a pattern tensor of shape (..., n_conditions, n_channels).

    Raises a ValueError naming ``name`` for a wrong ndim, too few conditions, no channels, a
    non-floating dtype or non-finite entries (listing the offending conditions and channels).

    Examples
    --------
    >>> import torch
    >>> check_patterns("data", torch.zeros(3, 4)).shape
    torch.Size([3, 4])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_conditions, n_channels) or (batch, n_conditions, "
            f"n_channels); got a {x.ndim}-d tensor of shape {tuple(x.shape)}"
        )
    if x.shape[-2] < min_conditions:
        raise ValueError(
            f"{name} needs at least {min_conditions} conditions (rows) to form an RDM; "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has no channels (columns); got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not allow_nan:
        check_finite(name, x)
    return x


def check_finite(name: str, x: torch.Tensor, rows: str = "conditions") -> torch.Tensor:
    """Raise a ValueError naming the rows/channels where ``x`` is NaN or infinite.

    ``rows`` says what a row is in the message (``"conditions"``, ``"observations"``).

    Examples
    --------
    >>> import torch
    >>> check_finite("data", torch.ones(2, 2)).sum().item()
    4.0
    """
    # One reduction, no boolean copy: NaN/inf propagate into the sum. A non-finite sum of
    # finite values (overflow) falls through to the exact check below, which then passes.
    if bool(torch.isfinite(x.sum())):
        return x
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        flat = bad.reshape(-1, x.shape[-2], x.shape[-1]) if x.ndim >= 2 else bad.reshape(1, 1, -1)
        conditions = torch.nonzero(flat.any(dim=(0, 2))).flatten().tolist()
        channels = torch.nonzero(flat.any(dim=(0, 1))).flatten().tolist()
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite values, in {rows} (rows) "
            f"{_short(conditions)} and channels (columns) {_short(channels)}; remove or impute "
            "them before computing RDMs"
        )
    return x


def _short(indices: list[int], limit: int = 10) -> str:
    if len(indices) <= limit:
        return str(indices)
    return f"{indices[:limit]} ... ({len(indices)} in all)"


def check_descriptor(name: str, value: str, available: Iterable[str]) -> str:
    """Return ``value`` if it names one of the ``available`` descriptors, else raise a KeyError-like
    ValueError that lists them.

    Examples
    --------
    >>> check_descriptor("descriptor", "stimulus", ["stimulus", "run"])
    'stimulus'
    """
    available = list(available)
    if not isinstance(value, str) or value not in available:
        raise ValueError(
            f"{name}={value!r} is not an obs_descriptor of the dataset; available: {available}"
        )
    return value
