"""Boundary checks shared by the public functions (scikit-learn style: validate once, at the edge).

Every message names the argument and what was expected, so a user can fix the call. The errors are
the named ones of :mod:`brainrdl.errors` (subclasses of ValueError / TypeError / OSError).
Public functions call these checks; internal helpers trust their callers and skip them.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from brainrdl.errors import (
    BrainrdlError,
    DataFileError,
    DataFileNotFoundError,
    DegenerateDataError,
    InvalidArgumentError,
    InvalidTypeError,
)


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else an InvalidArgumentError listing them.

    Examples
    --------
    >>> check_choice("method", "euclidean", ["euclidean", "correlation"])
    'euclidean'
    """
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name}={value!r} is not supported; expected one of {choices}")
    return value


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer in brainrdl's one sense: a Python or NumPy int, not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_scalar(
    name: str,
    value: Any,
    kind: type = int,
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    include_min: bool = True,
    include_max: bool = True,
    allow_none: bool = False,
) -> Any:
    """Check an int or float argument against its type and bounds (as scikit-learn's check_scalar).

    ``kind=int`` accepts Python and NumPy integers and rejects bools (one idea of "int" for the
    whole library); ``kind=float`` accepts any finite real number (ints included, bools not).
    Returns the value as a plain Python ``int`` / ``float`` (or None when ``allow_none``).

    Raises
    ------
    InvalidTypeError
        Wrong type (a float for an int, a bool, a string).
    InvalidArgumentError
        Out of bounds, or a non-finite float.

    Examples
    --------
    >>> import numpy as np
    >>> check_scalar("epochs", np.int64(3), int, min_val=1)
    3
    >>> check_scalar("ci", 0.95, float, min_val=0, max_val=1, include_min=False, include_max=False)
    0.95
    >>> check_scalar("epochs", True, int)
    Traceback (most recent call last):
    ...
    brainrdl.errors.InvalidTypeError: epochs must be an int; got True (bool)
    """
    if value is None and allow_none:
        return None
    if kind is int:
        if not is_int(value):
            raise InvalidTypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
        value = int(value)
    elif kind is float:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise InvalidTypeError(
                f"{name} must be a real number; got {value!r} ({type(value).__name__})"
            )
        value = float(value)
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{name} must be finite; got {value!r}")
    else:  # pragma: no cover - programming error
        raise InvalidTypeError(f"check_scalar: kind must be int or float, got {kind!r}")
    if min_val is not None and (value < min_val or (value == min_val and not include_min)):
        raise InvalidArgumentError(
            f"{name}={value!r} is out of range; expected {name} "
            f"{'≥' if include_min else '>'} {min_val}{_upper_text(max_val, include_max)}"
        )
    if max_val is not None and (value > max_val or (value == max_val and not include_max)):
        raise InvalidArgumentError(
            f"{name}={value!r} is out of range; expected {name} "
            f"{'≤' if include_max else '<'} {max_val}"
        )
    return value


def _upper_text(max_val: float | None, include_max: bool) -> str:
    if max_val is None:
        return ""
    return f" and {'≤' if include_max else '<'} {max_val}"


