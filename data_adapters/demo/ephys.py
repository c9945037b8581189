"""Simulated spiking units for the embedded demo study, as arrays or as an NWB file.

Each unit fires at a spontaneous rate all through the recording and, during a response window
after each stimulus onset, at an extra *driven* rate that is log-linear in the stimulus' latent
features: ``driven = gain_u * exp(kappa * standardized(latent @ w_u))``. The RDM of the true
response-window rates therefore follows the latent geometry, which is what the adapters must
recover. Trials are shown in blocks, one block per repeat with the stimuli in a fresh random
order, so ``repeat`` is a natural cross-validation fold.

Everything is deterministic from ``seed`` and runs offline.

Examples
--------
>>> import numpy as np
>>> latent = np.random.default_rng(0).normal(size=(4, 3))
>>> sim = simulate_spike_trains(latent, ["a", "b", "c", "d"], n_units=5, n_repeats=2)
>>> len(sim.spike_times), len(sim.trials)
(5, 8)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SimulatedSpikes", "simulate_spike_trains", "write_demo_nwb"]

# response window relative to stimulus onset, seconds (what the adapters should count in)
RESPONSE_WINDOW: tuple[float, float] = (0.05, 0.35)


@dataclass(frozen=True)
class SimulatedSpikes:
    """Spike trains, trial table and ground truth of one simulated session.

    Attributes
    ----------
    spike_times : list of numpy.ndarray
        Sorted spike times (seconds) per unit.
    unit_ids : numpy.ndarray
        Integer unit ids, ``0 .. n_units - 1``.
    unit_regions : numpy.ndarray
        Region label (str) per unit.
    trials : pandas.DataFrame
        One row per trial: ``start_time``, ``stop_time``, ``stimulus``, ``repeat``, in time order.
    rates : numpy.ndarray
        True mean firing rate (Hz) in ``response_window`` per (stimulus, unit), stimuli in the
        order of ``stimulus_ids``.
    stimulus_ids : list of str
        The stimulus ids, in the order of the rows of ``rates``.
    response_window : tuple of float
        (start, stop) of the driven response relative to trial onset, seconds.
    duration : float
        Length of the recording in seconds (spikes lie in ``[0, duration)``).

    Examples
    --------
    >>> sim = simulate_spike_trains(np.eye(3), ["x", "y", "z"], n_units=4, n_repeats=1)
    >>> sim.rates.shape
    (3, 4)
    """

    spike_times: list[np.ndarray]
    unit_ids: np.ndarray
    unit_regions: np.ndarray
    trials: pd.DataFrame
    rates: np.ndarray
    stimulus_ids: list[str]
    response_window: tuple[float, float]
    duration: float


def simulate_spike_trains(
    latent: np.ndarray | Mapping[str, np.ndarray],
    stimulus_ids: Sequence[str],
    *,
    seed: int = 0,
    n_units: int = 60,
    n_repeats: int = 6,
    regions: Sequence[str] = ("IT",),
    spontaneous_rate: float = 4.0,
    driven_rate: float = 20.0,
    tuning_strength: float = 0.8,
    trial_duration: float = 0.5,
    inter_trial_interval: float = 0.3,
) -> SimulatedSpikes:
    """Simulate Poisson-spiking units tuned log-linearly to latent stimulus features.

    Parameters
    ----------
    latent : numpy.ndarray of shape (n_stimuli, n_features), or mapping region -> such array
        Latent stimulus features. One array drives every region (each unit has its own random
        tuning weights); a mapping gives each region in ``regions`` its own geometry.
    stimulus_ids : sequence of str
        One id per stimulus (row of ``latent``); must be unique.
    seed : int
        Seed of the random generator; the same seed gives the same spikes.
    n_units : int
        Number of units, split as evenly as possible over ``regions``.
    n_repeats : int
        Number of presentations of each stimulus (one block of all stimuli per repeat).
    regions : sequence of str
        Region labels of the units.
    spontaneous_rate : float
        Median spontaneous rate (Hz); each unit draws its own around it.
    driven_rate : float
        Median extra rate (Hz) during the response window.
    tuning_strength : float
        Standard deviation, across stimuli, of the log of the driven rate.
    trial_duration, inter_trial_interval : float
        Trial length and mean gap between trials (seconds; the gap is jittered by +-20 %).

    Returns
    -------
    SimulatedSpikes

    Examples
    --------
    >>> sim = simulate_spike_trains(np.eye(3), ["x", "y", "z"], n_units=6, regions=("V1", "IT"))
    >>> sorted(set(sim.unit_regions.tolist()))
    ['IT', 'V1']
    """
    stimulus_ids = [str(s) for s in stimulus_ids]
    regions = [str(r) for r in regions]
    latents = _latents_by_region(latent, regions, len(stimulus_ids))
    if len(set(stimulus_ids)) != len(stimulus_ids):
        raise ValueError("stimulus_ids must be unique; got duplicates")
    for name, value in (("n_units", n_units), ("n_repeats", n_repeats)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not regions:
        raise ValueError("regions must name at least one region")
    rng = np.random.default_rng(seed)
    n_stim = len(stimulus_ids)

    # units split evenly over regions, in region order
    unit_regions = np.array([regions[i * len(regions) // n_units] for i in range(n_units)])
    spont = spontaneous_rate * rng.lognormal(0.0, 0.3, size=n_units)
    gain = driven_rate * rng.lognormal(0.0, 0.3, size=n_units)
    rates = np.empty((n_stim, n_units))
    for region in regions:
        cols = np.flatnonzero(unit_regions == region)
        z = latents[region]
        weights = rng.normal(size=(z.shape[1], cols.size))
        drive = z @ weights
        # standardise each unit's drive across stimuli so tuning_strength sets the log-rate spread
        drive = (drive - drive.mean(0)) / np.where(drive.std(0) > 0, drive.std(0), 1.0)
        rates[:, cols] = spont[cols] + gain[cols] * np.exp(tuning_strength * drive)

    # trial order: one shuffled block of all stimuli per repeat
    order = np.concatenate([rng.permutation(n_stim) for _ in range(n_repeats)])
    repeat = np.repeat(np.arange(n_repeats), n_stim)
    gaps = inter_trial_interval * rng.uniform(0.8, 1.2, size=order.size)
    starts = 1.0 + np.concatenate([[0.0], np.cumsum(trial_duration + gaps[:-1])])
    stops = starts + trial_duration
    duration = float(stops[-1] + 1.0)

    # spontaneous spikes over the whole recording
    spikes: list[list[np.ndarray]] = [[] for _ in range(n_units)]
    n_spont = rng.poisson(spont * duration)
    for u in range(n_units):
        spikes[u].append(rng.uniform(0.0, duration, size=n_spont[u]))
    # driven spikes: counts per (trial, unit), then uniform times inside each response window
    w0, w1 = RESPONSE_WINDOW
    driven = rates[order] - spont  # (n_trials, n_units)
    counts = rng.poisson(driven * (w1 - w0))
    for u in range(n_units):
        onsets = np.repeat(starts, counts[:, u])
        spikes[u].append(onsets + rng.uniform(w0, w1, size=onsets.size))
    spike_times = [np.sort(np.concatenate(parts)) for parts in spikes]

    trials = pd.DataFrame(
        {
            "start_time": starts,
            "stop_time": stops,
            "stimulus": [stimulus_ids[i] for i in order],
            "repeat": repeat,
        }
    )
    return SimulatedSpikes(
        spike_times=spike_times,
        unit_ids=np.arange(n_units),
        unit_regions=unit_regions,
        trials=trials,
        rates=rates,
        stimulus_ids=stimulus_ids,
        response_window=RESPONSE_WINDOW,
        duration=duration,
    )


def write_demo_nwb(
    path: str | Path,
    latent: np.ndarray | Mapping[str, np.ndarray],
    stimulus_ids: Sequence[str],
    *,
    seed: int = 0,
    n_units: int = 60,
    n_repeats: int = 6,
    regions: Sequence[str] = ("IT",),
    subject_id: str = "sim01",
) -> Path:
    """Simulate a session with :func:`simulate_spike_trains` and write it as an NWB file.

    The file holds a Units table (``spike_times`` and a ``location`` column with the region)
    and a trials table (``start_time``, ``stop_time``, ``stimulus``, ``repeat``). Its content is
    deterministic from ``seed`` (creation dates are fixed too).

    Parameters
    ----------
    path : str or pathlib.Path
        File to write (parent folders are created); conventionally ending in ``.nwb``.
    latent, stimulus_ids, seed, n_units, n_repeats, regions
        As in :func:`simulate_spike_trains`.
    subject_id : str
        Subject id stored in the file.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import tempfile, os
    >>> out = write_demo_nwb(os.path.join(tempfile.mkdtemp(), "demo.nwb"), np.eye(3),
    ...                      ["x", "y", "z"], n_units=4, n_repeats=2)
    >>> out.suffix
    '.nwb'
    """
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.misc import Units

    sim = simulate_spike_trains(
        latent, stimulus_ids, seed=seed, n_units=n_units, n_repeats=n_repeats, regions=regions
    )
    when = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)
    nwbfile = NWBFile(
        session_description="brainrdl demo: simulated Poisson units tuned to stimulus features",
        identifier=f"brainrdl-demo-ephys-seed{seed}",
        session_start_time=when,
        file_create_date=[when],
        session_id=f"seed{seed}",
        subject=Subject(subject_id=subject_id, species="Macaca mulatta", description="simulated"),
    )
    # whole columns as arrays: pynwb's row-by-row add_unit/add_trial stores Python lists, which
    # hdmf converts element by element on write (seconds instead of a fraction of one)
    n_trials = len(sim.trials)
    nwbfile.trials = TimeIntervals(
        name="trials",
        description="stimulus presentations",
        id=ElementIdentifiers(name="id", data=np.arange(n_trials)),
        columns=[
            VectorData(
                name="start_time",
                description="trial onset (s)",
                data=sim.trials["start_time"].to_numpy(float),
            ),
            VectorData(
                name="stop_time",
                description="trial end (s)",
                data=sim.trials["stop_time"].to_numpy(float),
            ),
            VectorData(
                name="stimulus",
                description="stimulus id shown on this trial",
                data=np.array(sim.trials["stimulus"].astype(str), dtype=object),
            ),
            VectorData(
                name="repeat",
                description="presentation index of the stimulus",
                data=sim.trials["repeat"].to_numpy(np.int64),
            ),
        ],
    )
    spike_times = VectorData(
        name="spike_times", description="spike times (s)", data=np.concatenate(sim.spike_times)
    )
    nwbfile.units = Units(
        name="units",
        description="simulated Poisson units",
        id=ElementIdentifiers(name="id", data=sim.unit_ids.astype(np.int64)),
        columns=[
            spike_times,
            VectorIndex(
                name="spike_times_index",
                data=np.cumsum([len(t) for t in sim.spike_times]),
                target=spike_times,
            ),
            VectorData(
                name="location",
                description="brain region of the unit",
                data=np.array(sim.unit_regions.astype(str), dtype=object),
            ),
        ],
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwbfile)
    return path


def _latents_by_region(
    latent: np.ndarray | Mapping[str, np.ndarray], regions: list[str], n_stim: int
) -> dict[str, np.ndarray]:
    """Validate ``latent`` and return a (n_stimuli, n_features) float array per region."""
    if isinstance(latent, Mapping):
        missing = [r for r in regions if r not in latent]
        if missing:
            raise ValueError(f"latent has no array for regions {missing}; got {list(latent)}")
        items = {r: latent[r] for r in regions}
    else:
        items = dict.fromkeys(regions, latent)
    out = {}
    for region, value in items.items():
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != n_stim:
            raise ValueError(
                f"latent (region {region!r}) must have shape (n_stimuli={n_stim}, n_features); "
                f"got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"latent (region {region!r}) contains NaN or infinite values")
        out[region] = arr
    return out
