"""Atomic training checkpoints: write to a temporary file, then ``os.replace`` onto the name.

A crash mid-write leaves the previous checkpoint intact. Checkpoints hold only tensors and plain
Python values, so they load with ``torch.load(weights_only=True)`` (no arbitrary code runs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "last.pt"


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


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing file raises FileNotFoundError.

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
    return torch.load(path, map_location=map_location, weights_only=True)
