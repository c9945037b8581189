"""Model layers against time-resolved brain RDMs: a layer × time table and its curves.

"When does the brain look like layer k?" The brain RDMs (e.g. from MEG / EEG epochs, one RDM
per time point and subject) are split by their ``time`` rdm descriptor, and each time point is
treated as a region of :func:`brainrdl.compare_layers`: the same comparison methods,
leave-one-subject-out noise ceilings and bootstrap CIs, one row per layer × time point.

Examples
--------
>>> import numpy as np, rsatoolbox
>>> rng = np.random.default_rng(0)
>>> layers = rsatoolbox.rdm.RDMs(rng.random((2, 15)), rdm_descriptors={"layer": ["a", "b"]})
>>> brain = rsatoolbox.rdm.RDMs(rng.random((6, 15)), rdm_descriptors={
...     "time": [0.0, 0.0, 0.1, 0.1, 0.2, 0.2], "subject": [1, 2] * 3})
>>> t = compare_layers_over_time(layers, brain)
>>> t.shape[0], sorted(set(t["time"]))
(6, [0.0, 0.1, 0.2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from brainrdl.analysis.layer_comparison import compare_layers

__all__ = ["compare_layers_over_time", "plot_layers_over_time"]


def _as_rdms(brain_rdms: Any) -> Any:
    from rsatoolbox.rdm import RDMs, concat

    if isinstance(brain_rdms, RDMs):
        return brain_rdms
    if isinstance(brain_rdms, Sequence) and brain_rdms and all(
        isinstance(r, RDMs) for r in brain_rdms
    ):
        first = brain_rdms[0].pattern_descriptors
        target = "stimulus" if "stimulus" in first else None
        return concat(list(brain_rdms), target_pdesc=target)
    raise TypeError("brain_rdms must be rsatoolbox RDMs with a time rdm descriptor, or a list of "
                    f"them (e.g. one per subject); got {type(brain_rdms).__name__}")


def compare_layers_over_time(
    layers: Any,
    brain_rdms: Any,
    *,
    time_descriptor: str = "time",
    subject_descriptor: str | None = "auto",
    method: str = "corr",
    n_bootstrap: int = 0,
    bootstrap: str = "stimuli",
    seed: int | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Compare model layers with brain RDMs at every time point: one row per layer × time.

    Parameters
    ----------
    layers : Any
        rsatoolbox ``RDMs`` with a ``layer`` rdm descriptor, or a model (then pass ``stimuli=``
        and ``layer_names=``; its layer RDMs are computed once), as in
        :func:`brainrdl.compare_layers`.
    brain_rdms : Any
        rsatoolbox ``RDMs`` (or a list of them, e.g. one per subject) with a ``time_descriptor``
        rdm descriptor: several RDMs at one time are subjects / sessions.
    time_descriptor : str, default "time"
        The rdm descriptor holding each RDM's time.
    subject_descriptor : str or None, default "auto"
        Groups of the noise ceiling and subject bootstrap: ``"auto"`` uses ``"subject"`` when
        the brain RDMs have it, else each RDM is its own group.
    method, n_bootstrap, bootstrap, seed, **kwargs
        As in :func:`brainrdl.compare_layers` (``stimuli``, ``layer_names``, ``ci``,
        ``device`` ...).

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`brainrdl.compare_layers` with ``time`` (float, sorted) in place of
        ``region``; ``best`` marks the best layer at each time, ``peak`` the time at which
        each layer is most similar.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> rng = np.random.default_rng(1)
    >>> layers = rsatoolbox.rdm.RDMs(rng.random((2, 10)), rdm_descriptors={"layer": ["a", "b"]})
    >>> brain = rsatoolbox.rdm.RDMs(np.vstack([layers.dissimilarities[0], rng.random(10)]),
    ...                             rdm_descriptors={"time": [0.1, 0.2]})
    >>> t = compare_layers_over_time(layers, brain)
    >>> float(t.loc[t["layer"] == "a", "peak"].iloc[0])
    0.1
    """
    import torch

    from brainrdl.analysis.layer_comparison import layer_vectors

    brain = _as_rdms(brain_rdms)
    if time_descriptor not in brain.rdm_descriptors:
        raise ValueError(f"brain_rdms has no {time_descriptor!r} rdm descriptor (it has "
                         f"{sorted(brain.rdm_descriptors)}); pass time_descriptor=")
    if isinstance(layers, torch.nn.Module):
        from rsatoolbox.rdm import RDMs

        names, x, ids = layer_vectors(
            layers, kwargs.pop("stimuli", None), kwargs.pop("layer_names", None),
            kwargs.get("device"), kwargs.pop("extract_kwargs", None),
            stimulus_ids=kwargs.pop("stimulus_ids", None),
        )  # fmt: skip
        pdesc = {"stimulus": list(ids)} if ids is not None else None
        layers = RDMs(x, rdm_descriptors={"layer": names}, pattern_descriptors=pdesc)
    if subject_descriptor == "auto":
        subject_descriptor = "subject" if "subject" in brain.rdm_descriptors else None
    times = np.asarray(brain.rdm_descriptors[time_descriptor], dtype=float)
    uniq = np.unique(times)
    # each time point is a "region" of compare_layers, keyed by its index into uniq
    per_time: Mapping[str, Any] = {str(i): brain[np.flatnonzero(times == t)]
                                   for i, t in enumerate(uniq)}
    table = compare_layers(layers, per_time, method=method, subject_descriptor=subject_descriptor,
                           n_bootstrap=n_bootstrap, bootstrap=bootstrap, seed=seed, **kwargs)
    table.insert(1, "time", uniq[table["region"].astype(int).to_numpy()])
    table = table.drop(columns="region").sort_values(["layer", "time"], kind="stable")
    pooled = table if "subject" not in table else table[table["subject"] == "all"]
    peaks = pooled.loc[pooled.groupby("layer")["similarity"].idxmax(), ["layer", "time"]]
    table["peak"] = table["layer"].map(dict(zip(peaks["layer"], peaks["time"])))
    return table.reset_index(drop=True)


