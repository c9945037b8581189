"""Atomic training checkpoints: write to a temporary file, then ``os.replace`` onto the name.

A crash mid-write leaves the previous checkpoint intact and, at worst, a stale temporary file
that :func:`remove_stale_temporaries` clears before the next run writes. Checkpoints hold only
tensors and plain Python values, so they load with ``torch.load(weights_only=True)`` (no arbitrary
code runs); a file that cannot be read raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "last.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (empty, truncated, not a checkpoint).

    Examples
    --------
    >>> issubclass(CheckpointError, RuntimeError)
    True
    """


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``state`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    Examples
    --------
    >>> import tempfile, torch
    >>> p = save_checkpoint({"epoch": 1, "w": torch.ones(2)}, Path(tempfile.mkdtemp()) / "c.pt")
    >>> load_checkpoint(p)["epoch"]
    1
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing file raises FileNotFoundError.

    ``mmap=True`` maps the tensors instead of reading them: for a caller that only needs the
    small entries (epoch, step), so a large model's weights are not read twice on resume.

    Examples
    --------
    >>> import tempfile
    >>> load_checkpoint(Path(tempfile.mkdtemp()) / "none.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no checkpoint at ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    full = path.resolve()
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {full} is empty (a write was interrupted before the atomic rename?); "
            "delete it to start over"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # EOFError, zip / unpickling errors: all mean "not readable"
        raise CheckpointError(
            f"checkpoint {full} is corrupt or not a brainrdl checkpoint "
            f"({type(err).__name__}: {err}); delete it to start over"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {full} does not hold a dict of training state")
    return state


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed :func:`save_checkpoint` left next to ``path``.

    Returns the removed paths.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / ".last.pt.abc.tmp").write_bytes(b"x")
    >>> [p.name for p in remove_stale_temporaries(d / "last.pt")]
    ['.last.pt.abc.tmp']
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
