"""Simulated MEG + EEG epochs of the demo digits, with a known time course of the geometry.

Each demo digit is one condition (event name = its stimulus id). Sensors: magnetometers (T)
and EEG electrodes (V), with noise of realistic size in each unit (tens of fT, microvolts), so
that the channel types differ by about 10^8 in scale. Two components, each a Hann-shaped
bump in time, are added to every trial:

* ``early`` (0.05-0.15 s): a random linear mixture of the pixel intensities (EVC-like);
* ``late`` (0.20-0.30 s): the digit class (IT-like category geometry).

Outside those windows the data are noise only: a cross-validated RDM is zero in expectation
there. Needs MNE (the ``[meeg]`` extra).

Examples
--------
>>> ep = make_demo_epochs(n_stimuli=10, n_repeats=2)
>>> len(ep), sorted(set(ep.get_channel_types()))
(20, ['eeg', 'mag'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from data_adapters.demo.study import load_demo_stimuli

__all__ = ["COMPONENTS", "demo_epochs_models", "make_demo_epochs", "write_demo_epochs"]

#: (start, stop) seconds of the two planted components.
COMPONENTS: dict[str, tuple[float, float]] = {"early": (0.05, 0.15), "late": (0.20, 0.30)}
_NOISE = {"mag": 50e-15, "eeg": 5e-6}  # per-channel noise SD in SI units (T, V)


def _features(n_stimuli: int, seed: int) -> tuple[dict[str, np.ndarray], Any]:
    """Stimulus-space features of the two components (shared by all subjects)."""
    stimuli = load_demo_stimuli(n_stimuli, seed)
    pixels = stimuli.images.reshape(n_stimuli, -1).astype(np.float64)
    pixels = (pixels - pixels.mean(0)) / (pixels.std(0) + 1e-3)
    rng = np.random.default_rng([seed, 5000])
    class_space = rng.standard_normal((10, 6))
    return {"early": pixels, "late": class_space[stimuli.labels]}, stimuli


def demo_epochs_models(n_stimuli: int = 20, seed: int = 0) -> Any:
    """RDMs of the two planted components' features (``layer`` descriptor: early, late).

    Squared euclidean distances between the stimulus features that drive each component: the
    geometry the sensors show in that component's window (up to the random sensor mixing).

    Examples
    --------
    >>> demo_epochs_models(10).rdm_descriptors["layer"]
    ['early', 'late']
    """
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, concat

    feats, stimuli = _features(n_stimuli, seed)
    rdms = []
    for name, f in feats.items():
        ds = Dataset(f, obs_descriptors={"stimulus": np.array(stimuli.stimulus_ids)})
        rdm = calc_rdm(ds, method="euclidean", descriptor="stimulus")
        rdm.rdm_descriptors["layer"] = [name]
        rdms.append(rdm)
    return concat(rdms, target_pdesc="stimulus")


def make_demo_epochs(
    n_stimuli: int = 20,
    n_repeats: int = 8,
    *,
    subject: int = 0,
    seed: int = 0,
    n_mag: int = 20,
    n_eeg: int = 20,
    sfreq: float = 100.0,
    tmin: float = -0.1,
    tmax: float = 0.4,
    snr: float = 0.5,
) -> Any:
    """Simulated ``mne.EpochsArray`` of one subject viewing the demo digits.

    Parameters
    ----------
    n_stimuli, n_repeats : int
        Conditions (>= 10 digits) and trials per condition (shuffled order).
    subject : int
        Subject index: its own sensor mixing and noise; the stimulus geometry is shared.
    seed : int
        Seed of the stimuli and the shared features.
    n_mag, n_eeg : int
        Number of magnetometers and EEG channels.
    sfreq, tmin, tmax : float
        Sampling rate (Hz) and epoch span (s).
    snr : float
        Peak amplitude of each component per channel (RMS over stimuli) relative to the noise
        SD.

    Returns
    -------
    mne.EpochsArray
        ``event_id`` maps stimulus ids to codes; ``metadata`` has columns ``stimulus``,
        ``digit`` and ``repeat``.

    Examples
    --------
    >>> ep = make_demo_epochs(n_stimuli=10, n_repeats=2, n_mag=3, n_eeg=2)
    >>> ep.get_data().shape
    (20, 5, 51)
    """
    import mne
    import pandas as pd

    feats, stimuli = _features(n_stimuli, seed)
    rng = np.random.default_rng([seed, 6000 + subject])
    ch_types = ["mag"] * n_mag + ["eeg"] * n_eeg
    n_chan = len(ch_types)
    times = np.arange(round(tmin * sfreq), round(tmax * sfreq) + 1) / sfreq
    unit = np.array([_NOISE[t] for t in ch_types])
    signal = np.zeros((n_stimuli, n_chan, times.size))
    for name, f in feats.items():
        start, stop = COMPONENTS[name]
        bump = np.where((times > start) & (times < stop),
                        np.sin(np.pi * (times - start) / (stop - start)) ** 2, 0.0)
        mixed = f @ rng.standard_normal((f.shape[1], n_chan))
        mixed -= mixed.mean(axis=0)  # the geometry only: no evoked response common to all
        # each component at amplitude snr (RMS over stimuli, per channel) at its peak
        mixed *= snr / np.sqrt((mixed**2).mean(axis=0)).clip(1e-12)
        signal += mixed[:, :, None] * bump[None, None, :]
    order = rng.permutation(np.repeat(np.arange(n_stimuli), n_repeats))
    data = (signal[order] + rng.standard_normal((order.size, n_chan, times.size))) \
        * unit[None, :, None]
    info = mne.create_info([f"{t.upper()}{i:03d}" for i, t in enumerate(ch_types)], sfreq,
                           ch_types)
    ids = stimuli.stimulus_ids
    event_id = {s: i + 1 for i, s in enumerate(ids)}
    events = np.column_stack([np.arange(order.size) * int(sfreq), np.zeros(order.size, int),
                              order + 1])
    repeat = np.zeros(order.size, dtype=int)
    for c in range(n_stimuli):
        where = np.flatnonzero(order == c)
        repeat[where] = np.arange(where.size)
    metadata = pd.DataFrame({"stimulus": [ids[c] for c in order],
                             "digit": stimuli.labels[order], "repeat": repeat})
    return mne.EpochsArray(data, info, events=events, tmin=times[0], event_id=event_id,
                           metadata=metadata, verbose="error")


def write_demo_epochs(path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write :func:`make_demo_epochs` to an ``-epo.fif`` file with MNE's writer.

    Examples
    --------
    >>> import os, tempfile
    >>> p = write_demo_epochs(os.path.join(tempfile.mkdtemp(), "sub-01-epo.fif"), n_stimuli=10,
    ...                       n_repeats=2)
    >>> p.name
    'sub-01-epo.fif'
    """
    path = Path(path)
    if not path.name.endswith(("-epo.fif", "_epo.fif")):
        raise ValueError(f"path {str(path)!r} must end with -epo.fif (MNE's naming convention)")
    make_demo_epochs(**kwargs).save(path, overwrite=True, verbose="error")
    return path
