"""MNE epochs (MEG / EEG) → time-resolved RDMs, crossnobis with per-time-point noise.

What is done, in order:

1. **Reading.** An ``mne.Epochs`` (any subclass, e.g. ``EpochsArray``) or a path to an
   ``-epo.fif`` file (read with ``mne.read_epochs``). Channels are picked with MNE's ``picks``
   (default ``"data"``: MEG, EEG, sEEG, ECoG ...; channels marked bad are excluded).
2. **Time.** ``times=(tmin, tmax)`` keeps that span; ``window=None`` gives one RDM per sample,
   ``window=w`` averages samples in windows of ``w`` seconds every ``step`` seconds (default
   ``step=w``). The ``time`` rdm descriptor is the sample time or the window centre.
3. **Channel types.** MEG magnetometers (T), gradiometers (T/m) and EEG (V) differ by orders of
   magnitude, so without care the largest unit decides every distance. With
   ``scale="channel_type"`` (default) each channel type is divided by its pooled noise standard
   deviation (the root mean square of the single-trial residuals around the condition means,
   over that type's channels, trials and the analysed samples): after it every type has unit
   noise variance per channel and contributes by its signal-to-noise ratio, not its unit.
4. **Noise whitening.** For mahalanobis / crossnobis, ``noise="epochs"`` (default) estimates a
   noise precision at every time point (or window) from the residuals there (trials minus
   their condition mean; degrees of freedom ``n_trials - n_conditions``), with the
   Schäfer-Strimmer shrinkage towards the diagonal of ``rsatoolbox.data.noise
   .prec_from_residuals``. ``noise="pooled"`` uses one precision from the residuals of all
   time points; ``None`` the identity (after the channel-type scaling); an array is used as
   given (channels after picking).
5. **Cross-validation.** Crossnobis folds: the k-th trial of each condition goes to fold
   ``k % n_folds`` (default ``n_folds`` = the smallest number of trials of a condition, i.e.
   one trial per condition and fold when balanced); each fold's condition means are compared
   with those of the other folds (:func:`brainrdl.calc_rdm`, rsatoolbox's numbers).

rsatoolbox's own MNE path (``rsatoolbox.io.mne.dataset_from_epochs`` → ``TemporalDataset`` →
``rsatoolbox.rdm.calc_rdm_movie``) gives the same RDMs for the non-cross-validated methods on
the same (scaled) data; it takes one precision for all time points, which is why the
per-time-point noise here is computed separately (tests check both against it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_adapters.fmri.noise import precision_from_residuals

__all__ = ["METHODS", "EpochsData", "rdms_from_epochs", "read_epochs_data"]

METHODS = ("euclidean", "correlation", "mahalanobis", "crossnobis")


class EpochsData:
    """Picked, time-selected, windowed and scaled epochs: what the RDMs are computed from.

    Attributes
    ----------
    data : numpy.ndarray
        ``(n_trials, n_channels, n_times)`` after windowing and channel-type scaling.
    conditions : numpy.ndarray
        Condition label of each trial.
    times : numpy.ndarray
        Time (s) of each sample, or the centre of each window.
    windows : list of tuple
        ``(start, stop)`` seconds of each window (a sample's own time twice without windows).
    ch_names, ch_types : list of str
        Channels kept and their MNE types.
    scales : dict
        Channel type -> the noise standard deviation it was divided by (1.0 when not scaled).
    residuals : numpy.ndarray
        ``data`` minus each trial's condition mean (same shape; the noise samples).

    Examples
    --------
    >>> e = EpochsData(np.zeros((2, 1, 3)), np.array(["a", "b"]), np.arange(3.0),
    ...                [(0, 0), (1, 1), (2, 2)], ["c"], ["eeg"], {"eeg": 1.0})
    >>> e.data.shape
    (2, 1, 3)
    """

    def __init__(self, data, conditions, times, windows, ch_names, ch_types, scales,
                 residuals=None) -> None:
        self.data = data
        self.residuals = residuals
        self.conditions = conditions
        self.times = times
        self.windows = windows
        self.ch_names = ch_names
        self.ch_types = ch_types
        self.scales = scales


def _load(epochs: Any) -> Any:
    import mne

    if isinstance(epochs, (str, os.PathLike)):
        path = Path(epochs)
        if not path.is_file():
            raise FileNotFoundError(f"epochs: no such file {str(path)!r}; expected an MNE "
                                    "epochs file (*-epo.fif)")
        if not path.name.endswith((".fif", ".fif.gz")):
            raise ValueError(f"epochs file {str(path)!r} is not a .fif file; expected an MNE "
                             "epochs file written by Epochs.save (*-epo.fif)")
        try:
            return mne.read_epochs(path, preload=True, verbose="error")
        except Exception as err:  # MNE raises several types for a file that is not epochs
            raise ValueError(f"epochs file {str(path)!r} could not be read as MNE epochs: "
                             f"{err}") from err
    if isinstance(epochs, mne.BaseEpochs):
        return epochs
    raise TypeError(f"epochs must be an mne.Epochs or a path to an -epo.fif file; got "
                    f"{type(epochs).__name__}")


def _condition_labels(epochs: Any, conditions: Any) -> np.ndarray:
    n = len(epochs)
    if isinstance(conditions, str):
        if conditions == "event":
            names = {code: name for name, code in epochs.event_id.items()}
            return np.array([names.get(c, str(c)) for c in epochs.events[:, 2]], dtype=object)
        if epochs.metadata is not None and conditions in epochs.metadata.columns:
            return np.asarray(epochs.metadata[conditions].to_numpy())
        cols = [] if epochs.metadata is None else list(epochs.metadata.columns)
        raise ValueError(f"conditions={conditions!r} is neither 'event' nor a column of "
                         f"epochs.metadata (columns: {cols})")
    labels = np.asarray(conditions)
    if labels.shape != (n,):
        raise ValueError(f"conditions must be 'event', a metadata column, or one label per "
                         f"epoch ({n}); got shape {labels.shape}")
    return labels


def _windows(times: np.ndarray, window: float | None, step: float | None):
    if window is None:
        if step is not None:
            raise ValueError("step is only used with window=; give window= (seconds) too")
        return [(np.array([i]), float(t), (float(t), float(t))) for i, t in enumerate(times)]
    if not (isinstance(window, (int, float)) and window > 0):
        raise ValueError(f"window must be a positive number of seconds; got {window!r}")
    step = window if step is None else step
    if not (isinstance(step, (int, float)) and step > 0):
        raise ValueError(f"step must be a positive number of seconds; got {step!r}")
    dt = float(times[1] - times[0]) if len(times) > 1 else 0.0
    out = []
    k = 0
    start = float(times[0])
    # a window ends at the last sample's end (times[-1] + dt); 1e-9 s tolerance for rounding
    while start + window <= times[-1] + dt + 1e-9 or not out:
        idx = np.flatnonzero((times >= start - 1e-9) & (times < start + window - 1e-9))
        if idx.size == 0:
            raise ValueError(f"window={window} s holds no sample (sampling step {dt:g} s)")
        # times rounded to the nanosecond: sums of float seconds would print as 0.07500000001
        out.append((idx, round(start + window / 2.0, 9),
                    (round(start, 9), round(start + window, 9))))
        k += 1
        start = float(times[0]) + k * step
    return out


def read_epochs_data(
    epochs: Any,
    *,
    conditions: Any = "event",
    times: Sequence[float] | None = None,
    window: float | None = None,
    step: float | None = None,
    picks: Any = "data",
    scale: str | None = "channel_type",
) -> EpochsData:
    """Read, pick, crop, window and scale epochs (steps 1-3 of the module docstring).

    Parameters
    ----------
    epochs, conditions, times, window, step, picks, scale
        As in :func:`rdms_from_epochs`.

    Returns
    -------
    EpochsData

    Examples
    --------
    >>> from data_adapters.demo.meeg import make_demo_epochs
    >>> ep = make_demo_epochs(n_stimuli=10, n_repeats=4)
    >>> d = read_epochs_data(ep, window=0.05)
    >>> d.data.shape[:2], sorted(d.scales)
    ((40, 40), ['eeg', 'mag'])
    """
    epochs = _load(epochs)
    labels = _condition_labels(epochs, conditions)
    try:
        picked = epochs.copy().pick(picks, exclude="bads")
    except ValueError as err:
        raise ValueError(f"picks={picks!r} selects no usable channel: {err}") from err
    t = np.asarray(picked.times, dtype=float)
    keep = np.ones(t.size, dtype=bool)
    if times is not None:
        if len(times) != 2 or not times[0] < times[1]:
            raise ValueError(f"times must be (tmin, tmax) with tmin < tmax; got {times!r}")
        keep = (t >= times[0] - 1e-12) & (t <= times[1] + 1e-12)
        if not keep.any():
            raise ValueError(f"times={tuple(times)} holds no sample; the epochs span "
                             f"{t[0]:g} to {t[-1]:g} s")
    raw = np.asarray(picked.get_data(copy=False)[:, :, keep], dtype=np.float64)
    t = t[keep]
    if not np.isfinite(raw).all():
        raise ValueError("epochs data contain NaN or infinite values")
    wins = _windows(t, window, step)
    if window is None:
        data = raw
    else:
        data = np.stack([raw[:, :, idx].mean(axis=2) for idx, _, _ in wins], axis=2)
    ch_types = list(picked.get_channel_types())
    scales: dict[str, float] = {}
    if scale not in ("channel_type", None):
        raise ValueError(f"scale={scale!r}; expected 'channel_type' or None")
    resid = _residuals(data, labels)
    for kind in sorted(set(ch_types)):
        rows = np.array([c == kind for c in ch_types])
        sd = float(np.sqrt(np.mean(resid[:, rows] ** 2))) if scale else 1.0
        if scale and not sd > 0:
            raise ValueError(f"channel type {kind!r} has no trial-to-trial variance; cannot "
                             "scale it (pass scale=None or drop those channels with picks=)")
        data[:, rows] /= sd
        resid[:, rows] /= sd
        scales[kind] = sd
    return EpochsData(data, labels, np.array([c for _, c, _ in wins]),
                      [w for _, _, w in wins], list(picked.ch_names), ch_types, scales, resid)


def _residuals(data: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Trials minus their condition mean, at every channel and time point."""
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    # condition means as one matrix product (np.add.at is an unbuffered loop, ~10x slower)
    onehot = np.zeros((inverse.size, inverse.max() + 1))
    onehot[np.arange(inverse.size), inverse] = 1.0
    flat = data.reshape(data.shape[0], -1)
    means = (onehot.T @ flat) / onehot.sum(axis=0)[:, None]
    return (flat - means[inverse]).reshape(data.shape)


def rdms_from_epochs(
    epochs: Any,
    *,
    conditions: Any = "event",
    times: Sequence[float] | None = None,
    window: float | None = None,
    step: float | None = None,
    method: str = "crossnobis",
    picks: Any = "data",
    noise: Any = "epochs",
    scale: str | None = "channel_type",
    n_folds: int | None = None,
    subject: str | None = None,
    progress: bool = False,
) -> Any:
    """Time-resolved RDMs from MEG / EEG epochs: one RDM per time point or window.

    Parameters
    ----------
    epochs : mne.Epochs or path
        Epochs in memory or an ``-epo.fif`` file.
    conditions : "event", str or array-like, default "event"
        RDM conditions: the event names (``epochs.event_id``), a column of
        ``epochs.metadata``, or one label per epoch.
    times : (tmin, tmax), optional
        Time span to analyse (s, inclusive); default the whole epoch.
    window, step : float, optional
        Average samples in windows of ``window`` seconds every ``step`` seconds (default
        ``step=window``); default one RDM per sample.
    method : {"euclidean", "correlation", "mahalanobis", "crossnobis"}, default "crossnobis"
        Dissimilarity (rsatoolbox's definitions and scalings).
    picks : str, list or None, default "data"
        Channels, as MNE's ``picks`` (e.g. ``"meg"``, ``"eeg"``, ``["mag", "eeg"]``).
    noise : "epochs", "pooled", None or array, default "epochs"
        Noise precision for mahalanobis / crossnobis (see the module docstring).
    scale : "channel_type" or None, default "channel_type"
        Divide each channel type by its noise standard deviation first.
    n_folds : int, optional
        Crossnobis folds (default: the smallest trial count of a condition).
    subject : str, optional
        Stored as the ``subject`` rdm descriptor of every RDM (for stacking subjects).
    progress : bool, default False
        tqdm bar over time points.

    Returns
    -------
    rsatoolbox.rdm.RDMs
        One RDM per time point / window, rdm descriptors ``time`` (s; window centre),
        ``window`` (``"[start, stop)"`` in s) and ``subject`` when given; pattern descriptors
        ``conds`` and ``stimulus``, both the condition labels (sorted; ``stimulus`` lets
        :func:`brainrdl.compare_layers` align model RDMs); descriptors ``channel_types``,
        ``n_channels``, ``noise``.

    Examples
    --------
    >>> from data_adapters.demo.meeg import make_demo_epochs
    >>> ep = make_demo_epochs(n_stimuli=10, n_repeats=4)
    >>> rdms = rdms_from_epochs(ep, window=0.05)
    >>> rdms.dissimilarity_measure, rdms.n_cond, rdms.rdm_descriptors["time"][:2]
    ('crossnobis', 10, [-0.075, -0.025])
    """
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import concat

    from brainrdl.rsa.rdm import calc_rdm

    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; expected one of {list(METHODS)}")
    ep = read_epochs_data(epochs, conditions=conditions, times=times, window=window, step=step,
                          picks=picks, scale=scale)
    data, labels = ep.data, ep.conditions
    uniq, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if uniq.size < 2:
        raise ValueError(f"the epochs have {uniq.size} condition(s) ({list(uniq)}); an RDM "
                         "needs at least 2")
    n_trials, n_chan, n_times = data.shape
    obs: dict[str, Any] = {"conds": labels}
    if method == "crossnobis":
        n_folds = int(counts.min()) if n_folds is None else n_folds
        if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= counts.min():
            raise ValueError(
                f"n_folds={n_folds!r}: crossnobis needs 2 to {counts.min()} folds (every "
                f"condition must have a trial in every fold; the smallest condition has "
                f"{counts.min()} trial(s))"
            )
        occurrence = np.empty(n_trials, dtype=np.int64)
        for c in range(uniq.size):
            where = np.flatnonzero(inverse == c)
            occurrence[where] = np.arange(where.size)
        obs["fold"] = occurrence % n_folds
    precisions = _precisions(noise, method, ep.residuals, n_trials - uniq.size, n_chan)
    steps: Any = range(n_times)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="time points", unit="t", leave=False)
    rdms = []
    for k in steps:
        ds = Dataset(data[:, :, k], obs_descriptors=obs)
        kwargs: dict[str, Any] = {"method": method, "descriptor": "conds"}
        if method in ("mahalanobis", "crossnobis"):
            kwargs["noise"] = precisions if precisions is None or precisions.ndim == 2 \
                else precisions[k]
        if method == "crossnobis":
            kwargs["cv_descriptor"] = "fold"
        rdm = calc_rdm(ds, **kwargs)
        rdm.rdm_descriptors["time"] = [float(ep.times[k])]
        start, stop = ep.windows[k]
        rdm.rdm_descriptors["window"] = [f"[{start:g}, {stop:g})"]
        # the precision differs per time point: kept out of the stack (descriptors say which)
        rdm.rdm_descriptors.pop("noise", None)
        rdm.descriptors.pop("noise", None)
        rdms.append(rdm)
    out = concat(rdms, target_pdesc="conds")
    for key in ("time", "window"):
        out.rdm_descriptors[key] = [r.rdm_descriptors[key][0] for r in rdms]
        out.descriptors.pop(key, None)
    if subject is not None:
        out.rdm_descriptors["subject"] = [str(subject)] * out.n_rdm
    out.pattern_descriptors["stimulus"] = list(out.pattern_descriptors["conds"])
    out.descriptors["noise"] = noise if isinstance(noise, str) or noise is None else "array"
    out.descriptors["channel_types"] = sorted(set(ep.ch_types))
    out.descriptors["n_channels"] = n_chan
    return out


