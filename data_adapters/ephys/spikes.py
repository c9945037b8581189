"""Spike times + trial table → firing-rate Datasets → RDMs, per region and time window.

The flow is ``spike trains`` → :func:`count_spikes` (``np.searchsorted`` per unit, vectorised over
every trial and window; no loop over spikes) → rates (trials × units) → optional ``sqrt`` /
``zscore`` transforms → one :class:`rsatoolbox.data.Dataset` per window → one RDM per window
(and per region when units carry a region label).

Counting convention: a spike at time ``t`` counts for a trial with onset ``o`` and window
``(start, stop)`` when ``o + start <= t < o + stop`` (half-open, so adjacent windows never count a
spike twice). The rate is that count divided by ``stop - start``.

Datasets carry the obs descriptors ``stimulus``, ``repeat`` (and ``run`` when given), the
channel descriptors ``unit`` (and ``region``), and the descriptors ``window`` (a label such as
``"[0.05, 0.35)"``), ``window_start``, ``window_stop``, plus ``subject`` / ``session`` when given.

NWB files: :func:`rdms_from_nwb`, :func:`datasets_from_nwb` and :func:`read_nwb_spikes` (defined in
:mod:`data_adapters.ephys.nwb`, importable from here too).

Examples
--------
>>> import numpy as np
>>> spikes = {"u0": np.array([0.1, 0.2, 1.1]), "u1": np.array([0.15, 1.05, 1.2, 1.3])}
>>> trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
>>> ds = dataset_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 2.0))
>>> ds.measurements.tolist()
[[4.0, 2.0], [2.0, 6.0]]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import RDMs
from rsatoolbox.rdm import concat as _concat_rdms

from brainrdl.errors import InvalidArgumentError, InvalidTypeError
from brainrdl.rsa.methods import CV_RDM_METHODS, SPIKE_RDM_METHODS
from brainrdl.validation import check_choice

__all__ = [
    "CV_METHODS",
    "METHODS",
    "as_spike_trains",
    "as_trial_table",
    "as_windows",
    "check_method_transform",
    "count_spikes",
    "dataset_from_spikes",
    "datasets_from_spikes",
    "rdms_from_datasets",
    "rdms_from_spikes",
]

METHODS: tuple[str, ...] = SPIKE_RDM_METHODS  # the one list: brainrdl.rsa.methods
CV_METHODS: tuple[str, ...] = CV_RDM_METHODS
_TRANSFORMS = ("sqrt", "zscore")
# show a progress bar when computing more windows than this
_PROGRESS_MIN_WINDOWS = 20


# ---------------------------------------------------------------------------------------------
# input normalisation
# ---------------------------------------------------------------------------------------------
def as_spike_trains(
    spike_times: Mapping[Any, Any] | Sequence[Any] | np.ndarray,
    spike_units: Sequence[Any] | np.ndarray | None = None,
    unit_ids: Sequence[Any] | np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalise spike times to a list of sorted float arrays (one per unit) and unit ids.

    Parameters
    ----------
    spike_times : mapping, sequence of arrays, or 1-d array
        ``{unit_id: times}``, a list of per-unit time arrays, or — with ``spike_units`` — one
        flat array of all spike times.
    spike_units : array-like, optional
        Unit id of each spike in a flat ``spike_times``.
    unit_ids : array-like, optional
        Ids for a list of per-unit arrays (default ``0 .. n_units - 1``); with ``spike_units``,
        the units to keep and their order (units without spikes included, so they can be
        reported); ignored for a mapping (its keys are the ids).

    Returns
    -------
    trains : list of numpy.ndarray
        Sorted spike times per unit (float64).
    ids : numpy.ndarray
        Unit ids, one per train.

    Examples
    --------
    >>> trains, ids = as_spike_trains(np.array([0.3, 0.1, 0.2]), spike_units=[1, 0, 1])
    >>> [t.tolist() for t in trains], ids.tolist()
    ([[0.1], [0.2, 0.3]], [0, 1])
    """
    if isinstance(spike_times, (str, bytes)) or not hasattr(spike_times, "__len__"):
        raise InvalidTypeError(
            "spike_times must be a dict {unit: times}, a list of per-unit time arrays or a flat "
            f"array with spike_units; got {type(spike_times).__name__}"
        )
    if spike_units is not None:
        times = np.asarray(spike_times, dtype=float)
        units = np.asarray(spike_units)
        if times.ndim != 1 or units.shape != times.shape:
            raise InvalidArgumentError(
                "spike_times and spike_units must be 1-d arrays of the same length when "
                f"spike_units is given; got shapes {times.shape} and {units.shape}"
            )
        ids = np.unique(units) if unit_ids is None else np.asarray(unit_ids)
        order = np.lexsort((times, units))  # group by unit, time-sorted inside each unit
        times, units = times[order], units[order]
        trains = [times[units == uid] for uid in ids]
        unknown = np.setdiff1d(np.unique(units), ids)
        if unknown.size:
            raise InvalidArgumentError(
                f"spike_units holds ids not in unit_ids: {_short(unknown.tolist())}")
    elif isinstance(spike_times, Mapping):
        ids = np.asarray(list(spike_times.keys()))
        trains = [np.asarray(v, dtype=float).ravel() for v in spike_times.values()]
    elif (
        isinstance(spike_times, np.ndarray)
        and spike_times.ndim == 1
        and (spike_times.dtype != object)
    ):
        raise InvalidArgumentError(
            "spike_times is one flat array: pass spike_units (the unit id of each spike) too, "
            "or give a dict / list of per-unit arrays"
        )
    else:
        try:
            trains = [np.asarray(v, dtype=float).ravel() for v in spike_times]
        except (TypeError, ValueError):
            raise InvalidTypeError(
                "spike_times must hold numeric spike times (seconds) per unit; got "
                f"{type(spike_times).__name__} with non-numeric entries"
            ) from None
        ids = np.arange(len(trains)) if unit_ids is None else np.asarray(unit_ids)
        if len(ids) != len(trains):
            raise InvalidArgumentError(
                f"unit_ids has {len(ids)} entries but spike_times has {len(trains)} units"
            )
    if len(trains) == 0:
        raise InvalidArgumentError("spike_times holds no units; expected at least one spike train")
    for uid, train in zip(ids.tolist(), trains):
        if not np.all(np.isfinite(train)):
            raise InvalidArgumentError(
                f"spike_times of unit {uid!r} contain NaN or infinite values")
    trains = [t if _is_sorted(t) else np.sort(t) for t in trains]
    return trains, ids


