"""NWB files (via pynwb) → firing-rate Datasets and RDMs, per region and time window.

Reads the Units table (``spike_times``, unit ids, an optional region column or the units'
electrodes' ``location``) and a trials table or any other TimeIntervals table (``epochs`` or a
named entry of ``nwbfile.intervals``) with a chosen stimulus column, then hands them to
:mod:`data_adapters.ephys.spikes`. Firing rate = spike count in ``[start_time + window[0],
start_time + window[1])`` divided by the window length; RDMs average the trials per stimulus.

Reads are lazy: the file is opened with pynwb (which reads no dataset until asked), then only
the Units table's ids, spike-time index and region column, the intervals table's scalar
columns, and the spike times of the selected units (``units=`` ids, ``regions=`` names; one
contiguous read per run of adjacent units) are read. The source may be a path, an open
``h5py.File`` (left open) or a binary file object such as a ``remfile.File`` streaming a DANDI
asset, so a large remote file is never downloaded whole.

Examples
--------
>>> import os, tempfile, numpy as np
>>> from data_adapters.demo.ephys import write_demo_nwb
>>> path = write_demo_nwb(os.path.join(tempfile.mkdtemp(), "s.nwb"), np.eye(4),
...                       ["a", "b", "c", "d"], n_units=6, n_repeats=2)
>>> rdms = rdms_from_nwb(path, "stimulus", (0.05, 0.35), method="poisson")
>>> rdms.pattern_descriptors["stimulus"]
['a', 'b', 'c', 'd']
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import RDMs

from brainrdl.errors import InvalidArgumentError
from brainrdl.validation import check_input_file, reading
from data_adapters.ephys import spikes as ephys
from data_adapters.ephys.spikes import as_text

__all__ = ["NWBSpikes", "datasets_from_nwb", "rdms_from_nwb", "read_nwb_spikes"]

# units columns tried, in order, by region_column="auto"
_REGION_CANDIDATES = ("region", "location", "brain_area", "area")


@dataclass(frozen=True)
class NWBSpikes:
    """What the adapter reads from one NWB file.

    Attributes
    ----------
    spike_trains : list of numpy.ndarray
        Spike times (s) per unit, sorted.
    unit_ids : numpy.ndarray
        Ids of the Units table rows.
    unit_regions : numpy.ndarray or None
        Region label per unit when a region column was read.
    trials : pandas.DataFrame
        The intervals table: ``start_time``, ``stop_time``, the stimulus column and any other
        scalar columns (e.g. ``repeat``, ``run``).
    recording : tuple of float or None
        (start, stop) from the units' ``obs_intervals`` when the file has them.
    subject, session : str or None
        ``nwbfile.subject.subject_id`` and ``nwbfile.session_id`` (or the identifier).

    Examples
    --------
    >>> NWBSpikes([np.array([0.1])], np.array([0]), None, pd.DataFrame(), None, None, None).unit_ids
    array([0])
    """

    spike_trains: list[np.ndarray]
    unit_ids: np.ndarray
    unit_regions: np.ndarray | None
    trials: pd.DataFrame
    recording: tuple[float, float] | None
    subject: str | None
    session: str | None


def read_nwb_spikes(
    path: str | Path | Any,
    *,
    stimulus_column: str = "stimulus",
    intervals: str = "trials",
    region_column: str | None = None,
    units: Sequence[Any] | None = None,
    regions: Sequence[str] | None = None,
) -> NWBSpikes:
    """Read spike trains, unit regions and an intervals table from an NWB file, lazily.

    Parameters
    ----------
    path : str, pathlib.Path, h5py.File or binary file object
        The NWB (HDF5) file: a path, an ``h5py.File`` opened by the caller (it stays open), or
        a seekable binary file object (``open(p, "rb")``, ``remfile.File(url)``, fsspec).
    stimulus_column : str
        Column of the intervals table with the stimulus id of each trial.
    intervals : str
        ``"trials"``, ``"epochs"`` or the name of another TimeIntervals table in
        ``nwbfile.intervals``.
    region_column : str, optional
        Units column with the region of each unit (e.g. ``"location"``); when the Units table
        has no such column but has ``electrodes`` (or ``electrode_group``), the column is read
        from the unit's first electrode (or its group's ``location``). ``"auto"`` tries
        ``region``, ``location``, ``brain_area``, ``area`` and then the electrodes'
        ``location``. None: no regions.
    units : sequence, optional
        Ids of the units to read (default all); only their spike times are read.
    regions : sequence of str, optional
        Read only units in these regions (needs ``region_column``).

    Returns
    -------
    NWBSpikes

    Examples
    --------
    >>> import os, tempfile
    >>> from data_adapters.demo.ephys import write_demo_nwb
    >>> path = write_demo_nwb(os.path.join(tempfile.mkdtemp(), "s.nwb"), np.eye(3),
    ...                       ["a", "b", "c"], n_units=4, n_repeats=1, regions=("V1", "IT"))
    >>> read_nwb_spikes(path, region_column="location").unit_regions.tolist()
    ['V1', 'V1', 'IT', 'IT']
    """
    if regions is not None and region_column is None:
        raise ValueError("regions= selects units by region: pass region_column= too (e.g. "
                         "'location' or 'auto')")
    with _open_nwb(path) as (nwbfile, path):
        table_units = _units_table(nwbfile, path)
        ids = np.asarray(table_units.id.data[:])
        unit_regions = _unit_regions(table_units, region_column, path)
        rows = _select_units(ids, unit_regions, units, regions, path)
        trains = _spike_trains(table_units, rows)
        table = _intervals_table(nwbfile, intervals, path)
        trials = _intervals_frame(table, stimulus_column, intervals, path)
        recording = _obs_span(table_units)
        subject = getattr(nwbfile.subject, "subject_id", None) if nwbfile.subject else None
        session = nwbfile.session_id or nwbfile.identifier
    ids = ids[rows]
    unit_regions = None if unit_regions is None else unit_regions[rows]
    return NWBSpikes(trains, ids, unit_regions, trials, recording, subject, session)


@contextlib.contextmanager
def _open_nwb(source: Any):
    """(nwbfile, display name) from a path, an open h5py.File or a binary file object.

    A caller's h5py.File is left open (hdmf would close it); an h5py.File opened here on a
    caller's file object is closed, the file object is not."""
    import h5py
    from pynwb import NWBHDF5IO

    if isinstance(source, (str, os.PathLike)):
        path = check_input_file("path", source, "NWB file")
        # a truncated or corrupt file fails inside h5py/hdmf: name the file, not the library
        with reading(path, "NWB file"), NWBHDF5IO(str(path), mode="r") as io:
            yield _read(io, path), path
        return
    if isinstance(source, h5py.File):
        if not source.id.valid:
            raise ValueError("path is a closed h5py.File; open it again (h5py.File(..., 'r'))")
        io = _borrowed_io(file=source, mode="r")
        try:
            yield _read(io, source.filename), source.filename
        finally:
            io.close()
        return
    if hasattr(source, "read") and hasattr(source, "seek"):
        name = getattr(source, "name", None) or getattr(source, "url", None) or repr(source)
        try:
            h5 = h5py.File(source, "r")
        except OSError as err:
            raise ValueError(f"file object {name!r} is not an HDF5 (NWB) file: {err}") from err
        with NWBHDF5IO(file=h5, mode="r") as io:
            yield _read(io, name), name
        return
    raise TypeError("path must be a path, an h5py.File or a binary file object (e.g. "
                    f"open(p, 'rb') or remfile.File(url)); got {type(source).__name__}")