def plot_layers_over_time(
    table: pd.DataFrame,
    *,
    layers: Sequence[str] | None = None,
    ax: Any = None,
    show_ceiling: bool = True,
    show_ci: bool = True,
):
    """Similarity curves over time, one per layer, with the noise-ceiling band and CIs.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`compare_layers_over_time`.
    layers : list of str, optional
        Layers to draw (default all, in table order).
    ax : matplotlib Axes, optional
        Axes to draw into.
    show_ceiling : bool, default True
        Shade the band between ``noise_ceiling_low`` and ``noise_ceiling_high`` at each time.
    show_ci : bool, default True
        Shade each curve's CI when the table has finite ``ci_low`` / ``ci_high``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> t = pd.DataFrame({"layer": ["a", "a"], "time": [0.0, 0.1], "similarity": [0.1, 0.3],
    ...                   "noise_ceiling_low": [0.2, 0.4], "noise_ceiling_high": [0.3, 0.5],
    ...                   "method": ["corr", "corr"]})
    >>> ax = plot_layers_over_time(t)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('time (s)', 'RDM similarity (corr)')
    """
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be the DataFrame of compare_layers_over_time; got "
                        f"{type(table).__name__}")
    missing = [c for c in ("layer", "time", "similarity") if c not in table]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; pass the output of "
                         "compare_layers_over_time")
    t = table if "subject" not in table else table[table["subject"].astype(str) == "all"]
    names = list(dict.fromkeys(t["layer"])) if layers is None else list(layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    if show_ceiling and {"noise_ceiling_low", "noise_ceiling_high"} <= set(t):
        nc = t.groupby("time")[["noise_ceiling_low", "noise_ceiling_high"]].mean()
        if np.isfinite(nc.to_numpy(float)).any():
            ax.fill_between(nc.index.to_numpy(float), nc["noise_ceiling_low"].to_numpy(float),
                            nc["noise_ceiling_high"].to_numpy(float), color="0.7", alpha=0.5,
                            linewidth=0, label="noise ceiling")
    for i, name in enumerate(names):
        r = t[t["layer"] == name].sort_values("time")
        if r.empty:
            raise ValueError(f"layers: {name!r} is not in the table")
        x = r["time"].to_numpy(float)
        ax.plot(x, r["similarity"].to_numpy(float), color=f"C{i % 10}", label=str(name))
        if show_ci and {"ci_low", "ci_high"} <= set(r):
            lo, hi = r["ci_low"].to_numpy(float), r["ci_high"].to_numpy(float)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=f"C{i % 10}", alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="0.3", linewidth=0.6)
    ax.set_xlabel("time (s)")
    method = t["method"].iloc[0] if "method" in t and len(t) else "similarity"
    ax.set_ylabel(f"RDM similarity ({method})")
    ax.legend(frameon=False, fontsize=8)
    return ax