def as_trial_table(
    trials: pd.DataFrame | Mapping[str, Any],
    *,
    onset_column: str | None = None,
    stimulus_column: str = "stimulus",
    repeat_column: str = "repeat",
    run_column: str = "run",
) -> pd.DataFrame:
    """Normalise a trial table to columns ``onset``, ``stimulus``, ``repeat`` (and ``run``).

    Parameters
    ----------
    trials : pandas.DataFrame or mapping of column name -> values
        One row per trial.
    onset_column : str, optional
        Column with trial onsets (s). Default: ``"onset"``, else ``"start_time"`` (NWB).
    stimulus_column : str
        Column with the stimulus id of each trial.
    repeat_column : str
        Column with the presentation index; when absent it is derived as the occurrence count
        of each stimulus in onset order (0, 1, 2, ...).
    run_column : str
        Optional run / block column, kept as an obs descriptor when present.

    Returns
    -------
    pandas.DataFrame
        A new table with a fresh ``RangeIndex`` in the input row order.

    Examples
    --------
    >>> as_trial_table({"onset": [0.0, 1.0, 2.0], "stimulus": ["a", "b", "a"]})["repeat"].tolist()
    [0, 0, 1]
    """
    if isinstance(trials, Mapping):
        trials = pd.DataFrame(dict(trials))
    if not isinstance(trials, pd.DataFrame):
        raise InvalidTypeError(
            f"trials must be a pandas DataFrame or a dict of columns; got {type(trials).__name__}"
        )
    columns = list(trials.columns)
    if onset_column is None:
        onset_column = next((c for c in ("onset", "start_time") if c in columns), "onset")
    for arg, col in (("onset_column", onset_column), ("stimulus_column", stimulus_column)):
        if col not in columns:
            raise InvalidArgumentError(
                f"trials has no column {col!r} ({arg}); its columns are {columns}")
    if len(trials) == 0:
        raise InvalidArgumentError("trials is empty; expected at least one trial")
    onsets = pd.to_numeric(trials[onset_column], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(onsets)):
        bad = np.flatnonzero(~np.isfinite(onsets))
        raise InvalidArgumentError(
            f"trials column {onset_column!r} has non-numeric or NaN onsets in rows "
            f"{_short(bad.tolist())}"
        )
    out = pd.DataFrame({"onset": onsets, "stimulus": [as_text(s) for s in trials[stimulus_column]]})
    if repeat_column in columns:
        out["repeat"] = trials[repeat_column].to_numpy()
    else:
        order = np.argsort(onsets, kind="stable")
        rep = out.iloc[order].groupby("stimulus", sort=False).cumcount()
        out["repeat"] = rep.reindex(out.index).to_numpy(dtype=int)
    if run_column in columns:
        out["run"] = trials[run_column].to_numpy()
    return out


