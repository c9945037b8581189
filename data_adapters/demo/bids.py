"""A small BIDS dataset with fMRIPrep-style derivatives, written from the demo simulation.

Layout (what nilearn's ``first_level_from_bids`` and fMRIPrep users expect)::

    root/
      dataset_description.json  participants.tsv  task-digits_bold.json
      sub-01/func/sub-01_task-digits_run-1_bold.nii.gz  (+ _bold.json, _events.tsv)
      derivatives/fmriprep/
        dataset_description.json
        sub-01/func/sub-01_task-digits_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz
                    ... _desc-preproc_bold.json, _desc-brain_mask.nii.gz,
                    sub-01_task-digits_run-1_desc-confounds_timeseries.tsv (+ .json)
      derivatives/atlas/  dataset_description.json, the demo atlas + its label table

Every subject sees the same digits in a new random order per run (BIDS ``events.tsv``); its
BOLD is the demo GLM simulation (glover HRF, heteroscedastic noise; the true voxel patterns of
``EVC`` and ``IT`` are shared by all subjects, noise and order are not) plus head-motion-like
confound signals whose time courses are in the confounds TSV (``trans_x`` ... ``rot_z``,
``framewise_displacement`` with the ``n/a`` first row fMRIPrep writes, ``global_signal``), so
regressing them out matters. Deterministic in ``seed``.

Examples
--------
>>> import tempfile
>>> ds = write_demo_bids(tempfile.mkdtemp(), n_subjects=2, n_runs=2, n_stimuli=10)
>>> ds.subjects, ds.task, ds.space
(['sub-01', 'sub-02'], 'digits', 'MNI152NLin2009cAsym')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_adapters.demo.study import (
    DEMO_LABELS,
    _affine,
    _atlas,
    _true_patterns,
    _write_bold_run,
    load_demo_stimuli,
)

__all__ = ["MOTION_CONFOUNDS", "DemoBIDS", "write_demo_bids"]

#: fMRIPrep's six rigid-body motion parameters (columns of the confounds TSV).
MOTION_CONFOUNDS: tuple[str, ...] = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
_GRID = (12, 14, 10)


@dataclass
class DemoBIDS:
    """Paths of a dataset written by :func:`write_demo_bids`.

    Attributes
    ----------
    root, derivatives : Path
        The raw BIDS root and the fMRIPrep derivatives folder (``root/derivatives/fmriprep``).
    subjects : list of str
        ``["sub-01", ...]``.
    task, space : str
        The task label and the fMRIPrep output space.
    t_r : float
        Repetition time (s).
    atlas, atlas_labels : Path
        Atlas NIfTI on the BOLD grid and its label table (columns ``index``, ``name``).
    labels : dict
        ROI name -> atlas value.
    bold, events, confounds : dict
        Subject -> list of per-run paths (preprocessed BOLD, raw events, confounds TSV).
    stimulus_ids : list of str
        The conditions (``trial_type`` values), sorted.
    """

    root: Path
    derivatives: Path
    subjects: list[str]
    task: str
    space: str
    t_r: float
    atlas: Path
    atlas_labels: Path
    labels: dict[str, int]
    bold: dict[str, list[Path]]
    events: dict[str, list[Path]]
    confounds: dict[str, list[Path]]
    stimulus_ids: list[str]


def _json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_demo_bids(
    root: str | os.PathLike,
    *,
    n_subjects: int = 3,
    n_runs: int = 2,
    n_stimuli: int = 10,
    n_sessions: int = 1,
    seed: int = 0,
    noise: float = 1.0,
    motion: float = 2.0,
    t_r: float = 2.0,
    task: str = "digits",
    space: str = "MNI152NLin2009cAsym",
    start_time: float = 0.0,
) -> DemoBIDS:
    """Write a small valid BIDS dataset with fMRIPrep-style derivatives and return its paths.

    Parameters
    ----------
    root : path
        Folder to write (created; existing files are overwritten).
    n_subjects, n_runs, n_stimuli : int
        Subjects, runs per subject and session (>= 2 for crossnobis), digits shown once per run
        (>= 10).
    n_sessions : int
        Sessions per subject; with more than one, files go to ``sub-XX/ses-YY/func`` and carry
        ``ses-YY`` in their names.
    seed : int
        Seed of the simulation (patterns per subject, orders, noise, motion).
    noise : float
        Noise level of a single-run beta (as in :func:`make_demo_study`).
    motion : float
        Amplitude of the confound signal in the BOLD (in beta-noise units per motion regressor).
    t_r : float
        Repetition time in seconds (written to the sidecar JSON files).
    task, space : str
        BIDS task label and fMRIPrep space label.
    start_time : float
        Acquisition time (s) of the reference slice within each volume, written as
        ``StartTime`` in the preprocessed BOLD's JSON (as fMRIPrep does after slice-timing
        correction); the simulated responses are sampled at ``scan * t_r + start_time``.

    Returns
    -------
    DemoBIDS

    Examples
    --------
    >>> import tempfile
    >>> ds = write_demo_bids(tempfile.mkdtemp(), n_subjects=1, n_runs=2, n_stimuli=10)
    >>> [p.name for p in ds.events["sub-01"]]
    ['sub-01_task-digits_run-1_events.tsv', 'sub-01_task-digits_run-2_events.tsv']
    """
    import nibabel as nib
    import pandas as pd

    for name, value, low in (("n_subjects", n_subjects, 1), ("n_runs", n_runs, 2),
                             ("n_stimuli", n_stimuli, 10), ("n_sessions", n_sessions, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if not 0.0 <= start_time < t_r:
        raise ValueError(f"start_time must be in [0, t_r={t_r}); got {start_time!r}")
    root = Path(root)
    deriv = root / "derivatives" / "fmriprep"
    atlas_dir = root / "derivatives" / "atlas"
    for folder in (root, deriv, atlas_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _json(root / "dataset_description.json", {
        "Name": "brainrdl demo digits", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "CC0",
    })  # fmt: skip
    _json(root / f"task-{task}_bold.json", {"RepetitionTime": float(t_r), "TaskName": task})
    _json(deriv / "dataset_description.json", {
        "Name": "fMRIPrep-style derivatives (simulated)", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainrdl demo", "Description": "simulated, not fMRIPrep"}],
    })  # fmt: skip
    _json(atlas_dir / "dataset_description.json", {
        "Name": "demo atlas", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainrdl demo"}],
    })  # fmt: skip

    stimuli = load_demo_stimuli(n_stimuli, seed)
    ids = stimuli.stimulus_ids
    atlas = _atlas(_GRID)
    affine = _affine()
    n_voxels = {roi: int((atlas == v).sum()) for roi, v in DEMO_LABELS.items()}
    atlas_path = atlas_dir / f"space-{space}_desc-demo_dseg.nii.gz"
    labels_path = atlas_dir / f"space-{space}_desc-demo_dseg.tsv"
    nib.save(nib.Nifti1Image(atlas, affine), atlas_path)
    pd.DataFrame({"index": list(DEMO_LABELS.values()), "name": list(DEMO_LABELS)}).to_csv(
        labels_path, sep="\t", index=False
    )
    subjects = [f"sub-{s + 1:02d}" for s in range(n_subjects)]
    pd.DataFrame({"participant_id": subjects}).to_csv(root / "participants.tsv", sep="\t",
                                                      index=False)
    brain = (atlas > 0).astype(np.uint8)
    bold, events, confounds = {}, {}, {}
    # one geometry for everyone (the same true voxel patterns): subjects differ in trial
    # order, noise and head motion, so agreement between subjects is limited by noise only
    patterns = _true_patterns(stimuli.images, stimuli.labels, np.random.default_rng([seed, 7000]),
                              n_voxels)
    sessions = [None] if n_sessions == 1 else [f"{k + 1:02d}" for k in range(n_sessions)]
    for s, sub in enumerate(subjects):
        bold[sub], events[sub], confounds[sub] = [], [], []
        for k, ses in enumerate(sessions):
            sub_dir = Path(sub) if ses is None else Path(sub) / f"ses-{ses}"
            raw_func, der_func = root / sub_dir / "func", deriv / sub_dir / "func"
            raw_func.mkdir(parents=True, exist_ok=True)
            der_func.mkdir(parents=True, exist_ok=True)
            for r in range(1, n_runs + 1):
                stem = (f"{sub}_task-{task}_run-{r}" if ses is None
                        else f"{sub}_ses-{ses}_task-{task}_run-{r}")
                _write_run(stem, raw_func, der_func, space, patterns, atlas, affine, ids,
                           [seed, 7000 + s, r + 1000 * k], [seed, 8000 + s, r + 1000 * k],
                           [seed, 9000 + s, r + 1000 * k], noise, motion, t_r, task,
                           start_time, brain, bold[sub], events[sub], confounds[sub])
    return DemoBIDS(
        root=root, derivatives=deriv, subjects=subjects, task=task, space=space,
        t_r=float(t_r), atlas=atlas_path, atlas_labels=labels_path, labels=dict(DEMO_LABELS),
        bold=bold, events=events, confounds=confounds, stimulus_ids=sorted(ids),
    )  # fmt: skip


def _write_run(stem, raw_func, der_func, space, patterns, atlas, affine, ids, seed_bold,
               seed_conf, seed_load, noise, motion, t_r, task, start_time, brain, bold, events,
               confounds) -> None:
    """One run: raw BOLD + events + sidecar, preprocessed BOLD + sidecar, mask, confounds."""
    import nibabel as nib
    import pandas as pd

    ev_path = raw_func / f"{stem}_events.tsv"
    pre_path = der_func / f"{stem}_space-{space}_desc-preproc_bold.nii.gz"
    _write_bold_run(pre_path, ev_path, patterns, atlas, affine, ids,
                    np.random.default_rng(seed_bold), noise, t_r)
    if start_time:
        # responses were sampled at scan * t_r; the reference slice is acquired
        # start_time later, so the events happened start_time later on that clock
        ev = pd.read_csv(ev_path, sep="\t")
        ev["onset"] = ev["onset"] + start_time
        ev.to_csv(ev_path, sep="\t", index=False)
    img = nib.load(pre_path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    conf = _confound_table(data.shape[-1], np.random.default_rng(seed_conf))
    # motion leaks into every voxel with its own loading: the GLM must regress it out
    load = np.random.default_rng(seed_load).standard_normal(
        (len(MOTION_CONFOUNDS), *data.shape[:3]))
    data += motion * noise * np.tensordot(conf[list(MOTION_CONFOUNDS)].to_numpy().T,
                                          load, axes=(0, 0)).transpose(1, 2, 3, 0)
    conf["global_signal"] = data[atlas > 0].mean(axis=0)
    out = nib.Nifti1Image(data.astype(np.float32), affine, img.header)
    nib.save(out, pre_path)
    nib.save(out, raw_func / f"{stem}_bold.nii.gz")  # raw: same data (simulation)
    sidecar = {"RepetitionTime": float(t_r), "TaskName": task}
    _json(raw_func / f"{stem}_bold.json", sidecar)
    # fMRIPrep writes StartTime when it slice-time corrects
    _json(pre_path.with_name(pre_path.name.replace(".nii.gz", ".json")),
          {**sidecar, "StartTime": float(start_time), "SkullStripped": False})
    nib.save(nib.Nifti1Image(brain, affine),
             der_func / f"{stem}_space-{space}_desc-brain_mask.nii.gz")
    conf_path = der_func / f"{stem}_desc-confounds_timeseries.tsv"
    conf.to_csv(conf_path, sep="\t", index=False, na_rep="n/a")
    _json(conf_path.with_suffix(".json"),
          {c: {"Description": f"simulated {c}"} for c in conf.columns})
    bold.append(pre_path)
    events.append(ev_path)
    confounds.append(conf_path)


def _confound_table(n_scans: int, rng: np.random.Generator):
    """Smooth random-walk motion (6 parameters) and its framewise displacement."""
    import pandas as pd

    steps = rng.standard_normal((n_scans, len(MOTION_CONFOUNDS)))
    walk = np.cumsum(steps, axis=0)
    walk = (walk - walk.mean(0)) / walk.std(0)
    table = pd.DataFrame(walk, columns=list(MOTION_CONFOUNDS))
    fd = np.abs(np.diff(walk, axis=0)).sum(axis=1)
    table["framewise_displacement"] = np.concatenate([[np.nan], fd])  # n/a in the first row
    return table