def check_device(name: str, device: Any) -> torch.device | None:
    """A ``torch.device`` that this torch can use, else an InvalidArgumentError saying why.

    Catches ``"cuda"`` on a CPU-only build of torch (or a machine without a GPU) before any work,
    instead of an AssertionError deep inside the first ``.to(device)``.

    Examples
    --------
    >>> check_device("device", "cpu")
    device(type='cpu')
    >>> check_device("device", None) is None
    True
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(
            f"{name}={device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:0'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible")  # fmt: skip
            raise InvalidArgumentError(f"{name}={device!r} cannot be used: {why}; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"{name}={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError(f"{name}={device!r} cannot be used: MPS is not available")
    return dev


def check_output_dir(name: str, path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` if needed and check that it can be written, BEFORE work.

    Raises a DataFileError naming the full path when ``path`` is an existing file, sits under a
    file, or is not writable (permissions, read-only file system).

    Examples
    --------
    >>> import tempfile
    >>> check_output_dir("out", tempfile.mkdtemp()).is_dir()
    True
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DataFileError(out, f"{name} must be a folder, but this is an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataFileError(out, f"cannot create the {name} folder ({err.strerror or err})") \
            from None
    probe = out / f".brainrdl-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataFileError(out, f"the {name} folder is not writable ({err.strerror or err})") \
            from None
    return out


def check_patterns(
    name: str, x: torch.Tensor, *, min_conditions: int = 2, allow_nan: bool = False
) -> torch.Tensor:
    """Check a pattern tensor of shape (..., n_conditions, n_channels).

    Raises an InvalidArgumentError / InvalidTypeError naming ``name`` for a wrong ndim, too few
    conditions, no channels, a non-floating dtype, and a DegenerateDataError for non-finite
    entries (listing the offending conditions and channels).

    Examples
    --------
    >>> import torch
    >>> check_patterns("data", torch.zeros(3, 4)).shape
    torch.Size([3, 4])
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise InvalidArgumentError(
            f"{name} must have shape (n_conditions, n_channels) or (batch, n_conditions, "
            f"n_channels); got a {x.ndim}-d tensor of shape {tuple(x.shape)}"
        )
    if x.shape[-2] < min_conditions:
        raise InvalidArgumentError(
            f"{name} needs at least {min_conditions} conditions (rows) to form an RDM; "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[-1] < 1:
        raise InvalidArgumentError(f"{name} has no channels (columns); got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise InvalidTypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not allow_nan:
        check_finite(name, x)
    return x


def check_finite(name: str, x: torch.Tensor, rows: str = "conditions") -> torch.Tensor:
    """Raise a DegenerateDataError naming the rows/channels where ``x`` is NaN or infinite.

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
        raise DegenerateDataError(
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
    """Return ``value`` if it names one of the ``available`` descriptors, else raise an
    InvalidArgumentError that lists them.

    Examples
    --------
    >>> check_descriptor("descriptor", "stimulus", ["stimulus", "run"])
    'stimulus'
    """
    available = list(available)
    if not isinstance(value, str) or value not in available:
        raise InvalidArgumentError(
            f"{name}={value!r} is not an obs_descriptor of the dataset; available: {available}"
        )
    return value


def check_input_file(name: str, path: str | os.PathLike, what: str = "file") -> Path:
    """The path of an existing, non-empty regular file, else a DataFileError naming its full path.

    A missing file raises a DataFileNotFoundError (also a FileNotFoundError); a folder or an
    empty file, a DataFileError (an OSError).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.tsv"; _ = p.write_text("a")
    >>> check_input_file("labels", p).name
    'x.tsv'
    """
    p = Path(path)
    if not p.exists():
        raise DataFileNotFoundError(p, f"{name}: no such file (expected: {what})")
    if not p.is_file():
        raise DataFileError(p, f"{name}: expected: {what}; found a folder or special file")
    if p.stat().st_size == 0:
        raise DataFileError(p, f"{name}: the {what} is empty (0 bytes)")
    return p


@contextmanager
def reading(path: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Turn any failure while reading ``path`` into a DataFileError naming its full path.

    Wrap only the calls that read the file (nibabel, h5py, pynwb, pandas): a truncated gzip
    stream, a corrupt HDF5 block or a bad header then reads "<full path>: cannot read this NIfTI
    file (EOFError: ...); is it truncated or corrupt?" instead of a bare library traceback.
    brainrdl's own errors pass through unchanged.

    Examples
    --------
    >>> try:
    ...     with reading("/no/such/file.nii.gz", "NIfTI file"):
    ...         open("/no/such/file.nii.gz").read()
    ... except DataFileError as err:
    ...     print(err)
    /no/such/file.nii.gz: cannot read this NIfTI file (FileNotFoundError: ...)...
    """
    try:
        yield
    except BrainrdlError:
        raise
    except (KeyboardInterrupt, MemoryError):  # pragma: no cover - not about the file
        raise
    except Exception as err:
        raise DataFileError(
            path,
            f"cannot read this {what} ({type(err).__name__}: {err}); is it truncated, corrupt "
            "or of another format?",
        ) from err


def check_distinct_ids(name: str, ids: Sequence[Any], min_count: int = 2) -> list[Any]:
    """``ids`` as a list, checked: at least ``min_count`` of them, and no id twice (named error
    listing the repeated ones).

    Examples
    --------
    >>> check_distinct_ids("stimulus_ids", ["a", "b"])
    ['a', 'b']
    """
    ids = list(ids)
    if len(ids) < min_count:
        raise InvalidArgumentError(f"{name} must hold at least {min_count} ids; got {len(ids)}")
    if len(set(ids)) != len(ids):
        seen: set = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        raise InvalidArgumentError(f"{name} must be distinct; repeated: {repeated[:5]}")
    return ids
