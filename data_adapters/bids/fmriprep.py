"""A BIDS dataset with fMRIPrep derivatives → per-subject ROI RDMs, through nilearn's BIDS support.

Files are found by ``nilearn.glm.first_level.first_level_from_bids`` (preprocessed BOLD in the
derivatives, raw ``events.tsv``, fMRIPrep confounds TSVs, repetition time and slice-timing
reference from the sidecar JSON files) and by ``nilearn.interfaces.bids.get_bids_files`` for the
checks that name a missing file. Each subject's runs then go through the single-subject GLM path
(:func:`data_adapters.fmri.rdms_from_bold`: per-run betas, residual noise precision, crossnobis
across runs with :func:`brainrdl.calc_rdm`), so a BIDS subject gives exactly the RDM that path
gives on the same files.

Subjects whose files are missing (no preprocessed BOLD, no events for a run, no confounds TSV,
a requested confound column absent) are found before any GLM is fitted. By default
(``on_error="raise"``) that is a :class:`BIDSDataError` naming every such subject and file;
``on_error="skip"`` skips them with a warning and lists them in the ``failures`` table of the
result. Nothing is skipped silently.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_adapters.fmri.glm import rdms_from_bold

__all__ = ["MOTION_CONFOUNDS", "BIDSDataError", "BIDSRDMs", "check_bids_subjects", "rdms_from_bids"]

#: fMRIPrep's six rigid-body motion parameters, the default confounds.
MOTION_CONFOUNDS: tuple[str, ...] = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
_FAILURE_COLUMNS = ["subject", "problem", "file"]


class BIDSDataError(ValueError):
    """A BIDS dataset lacks a file (or a column) that a subject's analysis needs.

    Attributes
    ----------
    failures : pandas.DataFrame
        One row per problem: ``subject``, ``problem``, ``file`` (the file missing or at fault).

    Examples
    --------
    >>> import pandas as pd
    >>> err = BIDSDataError(pd.DataFrame({"subject": ["sub-01"], "problem": ["no events"],
    ...                                   "file": ["sub-01/func/x_events.tsv"]}))
    >>> "x_events.tsv" in str(err)
    True
    """

    def __init__(self, failures: Any) -> None:
        self.failures = failures
        lines = [f"  {r.subject}: {r.problem}: {r.file}" for r in failures.itertuples()]
        super().__init__(
            f"{failures['subject'].nunique()} subject(s) cannot be analysed:\n"
            + "\n".join(lines)
            + "\npass on_error='skip' to analyse the others (the failures are listed in the "
            "result's .failures table)"
        )


class BIDSRDMs(dict):
    """ROI name -> rsatoolbox ``RDMs`` (one RDM per subject), with the subjects that failed.

    A plain ``dict`` of RDMs plus the attribute ``failures``: a pandas DataFrame with columns
    ``subject``, ``problem``, ``file`` (empty when every subject was analysed).

    Examples
    --------
    >>> BIDSRDMs({}).failures.columns.tolist()
    ['subject', 'problem', 'file']
    """

    def __init__(self, *args: Any, failures: Any = None, **kwargs: Any) -> None:
        import pandas as pd

        super().__init__(*args, **kwargs)
        self.failures = (pd.DataFrame(columns=_FAILURE_COLUMNS) if failures is None
                         else failures.reset_index(drop=True))


def _label(subject: str) -> str:
    return subject[4:] if subject.startswith("sub-") else subject


def _find(main: Path, **kwargs: Any) -> list[str]:
    from nilearn.interfaces.bids import get_bids_files

    return sorted(get_bids_files(main, modality_folder="func", **kwargs))


def _raw_filters(entities: Mapping[str, str]) -> list[tuple[str, str]]:
    # the raw-data entities that tie a derivative run to its events / confounds files
    return [(k, entities[k]) for k in ("task", "ses", "acq", "ce", "dir", "rec", "run", "echo")
            if k in entities]


def _expected(folder: Path, entities: Mapping[str, str], suffix: str) -> str:
    keys = ("sub", "ses", "task", "acq", "ce", "dir", "rec", "run", "echo")
    stem = "_".join(f"{k}-{entities[k]}" for k in keys if k in entities)
    sub = Path(f"sub-{entities['sub']}")
    if "ses" in entities:
        sub = sub / f"ses-{entities['ses']}"
    return str(folder / sub / "func" / f"{stem}_{suffix}")


def check_bids_subjects(
    root: str | os.PathLike,
    *,
    task: str,
    space: str = "MNI152NLin2009cAsym",
    derivatives: str | os.PathLike = "derivatives/fmriprep",
    subjects: Sequence[str] | None = None,
    confounds: Sequence[str] | None = MOTION_CONFOUNDS,
    desc: str = "preproc",
) -> tuple[list[str], Any]:
    """Which subjects have every file the analysis needs, and what the others lack.

    Reads only file names (and the header line of each confounds TSV), through
    ``nilearn.interfaces.bids.get_bids_files``.

    Parameters
    ----------
    root, task, space, derivatives, subjects, confounds, desc
        As in :func:`rdms_from_bids`.

    Returns
    -------
    (ok, failures)
        Subject labels (``"sub-01"``) that can be analysed, and a DataFrame with columns
        ``subject``, ``problem``, ``file`` for the others.

    Examples
    --------
    >>> import tempfile
    >>> from data_adapters.demo.bids import write_demo_bids
    >>> ds = write_demo_bids(tempfile.mkdtemp(), n_subjects=2, n_runs=2)
    >>> ds.events["sub-02"][1].unlink()
    >>> ok, failures = check_bids_subjects(ds.root, task="digits")
    >>> ok, failures["problem"].tolist()
    (['sub-01'], ['no events.tsv for a preprocessed run'])
    """
    import pandas as pd

    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise FileNotFoundError(f"root={str(root)!r} is not a BIDS dataset: "
                                f"{str(root / 'dataset_description.json')!r} is missing")
    deriv = Path(derivatives) if Path(derivatives).is_absolute() else root / derivatives
    if not deriv.is_dir():
        raise FileNotFoundError(f"derivatives folder {str(deriv)!r} does not exist; pass "
                                "derivatives= (e.g. 'derivatives/fmriprep')")
    if not isinstance(task, str) or not task:
        raise ValueError(f"task must be a BIDS task label such as 'digits'; got {task!r}")
    found = sorted({p.name for base in (root, deriv) for p in base.glob("sub-*") if p.is_dir()})
    if subjects is None:
        wanted = found
    else:
        wanted = [f"sub-{_label(str(s))}" for s in subjects]
    if not wanted:
        raise FileNotFoundError(f"no sub-* folder in {str(root)!r} or {str(deriv)!r}")
    rows: list[dict[str, str]] = []
    ok = []
    for sub in wanted:
        label = _label(sub)
        bold = _find(deriv, file_tag="bold", file_type="nii*", sub_label=label,
                     filters=[("task", task), ("space", space), ("desc", desc)])
        if not bold:
            rows.append({"subject": sub, "problem": "no preprocessed BOLD in the derivatives",
                         "file": str(deriv / sub / "func" /
                                     f"{sub}_task-{task}_*space-{space}_desc-{desc}_bold.nii*")})
            continue
        before = len(rows)
        for path in bold:
            from nilearn.interfaces.bids import parse_bids_filename

            ent = parse_bids_filename(path)["entities"]
            filters = _raw_filters(ent)
            if not _find(root, file_tag="events", file_type="tsv", sub_label=label,
                         filters=filters):
                rows.append({"subject": sub, "problem": "no events.tsv for a preprocessed run",
                             "file": _expected(root, ent, "events.tsv")})
            if confounds:
                conf = _find(deriv, file_tag="desc-confounds*", file_type="tsv", sub_label=label,
                             filters=filters)
                if not conf:
                    rows.append({"subject": sub, "problem": "no fMRIPrep confounds TSV",
                                 "file": _expected(deriv, ent, "desc-confounds_timeseries.tsv")})
                    continue
                header = pd.read_csv(conf[0], sep="\t", nrows=0).columns
                absent = [c for c in confounds if c not in header]
                if absent:
                    rows.append({"subject": sub, "problem": f"confound column(s) {absent} absent",
                                 "file": conf[0]})
        if len(rows) == before:
            ok.append(sub)
    return ok, pd.DataFrame(rows, columns=_FAILURE_COLUMNS)


def rdms_from_bids(
    root: str | os.PathLike,
    *,
    task: str,
    space: str = "MNI152NLin2009cAsym",
    derivatives: str | os.PathLike = "derivatives/fmriprep",
    subjects: Sequence[str] | None = None,
    atlas: Any = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: Any = None,
    method: str = "crossnobis",
    confounds: Sequence[str] | None = MOTION_CONFOUNDS,
    per_session: bool = False,
    on_error: str = "raise",
    desc: str = "preproc",
    resample: bool = False,
    progress: bool = True,
    **glm_kwargs: Any,
) -> BIDSRDMs:
    """Per-subject ROI RDMs from a BIDS dataset with fMRIPrep derivatives.

    Parameters
    ----------
    root : path
        The raw BIDS dataset (with ``dataset_description.json`` and the ``events.tsv`` files).
    task : str
        BIDS task label (``task-<label>`` in the file names).
    space : str, default "MNI152NLin2009cAsym"
        fMRIPrep output space of the preprocessed BOLD (``space-<label>``).
    derivatives : path, default "derivatives/fmriprep"
        The fMRIPrep derivatives folder, relative to ``root`` or absolute.
    subjects : list of str, optional
        Subject labels (``"01"`` or ``"sub-01"``); default every ``sub-*`` folder.
    atlas, labels, masks, resample
        ROI definition on the BOLD grid, see :func:`data_adapters.fmri.roi_masks`.
    method : str, default "crossnobis"
        RDM method (crossnobis: runs are the folds, noise precision from the GLM residuals).
    confounds : list of str or None, default the six motion parameters
        Columns of the fMRIPrep confounds TSV added to each run's design; ``n/a`` (the first
        row of derivative columns) is set to 0. None or ``[]``: no confounds.
    per_session : bool, default False
        One RDM per subject and session (runs of a session are the folds) instead of one per
        subject (all runs of all sessions are the folds).
    on_error : {"raise", "skip"}, default "raise"
        What to do with subjects that lack a file: raise :class:`BIDSDataError` (naming each
        subject and file), or skip them with a warning and list them in ``.failures``.
    desc : str, default "preproc"
        ``desc-`` label of the preprocessed BOLD.
    progress : bool, default True
        tqdm bars over subjects and, within a subject, over runs.
    **glm_kwargs : Any
        Passed to :func:`data_adapters.fmri.first_level_glm` (``hrf_model``, ``drift_model``,
        ``high_pass``, ``noise_model``, ...).

    Returns
    -------
    BIDSRDMs
        A dict ROI name -> rsatoolbox ``RDMs`` with one RDM per subject (or subject × session):
        rdm descriptors ``subject``, ``session`` (``"n/a"`` without sessions; sessions joined by
        ``+`` when pooled), ``roi``; ``.failures`` lists the subjects skipped.

    Raises
    ------
    BIDSDataError
        A subject lacks a file and ``on_error="raise"`` (before any GLM is fitted).

    Notes
    -----
    The repetition time and slice-timing reference come from the sidecar JSON files through
    ``first_level_from_bids``. nilearn samples the design at ``(scan + slice_time_ref) * t_r``;
    the GLM path used here samples at ``scan * t_r``, so the event onsets are shifted by
    ``-slice_time_ref * t_r`` instead, which gives the same HRF regressors. Without a
    ``StartTime`` in the JSON, nilearn assumes 0 (right for data that were not slice-time
    corrected); one warning lists the subjects concerned.

    Examples
    --------
    >>> import tempfile
    >>> from data_adapters.demo.bids import write_demo_bids
    >>> ds = write_demo_bids(tempfile.mkdtemp(), n_subjects=2, n_runs=2)
    >>> rdms = rdms_from_bids(ds.root, task="digits", atlas=ds.atlas, labels=ds.labels,
    ...                       progress=False)
    >>> rdms["IT"].rdm_descriptors["subject"], rdms["IT"].n_cond
    (['sub-01', 'sub-02'], 10)
    """
    import pandas as pd
    from rsatoolbox.rdm import concat

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
    if confounds is not None and (isinstance(confounds, str) or not all(
            isinstance(c, str) for c in confounds)):
        raise TypeError(f"confounds must be a list of column names of the fMRIPrep confounds "
                        f"TSV (or None); got {confounds!r}")
    if atlas is None and masks is None:
        raise ValueError("rdms_from_bids needs ROIs: pass atlas= (with labels=) or masks=")
    root = Path(root)
    ok, failures = check_bids_subjects(root, task=task, space=space, derivatives=derivatives,
                                       subjects=subjects, confounds=confounds, desc=desc)
    if not failures.empty:
        if on_error == "raise":
            raise BIDSDataError(failures)
        warnings.warn(
            f"skipping {failures['subject'].nunique()} subject(s) that lack files: "
            f"{sorted(failures['subject'].unique())} (see the result's .failures table)",
            UserWarning, stacklevel=2,
        )  # fmt: skip
    if not ok:
        raise BIDSDataError(failures)
    deriv = Path(derivatives) if Path(derivatives).is_absolute() else root / derivatives

    per_roi: dict[str, list[Any]] = {}
    no_start_time: list[str] = []
    subject_iter: Any = ok
    if progress:
        from tqdm import tqdm

        subject_iter = tqdm(ok, desc="BIDS subjects", unit="subject")
    for sub in subject_iter:
        try:
            runs = _subject_runs(root, deriv, sub, task, space, desc, confounds)
            if runs and runs[0]["no_start_time"]:
                no_start_time.append(sub)
            for session, items in _sessions(runs, per_session):
                rdms = rdms_from_bold(
                    [r["bold"] for r in items], [r["events"] for r in items],
                    t_r=items[0]["t_r"], atlas=atlas, labels=labels, masks=masks,
                    confounds=[r["confounds"] for r in items] if confounds else None,
                    method=method, subject=sub, resample=resample, progress=progress,
                    **glm_kwargs,
                )  # fmt: skip
                for roi, rdm in rdms.items():
                    rdm.rdm_descriptors["session"] = [session]
                    per_roi.setdefault(roi, []).append(rdm)
        except (ValueError, FileNotFoundError, KeyError) as err:
            row = pd.DataFrame([{"subject": sub, "problem": f"{type(err).__name__}: {err}",
                                 "file": str(deriv / sub)}], columns=_FAILURE_COLUMNS)
            if on_error == "raise":
                raise BIDSDataError(row) from err
            warnings.warn(f"skipping {sub}: {err}", UserWarning, stacklevel=2)
            failures = pd.concat([failures, row], ignore_index=True)
    if no_start_time:
        warnings.warn(
            f"no StartTime in the preprocessed BOLD's JSON of {no_start_time}: events are "
            "aligned to the start of each volume (slice_time_ref = 0), as nilearn assumes; "
            "right if the data were not slice-time corrected",
            UserWarning, stacklevel=2,
        )  # fmt: skip
    if not per_roi:
        raise BIDSDataError(failures)
    out = {}
    for roi, items in per_roi.items():
        conds = [list(r.pattern_descriptors["stimulus"]) for r in items]
        if any(c != conds[0] for c in conds):
            raise ValueError(f"ROI {roi!r}: subjects saw different conditions (trial_type sets "
                             "differ); their RDMs cannot be stacked")
        stacked = concat(items, target_pdesc="stimulus")
        # concat moves a descriptor shared by all RDMs (e.g. one subject) out of
        # rdm_descriptors; keep subject/session/roi per RDM whatever the count
        for key in ("subject", "session", "roi"):
            stacked.rdm_descriptors[key] = [it.rdm_descriptors[key][0] for it in items]
            stacked.descriptors.pop(key, None)
        out[roi] = stacked
    return BIDSRDMs(out, failures=failures)


def _subject_runs(root: Path, deriv: Path, sub: str, task: str, space: str, desc: str,
                  confounds: Sequence[str] | None) -> list[dict[str, Any]]:
    """Runs of one subject as nilearn's first_level_from_bids finds them, with t_r, events,
    selected confounds and the session label."""
    from nilearn.glm.first_level import first_level_from_bids
    from nilearn.interfaces.bids import parse_bids_filename

    try:
        rel = deriv.relative_to(root.absolute() if deriv.is_absolute() else root)
    except ValueError as err:
        raise ValueError(f"derivatives folder {str(deriv)!r} must lie inside root "
                         f"{str(root)!r} for nilearn's first_level_from_bids") from err
    with warnings.catch_warnings(record=True) as caught:
        # a derivative JSON without StartTime: nilearn warns (once per subject) and uses 0;
        # rdms_from_bids says so once for all subjects instead
        warnings.simplefilter("always")
        models, imgs, events, confs = first_level_from_bids(
            str(root), task, space_label=space, sub_labels=[_label(sub)],
            img_filters=[("desc", desc)], derivatives_folder=str(rel),
        )  # fmt: skip
    no_start_time = False
    for w in caught:
        text = str(w.message)
        if ("slice_time_ref" in text and "not provided" in text) or (
                "'StartTime' not found" in text):
            no_start_time = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    model = models[0]
    if model.t_r is None:
        raise ValueError(f"{sub}: no RepetitionTime in the BOLD sidecar JSON files of "
                         f"{str(deriv / sub)!r}")
    shift = float(model.slice_time_ref or 0.0) * float(model.t_r)
    conf_paths = (_find(deriv, file_tag="desc-confounds*", file_type="tsv",
                        sub_label=_label(sub), filters=[("task", task)]) if confounds else [])
    runs = []
    for j, path in enumerate(imgs[0]):
        ent = parse_bids_filename(path)["entities"]
        ev = events[0][j].copy()
        ev["onset"] = ev["onset"] - shift
        conf = None
        if confounds:
            frame = confs[0][j] if confs[0] is not None else None
            if frame is None:
                raise FileNotFoundError(f"{sub}: no confounds TSV for {path!r}")
            where = conf_paths[j] if j < len(conf_paths) else path
            absent = [c for c in confounds if c not in frame.columns]
            if absent:
                raise KeyError(f"confound column(s) {absent} absent from {where!r}")
            conf = frame[list(confounds)].fillna(0.0).reset_index(drop=True)
        runs.append({"bold": path, "events": ev, "confounds": conf, "t_r": float(model.t_r),
                     "session": ent.get("ses", "n/a"), "run": ent.get("run", str(j + 1)),
                     "no_start_time": no_start_time})
    return runs


def _sessions(runs: list[dict[str, Any]], per_session: bool):
    if not per_session:
        labels = sorted({r["session"] for r in runs})
        yield "+".join(labels), runs
        return
    for label in sorted({r["session"] for r in runs}):
        yield label, [r for r in runs if r["session"] == label]