def as_windows(window: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Normalise one window ``(start, stop)`` or a sequence of them to a (n_windows, 2) array.

    Examples
    --------
    >>> as_windows((0.0, 0.1)).tolist()
    [[0.0, 0.1]]
    >>> as_windows([(0.0, 0.1), (0.1, 0.2)]).shape
    (2, 2)
    """
    try:
        arr = np.asarray(window, dtype=float)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(
            f"window must be (start, stop) or a sequence of (start, stop) pairs; got {window!r}"
        ) from err
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise InvalidArgumentError(
            "window must be (start, stop) or a sequence of (start, stop) pairs, in seconds "
            f"relative to trial onset; got an array of shape {np.shape(window)}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 1] <= arr[:, 0]):
        raise InvalidArgumentError(
            f"window needs finite start < stop in every pair; got {arr.tolist()}")
    return arr


def _is_single_window(window: Any) -> bool:
    return np.asarray(window, dtype=float).ndim == 1


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------
def count_spikes(
    spike_trains: Sequence[np.ndarray], onsets: np.ndarray, windows: np.ndarray
) -> np.ndarray:
    """Spike counts in ``[onset + start, onset + stop)`` per window, trial and unit.

    Parameters
    ----------
    spike_trains : sequence of numpy.ndarray
        Sorted spike times per unit (see :func:`as_spike_trains`).
    onsets : numpy.ndarray of shape (n_trials,)
        Trial onsets (s).
    windows : numpy.ndarray of shape (n_windows, 2)
        (start, stop) relative to onset (see :func:`as_windows`).

    Returns
    -------
    numpy.ndarray of shape (n_windows, n_trials, n_units), int64

    Examples
    --------
    >>> count_spikes([np.array([0.0, 0.5, 1.0])], np.array([0.0]), np.array([[0.0, 1.0]]))
    array([[[2]]])
    """
    onsets = np.asarray(onsets, dtype=float)
    windows = np.asarray(windows, dtype=float)
    lo = (onsets[None, :] + windows[:, :1]).ravel()  # (n_windows * n_trials,)
    hi = (onsets[None, :] + windows[:, 1:]).ravel()
    counts = np.empty((len(spike_trains), lo.size), dtype=np.int64)
    # one binary search per unit over all edges at once: O(n_edges log n_spikes), no spike loop;
    # side="left" on both edges gives the half-open [lo, hi)
    for u, train in enumerate(spike_trains):
        counts[u] = np.searchsorted(train, hi, side="left") - np.searchsorted(
            train, lo, side="left"
        )
    return counts.T.reshape(windows.shape[0], onsets.size, len(spike_trains))


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------
def datasets_from_spikes(
    spike_times: Mapping[Any, Any] | Sequence[Any] | np.ndarray,
    trials: pd.DataFrame | Mapping[str, Any],
    window: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    spike_units: Sequence[Any] | np.ndarray | None = None,
    unit_ids: Sequence[Any] | np.ndarray | None = None,
    unit_regions: Sequence[Any] | Mapping[Any, Any] | np.ndarray | None = None,
    onset_column: str | None = None,
    stimulus_column: str = "stimulus",
    repeat_column: str = "repeat",
    transform: str | Sequence[str] | None = None,
    measure: str = "rate",
    empty_units: str = "drop",
    recording: tuple[float, float] | None = None,
    subject: str | None = None,
    session: str | None = None,
) -> list[Dataset]:
    """Firing-rate Datasets (trials × units), one per window.

    Parameters
    ----------
    spike_times, spike_units, unit_ids
        Spike times, see :func:`as_spike_trains`.
    trials : pd.DataFrame | Mapping[str, Any]
        Trial table, see :func:`as_trial_table` (``onset_column``, ``stimulus_column``,
        ``repeat_column`` name its columns).
    window : (start, stop) or sequence of (start, stop)
        Counting window(s) in seconds relative to onset, half-open ``[start, stop)``.
    unit_regions : array-like or mapping unit id -> region, optional
        Region label per unit; stored as the channel descriptor ``region``.
    transform : {"sqrt", "zscore"} or a sequence of them, optional
        Applied in order after rates: ``"sqrt"`` stabilises Poisson variance, ``"zscore"``
        standardises each unit across trials (within each window).
    measure : {"rate", "count"}
        Store spikes per second (count / window length) or raw counts.
    empty_units : {"drop", "keep", "error"}
        What to do with units that have no spike in any window of any kept trial; they are
        always named in a warning (or the error).
    recording : (t_start, t_stop), optional
        Time span covered by the recording. Trials with a window outside it are excluded with a
        warning. Default: from 0 (or the first spike, if earlier) to the last spike of any
        unit.
    subject, session : str, optional
        Stored in each Dataset's descriptors.

    Returns
    -------
    list of rsatoolbox.data.Dataset
        One per window, in window order.

    Examples
    --------
    >>> spikes = [np.array([0.01, 0.06, 1.02]), np.array([0.07, 1.01, 1.08])]
    >>> trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    >>> dss = datasets_from_spikes(spikes, trials, [(0.0, 0.05), (0.05, 0.1)],
    ...                            measure="count", recording=(0, 2))
    >>> [d.descriptors["window"] for d in dss]
    ['[0, 0.05)', '[0.05, 0.1)']
    >>> dss[1].measurements.tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    check_choice("measure", measure, ("rate", "count"))
    check_choice("empty_units", empty_units, ("drop", "keep", "error"))
    transforms = _as_transforms(transform)
    trains, ids = as_spike_trains(spike_times, spike_units, unit_ids)
    regions = _as_regions(unit_regions, ids)
    table = as_trial_table(
        trials,
        onset_column=onset_column,
        stimulus_column=stimulus_column,
        repeat_column=repeat_column,
    )
    windows = as_windows(window)
    table = _drop_trials_outside(table, windows, trains, recording)

    counts = count_spikes(trains, table["onset"].to_numpy(), windows).astype(float)
    keep = _handle_empty_units(counts, ids, empty_units)
    counts, ids = counts[:, :, keep], ids[keep]
    regions = None if regions is None else regions[keep]

    obs = {"stimulus": table["stimulus"].to_numpy(), "repeat": table["repeat"].to_numpy()}
    if "run" in table:
        obs["run"] = table["run"].to_numpy()
    channels: dict[str, np.ndarray] = {"unit": ids}
    if regions is not None:
        channels["region"] = regions
    datasets = []
    for (start, stop), data in zip(windows, counts):
        values = data / (stop - start) if measure == "rate" else data
        values = _apply_transforms(values, transforms, (start, stop))
        descriptors: dict[str, Any] = {
            "window": _window_label(start, stop),
            "window_start": float(start),
            "window_stop": float(stop),
            "measure": measure,
        }
        if subject is not None:
            descriptors["subject"] = subject
        if session is not None:
            descriptors["session"] = session
        datasets.append(
            Dataset(
                measurements=values,
                descriptors=descriptors,
                obs_descriptors={k: v.copy() for k, v in obs.items()},
                channel_descriptors={k: v.copy() for k, v in channels.items()},
            )
        )
    return datasets


def dataset_from_spikes(
    spike_times: Mapping[Any, Any] | Sequence[Any] | np.ndarray,
    trials: pd.DataFrame | Mapping[str, Any],
    window: Sequence[float],
    **kwargs: Any,
) -> Dataset:
    """One firing-rate Dataset for a single window ``(start, stop)``.

    Same parameters as :func:`datasets_from_spikes` (``window`` must be one pair).

    Examples
    --------
    >>> ds = dataset_from_spikes([np.array([0.5, 1.5])], {"onset": [0.0, 1.0],
    ...                          "stimulus": ["a", "b"]}, (0.0, 1.0), recording=(0, 2))
    >>> ds.measurements.ravel().tolist()
    [1.0, 1.0]
    """
    if not _is_single_window(window):
        raise InvalidArgumentError(
            "window must be one (start, stop) pair for dataset_from_spikes; use "
            "datasets_from_spikes for a sequence of windows"
        )
    return datasets_from_spikes(spike_times, trials, window, **kwargs)[0]


# ---------------------------------------------------------------------------------------------
# RDMs
# ---------------------------------------------------------------------------------------------
def rdms_from_datasets(
    datasets: Dataset | Sequence[Dataset],
    *,
    method: str = "poisson",
    descriptor: str = "stimulus",
    cv_descriptor: str = "repeat",
    noise: np.ndarray | None = None,
    split_regions: bool | None = None,
    progress: bool | None = None,
) -> RDMs | dict[str, RDMs]:
    """RDMs (one per window) from rate Datasets, split by region when asked.

    Parameters
    ----------
    datasets : Dataset or sequence of Dataset
        As made by :func:`datasets_from_spikes`; patterns are averaged per ``descriptor``.
    method : {"poisson", "poisson_cv", "crossnobis", "correlation", "euclidean"}
        Dissimilarity, as in ``rsatoolbox.rdm.calc_rdm``.
    descriptor : str
        Obs descriptor that defines the RDM conditions (sorted as rsatoolbox sorts them).
    cv_descriptor : str
        Obs descriptor with the cross-validation folds for ``poisson_cv`` / ``crossnobis``.
    noise : numpy.ndarray, optional
        Noise precision (units × units) for ``crossnobis``; identity when omitted.
    split_regions : bool, optional
        One RDMs object per region (channel descriptor ``region``). Default: split when the
        datasets carry a ``region`` channel descriptor.
    progress : bool, optional
        Show a tqdm bar over windows; default when there are more than 20.

    Returns
    -------
    rsatoolbox.rdm.RDMs or dict of str -> RDMs
        One RDM per window (rdm descriptors ``window``, ``window_start``, ``window_stop``); a
        dict keyed by region when split.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ds = Dataset(rng.poisson(5.0, size=(8, 3)).astype(float),
    ...              obs_descriptors={"stimulus": list("abcdabcd"), "repeat": [0] * 4 + [1] * 4})
    >>> rdms_from_datasets(ds, method="poisson_cv").n_cond
    4
    """
    check_choice("method", method, METHODS)
    dss = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if not dss:
        raise InvalidArgumentError("datasets is empty; expected at least one Dataset")
    has_regions = "region" in dss[0].channel_descriptors
    if split_regions is None:
        split_regions = has_regions
    if split_regions and not has_regions:
        raise InvalidArgumentError(
            "split_regions=True but the datasets have no 'region' channel descriptor; "
            "give unit_regions (or region_column for NWB)"
        )
    for ds in dss:
        _check_dataset(ds, method, descriptor, cv_descriptor)
    if progress is None:
        progress = len(dss) > _PROGRESS_MIN_WINDOWS
    if not split_regions:
        return _rdms_over_windows(dss, method, descriptor, cv_descriptor, noise, progress)
    out: dict[str, RDMs] = {}
    for region in _unique_in_order(dss[0].channel_descriptors["region"]):
        parts = [_region_subset(ds, region) for ds in dss]
        region_noise = None
        if noise is not None:
            mask = np.asarray(dss[0].channel_descriptors["region"]) == region
            region_noise = np.asarray(noise)[np.ix_(mask, mask)]
        out[str(region)] = _rdms_over_windows(
            parts, method, descriptor, cv_descriptor, region_noise, progress
        )
    return out


def rdms_from_spikes(
    spike_times: Mapping[Any, Any] | Sequence[Any] | np.ndarray,
    trials: pd.DataFrame | Mapping[str, Any],
    window: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    method: str = "poisson",
    noise: np.ndarray | None = None,
    cv_descriptor: str = "repeat",
    progress: bool | None = None,
    **kwargs: Any,
) -> RDMs | dict[str, RDMs]:
    """Spike times + trials → RDMs in one call (one RDM per window, per region if labelled).

    Parameters
    ----------
    spike_times, trials, window
        As in :func:`datasets_from_spikes`.
    method : {"poisson", "poisson_cv", "crossnobis", "correlation", "euclidean"}
        ``poisson_cv`` and ``crossnobis`` cross-validate across ``cv_descriptor`` (repeats) and
        need every stimulus in at least two folds.
    noise, cv_descriptor, progress
        As in :func:`rdms_from_datasets`.
    **kwargs : Any
        Passed to :func:`datasets_from_spikes` (``unit_regions``, ``transform``, ...).

    Returns
    -------
    rsatoolbox.rdm.RDMs or dict of str -> RDMs
        A dict keyed by region when ``unit_regions`` is given.

    Examples
    --------
    >>> spikes = {0: np.array([0.1, 0.2, 2.1]), 1: np.array([1.1, 1.2, 1.3, 3.1])}
    >>> trials = {"onset": [0.0, 1.0, 2.0, 3.0], "stimulus": ["a", "b", "a", "b"]}
    >>> rdms = rdms_from_spikes(spikes, trials, (0.0, 0.5), method="euclidean",
    ...                         recording=(0, 4))
    >>> rdms.get_matrices().shape
    (1, 2, 2)
    """
    check_method_transform(method, kwargs.get("transform"))
    datasets = datasets_from_spikes(spike_times, trials, window, **kwargs)
    return rdms_from_datasets(
        datasets,
        method=method,
        cv_descriptor=cv_descriptor,
        noise=noise,
        split_regions=kwargs.get("unit_regions") is not None,
        progress=progress,
    )


def check_method_transform(method: str, transform: str | Sequence[str] | None) -> str:
    """Check ``method`` and that ``transform`` suits it, before any file is read.

    Poisson dissimilarities take logs of rates, so a z-scored (negative) input is refused.

    Examples
    --------
    >>> check_method_transform("poisson", "sqrt")
    'poisson'
    """
    check_choice("method", method, METHODS)
    if method in ("poisson", "poisson_cv") and "zscore" in _as_transforms(transform):
        raise InvalidArgumentError(
            f"method={method!r} needs non-negative rates but transform='zscore' makes them "
            "negative; use 'sqrt' or no transform, or a non-Poisson method"
        )
    return method


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _rdms_over_windows(
    dss: list[Dataset],
    method: str,
    descriptor: str,
    cv_descriptor: str,
    noise: np.ndarray | None,
    progress: bool,
) -> RDMs:
    iterator: Any = dss
    if progress:
        from tqdm import tqdm

        iterator = tqdm(dss, desc=f"{method} RDMs", unit="window")
    # brainrdl's engine, never rsatoolbox's: a broken import must fail loudly, since the
    # numbers differ (e.g. poisson_cv)
    from brainrdl.rsa.rdm import calc_rdm

    cv = cv_descriptor if method in CV_METHODS else None
    use_noise = noise if method == "crossnobis" else None
    rdms = [
        calc_rdm(ds, method=method, descriptor=descriptor, noise=use_noise, cv_descriptor=cv)
        for ds in iterator
    ]
    if len(rdms) == 1:
        return rdms[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # concat's "multiple pattern descriptors" notice
        return _concat_rdms(rdms, target_pdesc=descriptor)


def _check_dataset(ds: Dataset, method: str, descriptor: str, cv_descriptor: str) -> None:
    if descriptor not in ds.obs_descriptors:
        raise InvalidArgumentError(
            f"descriptor={descriptor!r} is not an obs descriptor of the dataset; it has "
            f"{list(ds.obs_descriptors)}"
        )
    conditions = np.asarray(ds.obs_descriptors[descriptor])
    if np.unique(conditions).size < 2:
        raise InvalidArgumentError(
            f"an RDM needs at least 2 distinct {descriptor!r} values; got {np.unique(conditions)}"
        )
    if method in ("poisson", "poisson_cv") and np.any(ds.measurements < 0):
        raise InvalidArgumentError(
            f"method={method!r} needs non-negative rates or counts; the dataset has negative "
            "values (z-scored?)"
        )
    if method not in CV_METHODS:
        return
    if cv_descriptor not in ds.obs_descriptors:
        raise InvalidArgumentError(
            f"cv_descriptor={cv_descriptor!r} is not an obs descriptor of the dataset; it has "
            f"{list(ds.obs_descriptors)}"
        )
    folds = np.asarray(ds.obs_descriptors[cv_descriptor])
    frame = pd.DataFrame({"c": conditions, "f": folds})
    n_folds = frame.groupby("c", sort=True)["f"].nunique()
    few = n_folds[n_folds < 2]
    if len(few):
        raise InvalidArgumentError(
            f"method={method!r} cross-validates across {cv_descriptor!r} and needs each "
            f"stimulus in at least 2 folds; these have fewer: {_short(list(few.index))}"
        )
    all_folds = np.unique(folds)
    incomplete = n_folds[n_folds < all_folds.size]
    if len(incomplete):
        raise InvalidArgumentError(
            f"method={method!r} needs every stimulus in every {cv_descriptor!r} fold "
            f"({all_folds.size} folds); these are missing from some: "
            f"{_short(list(incomplete.index))}; drop the incomplete folds or those stimuli"
        )


def _region_subset(ds: Dataset, region: Any) -> Dataset:
    mask = np.asarray(ds.channel_descriptors["region"]) == region
    descriptors = dict(ds.descriptors)
    descriptors["region"] = str(region)
    descriptors["roi"] = str(region)
    return Dataset(
        measurements=ds.measurements[:, mask],
        descriptors=descriptors,
        obs_descriptors={k: np.asarray(v).copy() for k, v in ds.obs_descriptors.items()},
        channel_descriptors={k: np.asarray(v)[mask] for k, v in ds.channel_descriptors.items()},
    )


def _drop_trials_outside(
    table: pd.DataFrame,
    windows: np.ndarray,
    trains: list[np.ndarray],
    recording: tuple[float, float] | None,
) -> pd.DataFrame:
    if recording is None:
        non_empty = [t for t in trains if t.size]
        if not non_empty:
            return table  # every unit empty: reported by _handle_empty_units
        # times are usually relative to the recording start (NWB), so the span starts at 0
        # unless spikes come earlier; the end is the last spike of any unit
        t_start = min(0.0, *(float(t[0]) for t in non_empty))
        t_stop = max(float(t[-1]) for t in non_empty)
        source = (
            "inferred: 0 (or the first spike) to the last spike; pass recording=(t_start, t_stop)"
        )
    else:
        rec = np.asarray(recording, dtype=float)
        if rec.shape != (2,) or not rec[0] < rec[1]:
            raise InvalidArgumentError(
                f"recording must be (t_start, t_stop) with t_start < t_stop; got {recording!r}"
            )
        t_start, t_stop = float(rec[0]), float(rec[1])
        source = "given by recording="
    onsets = table["onset"].to_numpy()
    first = onsets + windows[:, 0].min()
    last = onsets + windows[:, 1].max()
    outside = (first < t_start) | (last > t_stop)
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} of {len(table)} trials have a window outside the recording "
            f"[{t_start:g}, {t_stop:g}] s ({source}); excluded",
            UserWarning,
            stacklevel=3,
        )
        table = table.loc[~outside].reset_index(drop=True)
        if len(table) == 0:
            raise InvalidArgumentError(
                "no trials left: every trial's window lies outside the recording "
                f"[{t_start:g}, {t_stop:g}] s; check onsets, window and recording"
            )
    return table


