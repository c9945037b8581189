"""BOLD runs + BIDS events → per-run betas and residuals (nilearn first-level GLM) → RDMs.

Per run, nilearn's ``make_first_level_design_matrix`` builds one regressor per condition
(``trial_type``) plus drifts and optional confounds, and ``run_glm`` fits it to the ROI voxels.
The condition betas of all runs form one Dataset per ROI (runs are the crossnobis folds); the
residuals of all runs give a noise precision with rsatoolbox's shrinkage estimator
(``prec_from_residuals``, degrees of freedom corrected for the regressors).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from brainrdl.errors import InvalidArgumentError, InvalidTypeError
from brainrdl.validation import check_scalar
from data_adapters.fmri._io import ImageLike, VolumeSource, read_tsv
from data_adapters.fmri.betas import calc_rdms, extract_roi_voxels
from data_adapters.fmri.noise import precision_from_residuals
from data_adapters.fmri.rois import roi_masks

_EVENT_COLUMNS = ("onset", "duration", "trial_type")


def read_events(events: Any, name: str = "events") -> Any:
    """A BIDS events table (path or DataFrame) checked for ``onset``, ``duration``, ``trial_type``.

    Rows with a missing ``trial_type`` (``n/a``) are dropped.

    Examples
    --------
    >>> import pandas as pd
    >>> read_events(pd.DataFrame({"onset": [0.0], "duration": [1.0], "trial_type": ["a"]})).shape
    (1, 3)
    """
    import pandas as pd

    if isinstance(events, (str, os.PathLike)):
        table = read_tsv(events, name)
        where = f"{name} ({str(events)!r})"
    elif isinstance(events, pd.DataFrame):
        table = events.copy()
        where = name
    else:
        raise InvalidTypeError(f"{name} must be a path to an events.tsv or a pandas DataFrame; got "
                        f"{type(events).__name__}")
    missing = [c for c in _EVENT_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidArgumentError(f"{where} lacks the BIDS column(s) {missing}; it has "
                         f"{table.columns.tolist()} (expected onset, duration, trial_type)")
    table = table.dropna(subset=["trial_type"])
    if table.empty:
        raise InvalidArgumentError(f"{where} has no events with a trial_type")
    for col in ("onset", "duration"):
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any():
            raise InvalidArgumentError(
                f"{where}: column {col!r} must be numeric seconds without n/a")
        table[col] = values.astype(float)
    table["trial_type"] = table["trial_type"].astype(str)
    return table


@dataclass
class GLMResult:
    """Per-ROI first-level results over all runs.

    Attributes
    ----------
    betas : dict
        ROI name -> ``(n_runs * n_conditions, n_voxels)`` condition betas, run-major.
    residuals : dict
        ROI name -> ``(n_scans_total, n_voxels)`` residuals of all runs stacked.
    conditions, runs : numpy.ndarray
        Labels of the rows of ``betas``.
    dof : int
        Residual degrees of freedom summed over runs (scans minus regressors per run).
    voxels : dict
        ROI name -> ``(n_voxels, 3)`` voxel indices.
    """

    betas: dict[str, np.ndarray]
    residuals: dict[str, np.ndarray]
    conditions: np.ndarray
    runs: np.ndarray
    dof: int
    voxels: dict[str, np.ndarray]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def first_level_glm(
    bold: ImageLike | Sequence[ImageLike],
    events: Any,
    *,
    t_r: float,
    atlas: ImageLike | None = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: Any = None,
    confounds: Any = None,
    hrf_model: str = "glover",
    drift_model: str | None = "cosine",
    high_pass: float = 0.01,
    noise_model: str = "ols",
    resample: bool = False,
    progress: bool = False,
) -> GLMResult:
    """Fit nilearn's first-level GLM per run, one regressor per condition, on the ROI voxels.

    Parameters
    ----------
    bold : path/image or list of them
        One 4D BOLD image per run.
    events : path/DataFrame or list of them
        One BIDS events table per run (columns onset, duration, trial_type).
    t_r : float
        Repetition time in seconds.
    atlas, labels, masks, resample
        ROI definition, see :func:`data_adapters.fmri.rois.roi_masks`.
    confounds : array/DataFrame/path or list of them, optional
        Extra regressors per run (``n_scans`` rows), e.g. motion parameters.
    hrf_model, drift_model, high_pass
        Passed to ``nilearn.glm.first_level.make_first_level_design_matrix``.
    noise_model : {"ols", "ar1"}, default "ols"
        Passed to ``nilearn.glm.first_level.run_glm`` (ar1 residuals are whitened).
    progress : bool, default False
        Show a tqdm bar over runs.

    Returns
    -------
    GLMResult

    Examples
    --------
    >>> import tempfile
    >>> from data_adapters.demo.study import make_demo_study
    >>> s = make_demo_study(tempfile.mkdtemp(), n_stimuli=10, n_runs=2, n_bold_runs=2,
    ...                     with_nwb=False)
    >>> res = first_level_glm(s.bold, s.events, t_r=s.t_r, atlas=s.atlas, labels=s.labels)
    >>> res.betas["IT"].shape, res.runs[:2].tolist()
    ((20, 125), [1, 1])
    """
    from nilearn.glm.first_level import make_first_level_design_matrix, run_glm
    from threadpoolctl import threadpool_limits

    # design matrices are small (scans x regressors): threaded BLAS only adds overhead on their
    # SVDs, and on a busy 2-core machine OpenBLAS's spinning threads made them ~40x slower
    if noise_model not in ("ols", "ar1"):
        raise InvalidArgumentError(
            f"noise_model={noise_model!r} is not supported; expected 'ols' or 'ar1'")
    check_scalar("t_r", t_r, float, min_val=0.0, include_min=False)
    bold_list, events_list = _as_list(bold), _as_list(events)
    if len(bold_list) != len(events_list):
        raise InvalidArgumentError(
            f"bold has {len(bold_list)} runs but events has {len(events_list)}; "
                         "expected one events table per run")
    conf_list = [None] * len(bold_list) if confounds is None else _as_list(confounds)
    if len(conf_list) != len(bold_list):
        raise InvalidArgumentError(f"confounds has {len(conf_list)} entries; expected one per run "
                         f"({len(bold_list)})")
    tables = [read_events(ev, f"events[{i}]") for i, ev in enumerate(events_list)]
    conditions = sorted(set().union(*(set(t["trial_type"]) for t in tables)))

    run_iter: Any = range(len(bold_list))
    if progress:
        from tqdm import tqdm

        run_iter = tqdm(run_iter, desc="GLM runs", unit="run", leave=False)
    betas: dict[str, list[np.ndarray]] = {}
    residuals: dict[str, list[np.ndarray]] = {}
    voxels: dict[str, np.ndarray] = {}
    cond_rows, run_rows, dof = [], [], 0
    rois: dict[str, np.ndarray] | None = None

    for r in run_iter:
        src = VolumeSource(bold_list[r], f"bold[{r}]")
        if rois is None:
            rois = roi_masks(src.shape, src.affine, atlas=atlas, labels=labels, masks=masks,
                             resample=resample)
            ref_shape, ref_affine = src.shape, src.affine
        elif src.shape != ref_shape or not np.allclose(src.affine, ref_affine, atol=1e-3):
            raise InvalidArgumentError(f"bold[{r}] is not on the grid of bold[0]")
        frame_times = np.arange(src.n_volumes) * float(t_r)
        add_regs = _confounds(conf_list[r], src.n_volumes, r)
        with threadpool_limits(limits=1, user_api="blas"):
            design = make_first_level_design_matrix(
                frame_times, tables[r][list(_EVENT_COLUMNS)], hrf_model=hrf_model,
                drift_model=drift_model, high_pass=high_pass, add_regs=add_regs,
            )  # fmt: skip
        present = [c for c in conditions if c in design.columns]
        if len(present) != len(conditions):
            absent = sorted(set(conditions) - set(present))
            raise InvalidArgumentError(
                f"events[{r}] lacks condition(s) {absent[:5]} that other runs have; "
                             "every run must show every condition for cross-validated RDMs")
        x = design.to_numpy(dtype=float)
        cols = [design.columns.get_loc(c) for c in conditions]
        run_dof = x.shape[0] - x.shape[1]  # nilearn's design matrices are full rank
        if run_dof < 1:
            raise InvalidArgumentError(
                f"bold[{r}] has {x.shape[0]} scans for {x.shape[1]} regressors; "
                             "the GLM has no residual degrees of freedom")
        dof += int(run_dof)
        roi_data = extract_roi_voxels(None, rois, source=src)
        for name, (_, ijk) in roi_data.items():
            if name in voxels and not np.array_equal(voxels[name], ijk):
                raise InvalidArgumentError(
                    f"ROI {name!r}: the usable voxels of bold[{r}] differ from those of bold[0] "
                    "(a voxel is NaN or constant in some runs only); mask those voxels out"
                )
            voxels[name] = ijk
        # one fit for all ROIs (their voxels side by side), then split back per ROI
        y = np.concatenate([v for v, _ in roi_data.values()], axis=1)
        with threadpool_limits(limits=1, user_api="blas"):
            theta, resid = _fit(y, x, noise_model, run_glm)
        start = 0
        for name, (values, _) in roi_data.items():
            stop = start + values.shape[1]
            betas.setdefault(name, []).append(theta[cols, start:stop])
            residuals.setdefault(name, []).append(resid[:, start:stop])
            start = stop
        cond_rows.append(np.array(conditions))
        run_rows.append(np.full(len(conditions), r + 1))
    return GLMResult(
        betas={k: np.concatenate(v) for k, v in betas.items()},
        residuals={k: np.concatenate(v) for k, v in residuals.items()},
        conditions=np.concatenate(cond_rows),
        runs=np.concatenate(run_rows),
        dof=dof,
        voxels=voxels,
    )


def _fit(y: np.ndarray, x: np.ndarray, noise_model: str, run_glm: Any):
    labels, results = run_glm(y, x, noise_model=noise_model)
    theta = np.empty((x.shape[1], y.shape[1]))
    resid = np.empty_like(y)
    for key, res in results.items():
        where = labels == key
        theta[:, where] = res.theta
        resid[:, where] = res.residuals
    return theta, resid


def _confounds(conf: Any, n_scans: int, r: int) -> Any:
    import pandas as pd

    if conf is None:
        return None
    if isinstance(conf, (str, os.PathLike)):
        conf = read_tsv(conf, f"confounds[{r}]")
    frame = pd.DataFrame(conf)
    if len(frame) != n_scans:
        raise InvalidArgumentError(f"confounds[{r}] has {len(frame)} rows; expected one per scan "
                         f"({n_scans})")
    if frame.isna().to_numpy().any():
        raise InvalidArgumentError(
            f"confounds[{r}] contains NaN/n/a; fill them (e.g. with 0) first")
    frame.columns = [f"confound_{c}" for c in frame.columns]
    return frame


def datasets_from_bold(
    bold: ImageLike | Sequence[ImageLike],
    events: Any,
    *,
    t_r: float,
    atlas: ImageLike | None = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: Any = None,
    subject: str | None = None,
    shrinkage: str = "shrinkage_diag",
    **glm_kwargs: Any,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-ROI Datasets of run-wise GLM betas and their residual noise precisions.

    Parameters
    ----------
    bold, events, t_r, atlas, labels, masks
        See :func:`first_level_glm`.
    subject : str, optional
        Stored as the ``subject`` descriptor (default ``"sub-01"``).
    shrinkage : str, default "shrinkage_diag"
        Covariance estimator of ``rsatoolbox.data.noise.prec_from_residuals``.
    **glm_kwargs : Any
        Further options of :func:`first_level_glm` (confounds, hrf_model, noise_model, ...).

    Returns
    -------
    (datasets, precisions)
        Dicts keyed by ROI name: rsatoolbox Datasets (obs descriptors ``stimulus``, ``conds``,
        ``run``) and ``(n_voxels, n_voxels)`` noise precision matrices.

    Examples
    --------
    >>> import tempfile
    >>> from data_adapters.demo.study import make_demo_study
    >>> s = make_demo_study(tempfile.mkdtemp(), n_stimuli=10, n_runs=2, n_bold_runs=2,
    ...                     with_nwb=False)
    >>> ds, prec = datasets_from_bold(s.bold, s.events, t_r=s.t_r, atlas=s.atlas, labels=s.labels)
    >>> ds["EVC"].n_obs, prec["EVC"].shape
    (20, (125, 125))
    """
    from rsatoolbox.data import Dataset

    res = first_level_glm(bold, events, t_r=t_r, atlas=atlas, labels=labels, masks=masks,
                          **glm_kwargs)
    datasets, precisions = {}, {}
    for name, values in res.betas.items():
        ijk = res.voxels[name]
        datasets[name] = Dataset(
            values,
            descriptors={"roi": name, "subject": subject or "sub-01"},
            obs_descriptors={"stimulus": res.conditions, "conds": res.conditions,
                             "run": res.runs},
            channel_descriptors={"i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2]},
        )
        precisions[name] = np.asarray(
            precision_from_residuals(res.residuals[name], dof=res.dof, method=shrinkage)
        )
    return datasets, precisions


def rdms_from_bold(
    bold: ImageLike | Sequence[ImageLike],
    events: Any,
    *,
    t_r: float,
    atlas: ImageLike | None = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: Any = None,
    method: str = "crossnobis",
    noise: Any = "residuals",
    subject: str | None = None,
    **glm_kwargs: Any,
) -> dict[str, Any]:
    """From BOLD runs + events to one RDM per ROI (crossnobis across runs by default).

    Parameters
    ----------
    method : str, default "crossnobis"
        Any method of :func:`data_adapters.fmri.betas.calc_rdms`.
    noise : "residuals", None, array or dict, default "residuals"
        ``"residuals"`` uses the GLM residual precision per ROI (shrinkage); otherwise as in
        :func:`data_adapters.fmri.betas.calc_rdms`.
    Other parameters are those of :func:`datasets_from_bold`.

    Examples
    --------
    >>> import tempfile
    >>> from data_adapters.demo.study import make_demo_study
    >>> s = make_demo_study(tempfile.mkdtemp(), n_stimuli=10, n_runs=2, n_bold_runs=2,
    ...                     with_nwb=False)
    >>> rdms = rdms_from_bold(s.bold, s.events, t_r=s.t_r, atlas=s.atlas, labels=s.labels)
    >>> rdms["IT"].dissimilarity_measure, rdms["IT"].n_cond
    ('crossnobis', 10)
    """

    datasets, precisions = datasets_from_bold(
        bold, events, t_r=t_r, atlas=atlas, labels=labels, masks=masks, subject=subject,
        **glm_kwargs,
    )  # fmt: skip
    if isinstance(noise, str) and noise == "residuals":
        noise = precisions if method in ("mahalanobis", "crossnobis") else None
    return calc_rdms(datasets, method, noise=noise)