def _read(io: Any, name: Any) -> Any:
    try:
        return io.read()
    except Exception as err:  # hdmf raises several types for a file that is not NWB
        raise ValueError(f"{str(name)!r} could not be read as an NWB file: {err}") from err


def _borrowed_io_class() -> Any:
    from pynwb import NWBHDF5IO

    class BorrowedFileIO(NWBHDF5IO):
        """NWBHDF5IO on a caller's h5py.File: closing it leaves that file open."""

        _released = False

        def close(self, close_links: bool = True) -> None:
            if close_links:
                self.close_linked_files()
            self._released = True

        def is_open(self) -> bool:
            return not self._released and super().is_open()

    return BorrowedFileIO


def _borrowed_io(**kwargs: Any) -> Any:
    return _borrowed_io_class()(**kwargs)


def _select_units(ids: np.ndarray, unit_regions: np.ndarray | None, units: Any, regions: Any,
                  path: Any) -> np.ndarray:
    """Row indices of the units to read."""
    keep = np.ones(len(ids), dtype=bool)
    if units is not None:
        wanted = list(units)
        missing = [u for u in wanted if u not in set(ids.tolist())]
        if missing:
            raise ValueError(f"units={missing[:5]} are not ids of the Units table of "
                             f"{str(path)!r} (ids {ids[:10].tolist()}...)")
        keep &= np.isin(ids, wanted)
    if regions is not None:
        assert unit_regions is not None
        absent = sorted(set(regions) - set(unit_regions.tolist()))
        if absent:
            raise ValueError(f"regions={absent} do not occur in {str(path)!r}; its regions are "
                             f"{sorted(set(unit_regions.tolist()))}")
        keep &= np.isin(unit_regions, list(regions))
    if not keep.any():
        raise ValueError(f"no unit of {str(path)!r} is selected by units={units!r}, "
                         f"regions={regions!r}")
    return np.flatnonzero(keep)


