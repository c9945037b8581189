"""The embedded demo study: digits shown to a simulated subject, written in real file formats.

Stimuli are the 8x8 handwritten digits shipped with scikit-learn (no download). Each simulated
subject has two regions in a small NIfTI atlas (``{"EVC": 1, "IT": 2}``):

* ``EVC`` (early-visual-like): voxel patterns are random linear mixtures of the pixel intensities;
* ``IT`` (inferotemporal-like): voxel patterns follow digit class (category), plus a small
  stimulus-specific part.

Per run every stimulus gets one beta image: the true pattern plus Gaussian noise whose standard
deviation varies across voxels. The ground-truth RDM of each region is the rsatoolbox
``"euclidean"`` RDM (squared distance / n_voxels) of the noise-free patterns, which is exactly what
a crossnobis RDM with identity noise precision estimates without bias. A short BOLD time series
with BIDS ``events.tsv`` files (for the GLM path) and an NWB file of Poisson units (written by
``data_adapters.demo.ephys.write_demo_nwb``) complete the study.

Everything is deterministic in ``seed`` and builds in a few seconds.

Examples
--------
>>> import tempfile
>>> study = make_demo_study(tempfile.mkdtemp(), n_stimuli=20, n_runs=2, with_bold=False,
...                         with_nwb=False)
>>> study.betas[0].name, len(study.stimulus_ids), sorted(study.ground_truth)
('sub-01_betas.nii', 20, ['EVC', 'IT', 'latent'])
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from brainrdl.validation import check_output_dir, check_scalar

__all__ = [
    "DEMO_LABELS",
    "DemoStimuli",
    "DemoStudy",
    "add_arguments",
    "default_cache_dir",
    "load_demo_stimuli",
    "load_task_digits",
    "make_demo",
    "make_demo_study",
    "run",
]

#: Atlas values of the two demo regions.
DEMO_LABELS: dict[str, int] = {"EVC": 1, "IT": 2}

_VOXEL_SIZE_MM = 3.0
_GRID = (12, 14, 10)
# boxes (x, y, z slices) of the two regions inside the grid: 125 voxels each
_ROI_BOXES = {
    "EVC": (slice(1, 6), slice(1, 6), slice(2, 7)),
    "IT": (slice(6, 11), slice(8, 13), slice(2, 7)),
}
_FORMAT_VERSION = 1


class DemoStimuli(NamedTuple):
    """Digit images with their class labels and stable ids (unpacks as a 3-tuple).

    Attributes
    ----------
    images : numpy.ndarray
        ``(n, 1, 8, 8)`` float32 in ``[0, 1]``.
    labels : numpy.ndarray
        ``(n,)`` int64 digit classes 0-9.
    stimulus_ids : list of str
        ``"digit_0042"``: the index into ``sklearn.datasets.load_digits``, zero padded so that
        sorting the ids sorts by index (rsatoolbox orders RDM conditions by sorted id).
    """

    images: np.ndarray
    labels: np.ndarray
    stimulus_ids: list[str]


@dataclass
class DemoStudy:
    """Paths and ground truth of a demo study written by :func:`make_demo_study`.

    Attributes
    ----------
    root : Path
        Folder holding every file.
    subjects : list of str
        ``["sub-01", ...]``.
    betas : list of Path
        One 4D beta NIfTI per subject (``n_runs * n_stimuli`` volumes, run-major).
    design : list of Path
        One TSV per subject with columns ``volume``, ``condition`` (stimulus id), ``run``.
    atlas, atlas_labels : Path
        Atlas NIfTI (0 = background) and its lookup TSV (columns ``index``, ``name``).
    labels : dict
        ROI name -> atlas value, ``{"EVC": 1, "IT": 2}``.
    bold, events : list of Path
        BOLD runs (4D NIfTI) and BIDS ``events.tsv`` files of the first subject (GLM path);
        empty when built with ``with_bold=False``.
    t_r : float
        Repetition time of the BOLD runs in seconds.
    nwb : Path or None
        NWB file of simulated units, or None when it was not written.
    stimulus_ids, digit_labels, images
        The stimuli, in the order of the RDM conditions.
    ground_truth : dict
        ROI name -> ``rsatoolbox.rdm.RDMs`` of the noise-free patterns (method ``"euclidean"``);
        ``"latent"`` holds the RDM of the features given to the NWB unit simulation.
    patterns : dict
        ROI name -> noise-free voxel patterns ``(n_stimuli, n_voxels)`` (subject 1).
    """

    root: Path
    subjects: list[str]
    betas: list[Path]
    design: list[Path]
    atlas: Path
    atlas_labels: Path
    labels: dict[str, int]
    bold: list[Path]
    events: list[Path]
    t_r: float
    nwb: Path | None
    stimulus_ids: list[str]
    digit_labels: np.ndarray = field(repr=False)
    images: np.ndarray = field(repr=False)
    ground_truth: dict[str, Any] = field(repr=False)
    patterns: dict[str, np.ndarray] = field(repr=False)
    n_runs: int = 0
    seed: int = 0


# ----------------------------------------------------------------------------- stimuli


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as (images (n, 8, 8) float32 in [0, 1], labels (n,) int64)."""
    # read scikit-learn's bundled CSV directly: importing sklearn costs seconds, the file
    # (64 pixel columns + the label) is what load_digits reads too
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is not None and csv.exists():
        table = np.loadtxt(csv, delimiter=",")
        pixels, target = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - layout changed; fall back to the public loader
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data, bunch.target
    images = (pixels.reshape(-1, 8, 8) / 16.0).astype(np.float32)  # pixel values are 0..16
    images.flags.writeable = False  # cached: callers get copies via fancy indexing
    return images, target.astype(np.int64)