def _handle_empty_units(counts: np.ndarray, ids: np.ndarray, policy: str) -> np.ndarray:
    """Boolean mask of units to keep; warns (or raises) naming units without spikes."""
    empty = counts.sum(axis=(0, 1)) == 0
    if not empty.any():
        return np.ones(ids.size, dtype=bool)
    names = _short(ids[empty].tolist())
    if empty.all():
        raise InvalidArgumentError(
            f"no unit has a spike in any window of any trial (units {names}); check the "
            "spike times, trial onsets and window"
        )
    message = (
        f"{int(empty.sum())} of {ids.size} units have no spike in any window of any trial: {names}"
    )
    if policy == "error":
        raise InvalidArgumentError(message + " (empty_units='error')")
    if policy == "drop":
        warnings.warn(message + "; dropped (empty_units='drop')", UserWarning, stacklevel=3)
        return ~empty
    warnings.warn(message + "; kept (empty_units='keep')", UserWarning, stacklevel=3)
    return np.ones(ids.size, dtype=bool)


def _as_regions(unit_regions: Any, ids: np.ndarray) -> np.ndarray | None:
    if unit_regions is None:
        return None
    if isinstance(unit_regions, Mapping):
        missing = [u for u in ids.tolist() if u not in unit_regions]
        if missing:
            raise InvalidArgumentError(f"unit_regions has no region for units {_short(missing)}")
        return np.array([str(unit_regions[u]) for u in ids.tolist()], dtype=object)
    regions = np.asarray([as_text(r) for r in unit_regions], dtype=object)
    if regions.shape != ids.shape:
        raise InvalidArgumentError(
            f"unit_regions must give one region per unit ({ids.size}); got {regions.size}"
        )
    return regions