def datasets_from_nwb(
    path: str | Path,
    stimulus_column: str = "stimulus",
    window: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
    *,
    windows: Sequence[Sequence[float]] | np.ndarray | None = None,
    region_column: str | None = None,
    intervals: str = "trials",
    units: Sequence[Any] | None = None,
    regions: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[Dataset]:
    """Firing-rate Datasets (trials × units), one per window, from an NWB file.

    Parameters
    ----------
    path, stimulus_column, intervals, region_column, units, regions
        As in :func:`read_nwb_spikes` (a path, an open ``h5py.File`` or a binary file object;
        only the selected units are read); regions become the channel descriptor ``region``.
    window : (start, stop) or sequence of (start, stop)
        Counting window(s) relative to each interval's ``start_time`` (half-open).
    windows : sequence of (start, stop), optional
        Alternative spelling for a sequence of windows (give ``window`` or ``windows``).
    **kwargs : Any
        Passed to :func:`data_adapters.ephys.spikes.datasets_from_spikes` (``transform``,
        ``measure``, ``empty_units``, ``recording``, ``repeat_column`` ...).

    Returns
    -------
    list of rsatoolbox.data.Dataset
        One per window; obs descriptors ``stimulus`` and ``repeat`` (from a ``repeat`` column,
        else the occurrence index of each stimulus), descriptors ``window``, ``subject``,
        ``session``.

    Examples
    --------
    >>> import os, tempfile
    >>> from data_adapters.demo.ephys import write_demo_nwb
    >>> path = write_demo_nwb(os.path.join(tempfile.mkdtemp(), "s.nwb"), np.eye(3),
    ...                       ["a", "b", "c"], n_units=4, n_repeats=2)
    >>> dss = datasets_from_nwb(path, windows=[(0.0, 0.1), (0.1, 0.2)])
    >>> [d.descriptors["window"] for d in dss], dss[0].n_obs
    (['[0, 0.1)', '[0.1, 0.2)'], 6)
    """
    the_window = _one_window_argument(window, windows)
    data = read_nwb_spikes(
        path, stimulus_column=stimulus_column, intervals=intervals, region_column=region_column,
        units=units, regions=regions,
    )  # fmt: skip
    kwargs.setdefault("recording", data.recording)
    kwargs.setdefault("subject", data.subject)
    kwargs.setdefault("session", data.session)
    return ephys.datasets_from_spikes(
        data.spike_trains,
        data.trials,
        the_window,
        unit_ids=data.unit_ids,
        unit_regions=data.unit_regions,
        onset_column="start_time",
        stimulus_column=stimulus_column,
        **kwargs,
    )


def rdms_from_nwb(
    path: str | Path,
    stimulus_column: str,
    window: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    method: str = "euclidean",
    region_column: str | None = None,
    intervals: str = "trials",
    noise: np.ndarray | None = None,
    cv_descriptor: str = "repeat",
    progress: bool | None = None,
    units: Sequence[Any] | None = None,
    regions: Sequence[str] | None = None,
    **kwargs: Any,
) -> RDMs | dict[str, RDMs]:
    """RDMs from an NWB file in one call: one RDM per window, per region if asked.

    Parameters
    ----------
    path, stimulus_column, window, region_column, intervals, units, regions
        As in :func:`datasets_from_nwb`: ``path`` may be an open ``h5py.File`` or a binary file
        object (e.g. a streamed DANDI asset), and only the selected units are read.
    method : {"euclidean", "correlation", "poisson", "poisson_cv", "crossnobis"}
        Dissimilarity (rsatoolbox names); the cross-validated ones fold over ``cv_descriptor``.
    noise, cv_descriptor, progress
        As in :func:`data_adapters.ephys.spikes.rdms_from_datasets`.
    **kwargs : Any
        Passed to :func:`data_adapters.ephys.spikes.datasets_from_spikes`.

    Returns
    -------
    rsatoolbox.rdm.RDMs or dict of str -> RDMs
        Conditions are the sorted stimulus ids; a dict keyed by region when ``region_column``
        is given.

    Examples
    --------
    >>> import os, tempfile
    >>> from data_adapters.demo.ephys import write_demo_nwb
    >>> path = write_demo_nwb(os.path.join(tempfile.mkdtemp(), "s.nwb"), np.eye(3),
    ...                       ["a", "b", "c"], n_units=6, n_repeats=2, regions=("V1", "IT"))
    >>> sorted(rdms_from_nwb(path, "stimulus", (0.05, 0.35), region_column="location"))
    ['IT', 'V1']
    """
    ephys.check_method_transform(method, kwargs.get("transform"))
    datasets = datasets_from_nwb(
        path,
        stimulus_column,
        window,
        region_column=region_column,
        intervals=intervals,
        units=units,
        regions=regions,
        **kwargs,
    )
    return ephys.rdms_from_datasets(
        datasets,
        method=method,
        cv_descriptor=cv_descriptor,
        noise=noise,
        split_regions=region_column is not None,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
def _units_table(nwbfile: Any, path: Path) -> Any:
    from pynwb.misc import Units

    if nwbfile.units is not None:
        return nwbfile.units
    # some writers keep sorted units in a processing module instead of /units
    found = [obj for obj in nwbfile.objects.values() if isinstance(obj, Units)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidArgumentError(
            f"NWB file {str(path)!r} has no Units table (nwbfile.units is empty and no processing "
            "module holds one); spike-sorted units with spike_times are needed"
        )
    raise InvalidArgumentError(
        f"NWB file {str(path)!r} has no /units but {len(found)} Units tables in processing "
        f"modules ({[u.name for u in found]}); ambiguous"
    )


def _spike_trains(units: Any, rows: np.ndarray) -> list[np.ndarray]:
    """Spike times of the units at ``rows``: the ragged column's end offsets are read whole
    (one int per unit), the flat spike times only over the selected units, one contiguous
    read per run of adjacent rows."""
    if "spike_times" not in units.colnames:
        raise InvalidArgumentError(
            f"the Units table has no 'spike_times' column; its columns are {list(units.colnames)}"
        )
    if len(units.id.data) == 0:
        raise ValueError("the NWB Units table has no units (0 rows)")
    flat = units["spike_times"].target.data
    ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    trains: list[np.ndarray] = []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for run in np.split(rows, breaks):
        lo, hi = int(starts[run[0]]), int(ends[run[-1]])
        block = np.asarray(flat[lo:hi], dtype=float)
        trains += np.split(block, ends[run[:-1]] - lo)
    return trains


def _unit_regions(units: Any, region_column: str | None, path: Path) -> np.ndarray | None:
    if region_column is None:
        return None
    colnames = list(units.colnames)
    if region_column == "auto":
        column = next((c for c in _REGION_CANDIDATES if c in colnames), None)
        if column is None:
            column = "location" if _has_electrodes(units) else None
        if column is None:
            raise InvalidArgumentError(
                f"region_column='auto' found no region column in the Units table of "
                f"{str(path)!r} (tried {list(_REGION_CANDIDATES)} and electrodes.location); "
                f"its columns are {colnames}"
            )
    else:
        column = region_column
    if column in colnames:
        return np.array([as_text(v) for v in units[column].data[:]], dtype=object)
    if "electrodes" in colnames:
        electrodes = units["electrodes"]
        table = electrodes.target.table
        if column not in table.colnames:
            raise InvalidArgumentError(
                f"region_column={region_column!r} is neither a Units column ({colnames}) nor an "
                f"electrodes column ({list(table.colnames)})"
            )
        values = np.asarray(table[column].data[:])
        rows = np.asarray(electrodes.target.data[:])
        starts = np.concatenate([[0], np.asarray(electrodes.data[:-1])]).astype(int)
        return np.array([as_text(values[rows[s]]) for s in starts], dtype=object)
    if "electrode_group" in colnames and column == "location":
        groups = units["electrode_group"].data[:]
        return np.array([as_text(g.location) for g in groups], dtype=object)
    raise InvalidArgumentError(
        f"region_column={region_column!r} is not a column of the Units table of {str(path)!r}; "
        f"its columns are {colnames}"
    )


def _has_electrodes(units: Any) -> bool:
    return "electrodes" in units.colnames or "electrode_group" in units.colnames


def _intervals_table(nwbfile: Any, intervals: str, path: Path) -> Any:
    available = dict(nwbfile.intervals or {})
    if intervals in available:
        return available[intervals]
    raise InvalidArgumentError(
        f"intervals={intervals!r}: NWB file {str(path)!r} has no such TimeIntervals table; "
        f"it has {sorted(available)}"
    )


def _intervals_frame(table: Any, stimulus_column: str, intervals: str, path: Path) -> pd.DataFrame:
    colnames = list(table.colnames)
    if stimulus_column not in colnames:
        raise InvalidArgumentError(
            f"stimulus_column={stimulus_column!r} is not a column of the {intervals!r} table in "
            f"{str(path)!r}; its columns are {colnames}"
        )
    columns: dict[str, Any] = {}
    for name in colnames:
        column = table[name]
        if type(column).__name__ != "VectorData":  # ragged or reference columns: not needed
            continue
        values = np.asarray(column.data[:])
        if values.ndim != 1:
            continue
        if values.dtype.kind in "OSU":
            values = np.array([as_text(v) for v in values], dtype=object)
        columns[name] = values
    if len(columns.get("start_time", ())) == 0:
        raise InvalidArgumentError(f"the {intervals!r} table in {str(path)!r} has no rows")
    return pd.DataFrame(columns)


def _obs_span(units: Any) -> tuple[float, float] | None:
    if "obs_intervals" not in units.colnames:
        return None
    spans = np.asarray(units["obs_intervals"].target.data[:], dtype=float).reshape(-1, 2)
    if spans.size == 0:
        return None
    return float(spans[:, 0].min()), float(spans[:, 1].max())


def _one_window_argument(window: Any, windows: Any) -> Any:
    if (window is None) == (windows is None):
        raise InvalidArgumentError(
            "give exactly one of window=(start, stop) or windows=[(start, stop), ...] "
            "(seconds relative to each trial's start_time)"
        )
    return window if window is not None else windows