def _stimulus_ids(indices: np.ndarray) -> list[str]:
    return [f"digit_{int(i):04d}" for i in indices]


def _demo_indices(n_stimuli: int, seed: int, labels: np.ndarray) -> np.ndarray:
    """Class-balanced, seeded choice of digit indices, sorted ascending."""
    # at most half the digits, so that task digits remain
    check_scalar("n_stimuli", n_stimuli, int, min_val=10, max_val=len(labels) // 2)
    rng = np.random.default_rng(seed)
    per_class = [n_stimuli // 10 + (1 if c < n_stimuli % 10 else 0) for c in range(10)]
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(per_class)
    ]
    return np.sort(np.concatenate(chosen))


def load_demo_stimuli(n_stimuli: int = 100, seed: int = 0) -> DemoStimuli:
    """The stimuli of the demo study: class-balanced digits chosen by ``seed``.

    Parameters
    ----------
    n_stimuli : int, default 100
        Number of digits (10 to 898), balanced over the 10 classes.
    seed : int, default 0
        Same seed as :func:`make_demo_study` gives the same stimuli.

    Returns
    -------
    DemoStimuli
        ``(images (n, 1, 8, 8) float32 in [0, 1], labels (n,), stimulus_ids)`` sorted by id.

    Examples
    --------
    >>> images, labels, ids = load_demo_stimuli(20)
    >>> images.shape, images.dtype.name, ids[0][:6], int(np.bincount(labels).min())
    ((20, 1, 8, 8), 'float32', 'digit_', 2)
    """
    images, labels = _digits()
    idx = _demo_indices(n_stimuli, seed, labels)
    return DemoStimuli(images[idx, None], labels[idx], _stimulus_ids(idx))


def load_task_digits(
    exclude_ids: list[str] | None = None, *, n_stimuli: int = 100, seed: int = 0
) -> DemoStimuli:
    """The digits NOT in the brain stimulus set, for training on the digit task.

    Parameters
    ----------
    exclude_ids : list of str, optional
        Stimulus ids to leave out; default the ids of ``load_demo_stimuli(n_stimuli, seed)``.
    n_stimuli, seed : int
        Used only when ``exclude_ids`` is None.

    Returns
    -------
    DemoStimuli
        The remaining digits, sorted by id.

    Examples
    --------
    >>> task = load_task_digits()
    >>> len(task.stimulus_ids), set(task.stimulus_ids) & set(load_demo_stimuli().stimulus_ids)
    (1697, set())
    """
    images, labels = _digits()
    all_ids = _stimulus_ids(np.arange(len(labels)))
    if exclude_ids is None:
        exclude_ids = load_demo_stimuli(n_stimuli, seed).stimulus_ids
    exclude = set(exclude_ids)
    unknown = exclude - set(all_ids)
    if unknown:
        raise ValueError(
            f"exclude_ids contains ids that are not digit ids ('digit_0000'..'digit_1796'): "
            f"{sorted(unknown)[:5]}"
        )
    keep = np.array([i for i, s in enumerate(all_ids) if s not in exclude], dtype=np.int64)
    return DemoStimuli(images[keep, None], labels[keep], _stimulus_ids(keep))


# ----------------------------------------------------------------------------- simulation


def _true_patterns(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, n_voxels: dict[str, int]
) -> dict[str, np.ndarray]:
    """Noise-free voxel patterns per region, each voxel with unit-order signal variance."""
    pixels = images.reshape(len(images), -1).astype(np.float64)
    pixels = (pixels - pixels.mean(0)) / (pixels.std(0) + 1e-3)  # blank pixels stay ~0
    n_evc = n_voxels["EVC"]
    mixing = rng.standard_normal((pixels.shape[1], n_evc)) / np.sqrt(pixels.shape[1])
    evc = pixels @ mixing
    n_it = n_voxels["IT"]
    # class means from a low-dimensional category space: between-class distances then vary
    # widely (a clear category geometry), and a small stimulus-specific part keeps
    # within-class distances from all being equal
    category_space = rng.standard_normal((10, 4))
    class_means = category_space @ rng.standard_normal((4, n_it)) / np.sqrt(2.0)
    it = class_means[labels] + 0.3 * rng.standard_normal((len(labels), n_it))
    return {"EVC": evc, "IT": it}


def _ground_truth(patterns: dict[str, np.ndarray], ids: list[str], labels: np.ndarray) -> dict:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    out = {}
    for roi, pat in patterns.items():
        ds = Dataset(
            pat,
            descriptors={"roi": roi, "subject": "ground truth"},
            obs_descriptors={"stimulus": np.array(ids), "digit": labels},
        )
        with warnings.catch_warnings():  # rsatoolbox's averaging fills NaN into int arrays
            warnings.simplefilter("ignore", RuntimeWarning)
            out[roi] = calc_rdm(ds, method="euclidean", descriptor="stimulus")
    return out


def _atlas(shape: tuple[int, int, int]) -> np.ndarray:
    atlas = np.zeros(shape, dtype=np.int16)
    for name, box in _ROI_BOXES.items():
        atlas[box] = DEMO_LABELS[name]
    return atlas


def _affine() -> np.ndarray:
    affine = np.diag([_VOXEL_SIZE_MM] * 3 + [1.0])
    affine[:3, 3] = -np.array(_GRID) * _VOXEL_SIZE_MM / 2  # centre the grid on the origin
    return affine


def _voxel_patterns(
    patterns: dict[str, np.ndarray], atlas: np.ndarray, n_stimuli: int
) -> np.ndarray:
    """(n_stimuli, x, y, z) image of the noise-free patterns (0 outside the regions)."""
    vol = np.zeros((n_stimuli, *atlas.shape), dtype=np.float64)
    for roi, value in DEMO_LABELS.items():
        vol[:, atlas == value] = patterns[roi]
    return vol


def _default_noise_sd(shape: tuple[int, ...], rng: np.random.Generator, noise: float) -> np.ndarray:
    # heteroscedastic voxels (0.5x to 1.5x the nominal level) so noise normalisation matters
    return noise * rng.uniform(0.5, 1.5, size=shape)


def default_cache_dir() -> Path:
    """``$BRAINRDL_CACHE/demo`` or ``~/.cache/brainrdl/demo``.

    Examples
    --------
    >>> default_cache_dir().name
    'demo'
    """
    base = os.environ.get("BRAINRDL_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "brainrdl"
    return root / "demo"


def make_demo_study(
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_stimuli: int = 100,
    n_runs: int = 6,
    *,
    n_subjects: int = 1,
    noise: float = 1.5,
    with_bold: bool = True,
    n_bold_runs: int = 3,
    t_r: float = 2.0,
    with_nwb: bool = True,
    overwrite: bool = False,
) -> DemoStudy:
    """Write the demo study (NIfTI betas, atlas, BOLD + events, NWB) and return its paths.

    Parameters
    ----------
    out_dir : path, optional
        Folder to write to; default :func:`default_cache_dir`. Files already there from a build
        with the same parameters are reused unless ``overwrite``.
    seed : int, default 0
        Everything (stimuli, patterns, noise) is deterministic in ``seed``.
    n_stimuli : int, default 100
        Number of digit stimuli (class balanced).
    n_runs : int, default 6
        Runs of beta images per subject (each run has one beta per stimulus).
    n_subjects : int, default 1
        Simulated subjects; they share the region geometry but have their own voxel mixing
        and noise.
    noise : float, default 1.5
        Nominal noise standard deviation of a single-run beta (signal variance per voxel ~1).
    with_bold : bool, default True
        Also write BOLD runs + ``events.tsv`` for the first subject (GLM path).
    n_bold_runs : int, default 3
        Number of BOLD runs (each shows every stimulus once, 4 s apart).
    t_r : float, default 2.0
        Repetition time of the BOLD runs.
    with_nwb : bool, default True
        Also write an NWB file of simulated units (needs ``data_adapters.demo.ephys``).
    overwrite : bool, default False
        Rewrite the files even if a matching build is already in ``out_dir``.

    Returns
    -------
    DemoStudy

    Examples
    --------
    >>> import tempfile
    >>> s = make_demo_study(tempfile.mkdtemp(), n_stimuli=10, n_runs=2, with_nwb=False,
    ...                     n_bold_runs=2)
    >>> [p.name for p in s.events]
    ['sub-01_run-01_events.tsv', 'sub-01_run-02_events.tsv']
    """
    _check_study_arguments(n_runs, n_subjects, noise, with_bold, n_bold_runs)
    root = Path(out_dir) if out_dir is not None else default_cache_dir()
    check_output_dir("out_dir", root)  # an unwritable folder fails here, before any work
    params = {
        "version": _FORMAT_VERSION, "seed": int(seed), "n_stimuli": int(n_stimuli),
        "n_runs": int(n_runs), "n_subjects": int(n_subjects), "noise": float(noise),
        "with_bold": bool(with_bold), "n_bold_runs": int(n_bold_runs), "t_r": float(t_r),
        "with_nwb": bool(with_nwb),
    }  # fmt: skip
    manifest = root / "manifest.json"
    reuse = not overwrite and manifest.exists() and json.loads(manifest.read_text()) == params
    if not reuse and manifest.exists():
        manifest.unlink()  # a half-written build must not look complete

    stimuli = load_demo_stimuli(n_stimuli, seed)
    ids, digit_labels = stimuli.stimulus_ids, stimuli.labels
    atlas = _atlas(_GRID)
    n_voxels = {roi: int((atlas == v).sum()) for roi, v in DEMO_LABELS.items()}
    subjects = [f"sub-{s + 1:02d}" for s in range(n_subjects)]

    betas, design, bold, events = [], [], [], []
    patterns_sub1: dict[str, np.ndarray] = {}
    for s, sub in enumerate(subjects):
        # one independent stream per subject, so adding subjects never changes sub-01
        rng = np.random.default_rng([seed, s])
        patterns = _true_patterns(stimuli.images, digit_labels, rng, n_voxels)
        if s == 0:
            patterns_sub1 = patterns
        betas.append(root / f"{sub}_betas.nii")
        design.append(root / f"{sub}_design.tsv")
        noise_sd = _default_noise_sd(_GRID, rng, noise)
        if not reuse:
            _write_betas(betas[-1], design[-1], patterns, atlas, ids, n_runs, noise_sd, rng)
        if with_bold and s == 0:
            for r in range(n_bold_runs):
                bold.append(root / f"{sub}_run-{r + 1:02d}_bold.nii")
                events.append(root / f"{sub}_run-{r + 1:02d}_events.tsv")
                if not reuse:
                    _write_bold_run(
                        bold[-1], events[-1], patterns, atlas, _affine(), ids,
                        np.random.default_rng([seed, s, 1000 + r]), noise, t_r,
                    )  # fmt: skip

    atlas_path, labels_path = root / "atlas.nii.gz", root / "atlas_labels.tsv"
    if not reuse:
        _write_atlas(atlas_path, labels_path, atlas)

    ground_truth = _ground_truth(patterns_sub1, ids, digit_labels)
    # units see a compressed version of the IT code: category structure, few features
    latent = _latent_features(patterns_sub1["IT"], seed)
    ground_truth["latent"] = _ground_truth({"latent": latent}, ids, digit_labels)["latent"]
    nwb_path = root / "sub-01_ephys.nwb" if with_nwb else None
    if with_nwb and not reuse:
        nwb_path = _write_nwb(nwb_path, latent, ids, seed)

    if not reuse:
        np.savez_compressed(
            root / "ground_truth.npz",
            stimulus_ids=np.array(ids),
            **{roi: rdm.get_matrices()[0] for roi, rdm in ground_truth.items()},
        )
        manifest.write_text(json.dumps(params))  # last: marks a complete build
    elif with_nwb and not nwb_path.exists():
        nwb_path = None

    return DemoStudy(
        root=root, subjects=subjects, betas=betas, design=design, atlas=atlas_path,
        atlas_labels=labels_path, labels=dict(DEMO_LABELS), bold=bold, events=events,
        t_r=float(t_r), nwb=nwb_path, stimulus_ids=list(ids), digit_labels=digit_labels,
        images=stimuli.images, ground_truth=ground_truth, patterns=patterns_sub1,
        n_runs=int(n_runs), seed=int(seed),
    )  # fmt: skip


def _check_study_arguments(
    n_runs: Any, n_subjects: Any, noise: Any, with_bold: bool, n_bold_runs: Any
) -> None:
    """Named errors for the counts of :func:`make_demo_study`, before anything is written."""
    check_scalar("n_runs", n_runs, int, min_val=2)  # crossnobis needs runs
    check_scalar("n_subjects", n_subjects, int, min_val=1)
    if not noise >= 0:
        raise ValueError(f"noise must be a non-negative number; got {noise!r}")
    if with_bold:
        check_scalar("n_bold_runs", n_bold_runs, int, min_val=2)


def _write_betas(
    betas_path: Path,
    design_path: Path,
    patterns: dict[str, np.ndarray],
    atlas: np.ndarray,
    ids: list[str],
    n_runs: int,
    noise_sd: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """One subject's 4D beta image (one volume per stimulus and run) and its design TSV."""
    import nibabel as nib
    import pandas as pd

    n_stimuli = len(ids)
    signal = _voxel_patterns(patterns, atlas, n_stimuli)
    vols = np.empty((n_runs * n_stimuli, *_GRID), dtype=np.float32)
    for r in range(n_runs):
        eps = rng.standard_normal((n_stimuli, *_GRID)) * noise_sd
        vols[r * n_stimuli : (r + 1) * n_stimuli] = signal + eps
    img = nib.Nifti1Image(np.moveaxis(vols, 0, -1), _affine())
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, betas_path)
    pd.DataFrame(
        {
            "volume": np.arange(n_runs * n_stimuli),
            "condition": np.tile(ids, n_runs),
            "run": np.repeat(np.arange(1, n_runs + 1), n_stimuli),
        }
    ).to_csv(design_path, sep="\t", index=False)


def _write_atlas(atlas_path: Path, labels_path: Path, atlas: np.ndarray) -> None:
    """The atlas image and its label table (index, name)."""
    import nibabel as nib
    import pandas as pd

    nib.save(nib.Nifti1Image(atlas, _affine()), atlas_path)
    pd.DataFrame({"index": list(DEMO_LABELS.values()), "name": list(DEMO_LABELS)}).to_csv(
        labels_path, sep="\t", index=False
    )


def make_demo(path: str | os.PathLike, seed: int = 0, **kwargs: Any) -> DemoStudy:
    """Write the demo study under ``path`` (alias of :func:`make_demo_study`).

    Examples
    --------
    >>> import tempfile
    >>> make_demo(tempfile.mkdtemp(), n_stimuli=10, n_runs=2, with_bold=False,
    ...           with_nwb=False).labels
    {'EVC': 1, 'IT': 2}
    """
    return make_demo_study(path, seed=seed, **kwargs)


def _latent_features(it_patterns: np.ndarray, seed: int, n_features: int = 20) -> np.ndarray:
    rng = np.random.default_rng([seed, 2000])
    proj = rng.standard_normal((it_patterns.shape[1], n_features)) / np.sqrt(it_patterns.shape[1])
    return it_patterns @ proj


def _write_nwb(path: Path, latent: np.ndarray, ids: list[str], seed: int) -> Path | None:
    try:
        from data_adapters.demo.ephys import write_demo_nwb
    except ImportError as err:
        warnings.warn(
            f"the NWB part of the demo study was skipped: data_adapters.demo.ephys."
            f"write_demo_nwb is not available ({err})",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return Path(write_demo_nwb(path, latent, list(ids), seed=seed))


def _write_bold_run(
    bold_path: Path,
    events_path: Path,
    patterns: dict[str, np.ndarray],
    atlas: np.ndarray,
    affine: np.ndarray,
    ids: list[str],
    rng: np.random.Generator,
    noise: float,
    t_r: float,
) -> None:
    """One run: every stimulus once in random order, 1 s long, 3 TR apart; glover HRF."""
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.first_level import compute_regressor

    n = len(ids)
    order = rng.permutation(n)
    soa, lead_in, tail = 3.0 * t_r, 3.0 * t_r, 8.0 * t_r
    onsets = lead_in + soa * np.arange(n)
    ev = pd.DataFrame(
        {"onset": onsets, "duration": 1.0, "trial_type": [ids[i] for i in order]}
    )
    ev.to_csv(events_path, sep="\t", index=False)
    n_scans = int(np.ceil((onsets[-1] + tail) / t_r))
    frame_times = np.arange(n_scans) * t_r
    # one event's glover response, shifted per trial: onsets fall on whole scans (SOA = 3 TR),
    # so this equals nilearn's per-condition regressors at a fraction of the cost
    response, _ = compute_regressor(
        np.array([[lead_in], [1.0], [1.0]]), "glover", frame_times, oversampling=50
    )
    response = response[:, 0]
    step = round(soa / t_r)
    x = np.zeros((n_scans, n))
    for k, i in enumerate(order):
        x[k * step :, i] = response[: n_scans - k * step]
    signal = x @ _voxel_patterns(patterns, atlas, n).reshape(n, -1)
    # scan noise scaled so that a single-run GLM beta has about the beta-image noise level
    # (the variance factor of a beta is a diagonal entry of inv(X'X), X with an intercept)
    xi = np.column_stack([x, np.ones(n_scans)])
    var_factor = float(np.mean(np.diag(np.linalg.inv(xi.T @ xi))[:n]))
    sd = noise / np.sqrt(var_factor) * rng.uniform(0.5, 1.5, size=signal.shape[1])
    data = 100.0 + signal + rng.standard_normal(signal.shape) * sd
    img = nib.Nifti1Image(data.T.reshape(*atlas.shape, n_scans).astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = t_r
    nib.save(img, bold_path)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``brainrdl make-demo-data``.

    Examples
    --------
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--out", "d", "--seed", "3"]).seed
    3
    """
    parser.add_argument("--out", default=None, help="folder to write (default: cache dir)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-stimuli", type=int, default=100, help="digit stimuli (default 100)")
    parser.add_argument("--n-runs", type=int, default=6, help="beta runs (default 6)")
    parser.add_argument("--n-subjects", type=int, default=1, help="subjects (default 1)")
    parser.add_argument("--noise", type=float, default=1.5, help="beta noise sd (default 1.5)")
    parser.add_argument("--no-bold", action="store_true", help="skip the BOLD + events files")
    parser.add_argument("--no-nwb", action="store_true", help="skip the NWB file")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if present")


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl make-demo-data``: build the study and print where its files are."""
    study = make_demo_study(
        args.out, seed=args.seed, n_stimuli=args.n_stimuli, n_runs=args.n_runs,
        n_subjects=args.n_subjects, noise=args.noise, with_bold=not args.no_bold,
        with_nwb=not args.no_nwb, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"demo study written to {study.root}")
    for name in ("betas", "design", "bold", "events"):
        for p in getattr(study, name):
            print(f"  {name:7s} {p.name}")
    print(f"  atlas   {study.atlas.name} (labels {study.atlas_labels.name}: {study.labels})")
    print(f"  nwb     {study.nwb.name if study.nwb else 'not written'}")
    return 0
