"""The named errors of brainrdl: one small hierarchy, raised at the boundary before any work.

Each class also derives from the built-in exception a caller would have caught before
(``ValueError``, ``TypeError``, ``OSError``), so existing ``except ValueError`` blocks keep working,
while ``except brainrdl.BrainrdlError`` catches every input problem brainrdl reports.

Examples
--------
>>> from brainrdl.errors import BrainrdlError, InvalidArgumentError
>>> try:
...     raise InvalidArgumentError("epochs=0 must be ≥ 1")
... except ValueError as err:          # still a ValueError
...     isinstance(err, BrainrdlError)
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BrainrdlError",
    "DataFileError",
    "DataFileNotFoundError",
    "DegenerateDataError",
    "InvalidArgumentError",
    "InvalidTypeError",
]


class BrainrdlError(Exception):
    """Base of every error brainrdl raises on purpose about its input (catch this one)."""


class InvalidArgumentError(BrainrdlError, ValueError):
    """An argument has the right type but a wrong value: out of range, unknown name, bad shape.

    Examples
    --------
    >>> isinstance(InvalidArgumentError("x"), ValueError)
    True
    """


class InvalidTypeError(BrainrdlError, TypeError, ValueError):
    """An argument has the wrong type (a float where an int is needed, a list for a tensor).

    Also a ValueError: earlier versions raised ValueError for some wrong types (``epochs=2.5``),
    and ``except ValueError`` blocks written for them keep working.

    Examples
    --------
    >>> isinstance(InvalidTypeError("x"), TypeError), isinstance(InvalidTypeError("x"), ValueError)
    (True, True)
    """


class DegenerateDataError(BrainrdlError, ValueError):
    """The data are well formed but the requested quantity is undefined or numerically meaningless
    for them: constant patterns for a correlation distance, non-finite values, a precision
    matrix that is not positive definite, constant brain RDMs for a noise ceiling.

    Examples
    --------
    >>> isinstance(DegenerateDataError("x"), ValueError)
    True
    """


class DataFileError(BrainrdlError, OSError, ValueError):
    """A data file is missing, truncated, corrupt or of the wrong kind; the message names its full
    path. Also an output location that cannot be written.

    An OSError (the file could not be used) and a ValueError (what reading libraries raised for
    bad content before, e.g. a malformed table), so both kinds of existing ``except`` still work.

    Examples
    --------
    >>> err = DataFileError("/tmp/x.nii.gz", "truncated gzip stream")
    >>> str(err).startswith("/tmp/x.nii.gz")
    True
    >>> err.path
    '/tmp/x.nii.gz'
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(Path(path).expanduser().absolute())
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:  # OSError would print its errno tuple otherwise
        return f"{self.path}: {self.problem}"

    def __reduce__(self):  # picklable (multiprocessing) despite the two-argument constructor
        return (type(self), (self.path, self.problem))


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """A data file that does not exist (also a FileNotFoundError, as before).

    Examples
    --------
    >>> isinstance(DataFileNotFoundError("/x.tsv", "no such file"), FileNotFoundError)
    True
    """