def _as_transforms(transform: str | Sequence[str] | None) -> list[str]:
    if transform is None:
        return []
    items = [transform] if isinstance(transform, str) else list(transform)
    for item in items:
        check_choice("transform", item, _TRANSFORMS)
    return items


def _apply_transforms(values: np.ndarray, transforms: list[str], window: Any) -> np.ndarray:
    for name in transforms:
        if name == "sqrt":
            values = np.sqrt(values)
        else:  # zscore per unit across trials
            mean = values.mean(axis=0)
            std = values.std(axis=0)
            flat = std == 0
            if flat.any():
                warnings.warn(
                    f"transform='zscore': {int(flat.sum())} units are constant across trials in "
                    f"window {_window_label(*window)}; set to 0",
                    UserWarning,
                    stacklevel=4,
                )
            values = (values - mean) / np.where(flat, 1.0, std)
    return values


def _window_label(start: float, stop: float) -> str:
    return f"[{start:g}, {stop:g})"


def _unique_in_order(values: Any) -> list[Any]:
    return list(dict.fromkeys(np.asarray(values).tolist()))


def _is_sorted(x: np.ndarray) -> bool:
    return bool(x.size < 2 or np.all(x[1:] >= x[:-1]))


def as_text(value: Any) -> Any:
    """``value`` decoded when HDF5 / NWB gave it as bytes, else unchanged.

    Examples
    --------
    >>> as_text(b"V1"), as_text(3)
    ('V1', 3)
    """
    return value.decode() if isinstance(value, bytes) else value


def _short(items: list[Any], limit: int = 10) -> str:
    if len(items) <= limit:
        return str(items)
    return f"{items[:limit]} ... ({len(items)} in all)"