def _precisions(noise: Any, method: str, resid: np.ndarray, dof: int,
                n_chan: int) -> np.ndarray | None:
    if method not in ("mahalanobis", "crossnobis"):
        if noise not in (None, "epochs"):
            raise ValueError(f"noise is only used by mahalanobis and crossnobis, not {method!r}")
        return None
    if noise is None:
        return None
    if isinstance(noise, str):
        if noise not in ("epochs", "pooled"):
            raise ValueError(f"noise={noise!r}; expected 'epochs', 'pooled', None or an "
                             "(n_channels, n_channels) precision")
        if dof < 1:
            raise ValueError("the epochs have no residual degrees of freedom (one trial per "
                             "condition); pass noise=None or an array")
        if noise == "pooled":
            flat = resid.transpose(0, 2, 1).reshape(-1, n_chan)
            return precision_from_residuals(flat, dof=dof * resid.shape[2])
        return np.stack([precision_from_residuals(resid[:, :, k], dof=dof)
                         for k in range(resid.shape[2])])
    prec = np.asarray(noise, dtype=float)
    if prec.shape != (n_chan, n_chan):
        raise ValueError(f"noise must be ({n_chan}, {n_chan}) for the {n_chan} picked "
                         f"channels; got {prec.shape}")
    return prec
