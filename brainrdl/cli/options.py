"""Argument types of the command line: numbers checked when argparse reads them.

A bad value (``--epochs 0``, ``--n-bootstrap -3``) then stops the command with argparse's usual
``error: argument --epochs: ...`` and exit status 2, before any work.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> _ = p.add_argument("--epochs", type=positive_int)
>>> p.parse_args(["--epochs", "3"]).epochs
3
"""

from __future__ import annotations

import argparse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer ≥ 1.

    Examples
    --------
    >>> positive_int("2")
    2
    """
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0.

    Examples
    --------
    >>> non_negative_int("0")
    0
    """
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite real number.

    Examples
    --------
    >>> finite_float("1.5")
    1.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0.

    Examples
    --------
    >>> non_negative_float("0.5")
    0.5
    """
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {value}")
    return value
