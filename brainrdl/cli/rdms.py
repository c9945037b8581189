"""``brainrdl rdms``: brain RDMs per region from NIfTI betas + an atlas, or from an NWB file.

Writes one rsatoolbox HDF5 file (``RDMs.save(file_type="hdf5")``; read back with
``rsatoolbox.rdm.load_rdm(path, file_type="hdf5")``) holding every region's (and subject's) RDM,
with rdm descriptors ``roi`` and ``subject`` and the pattern descriptor ``stimulus``: the file
``brainrdl compare --brain`` reads.

fMRI: ``--betas`` (one 4D NIfTI per subject) with ``--design`` (a TSV per subject with a
``condition`` / ``stimulus`` column and optionally ``run``), ROIs from ``--atlas`` + ``--labels``
or ``--mask NAME=FILE``. Electrophysiology: ``--nwb FILE`` with ``--window START STOP``.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["--nwb", "s.nwb", "--window", "0.05", "0.3", "--out", "r.hdf5"])
>>> args.window, args.method
([0.05, 0.3], None)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``brainrdl rdms`` on ``parser``."""
    fmri = parser.add_argument_group("fMRI (NIfTI betas + ROIs)")
    fmri.add_argument("--betas", nargs="+", metavar="NIFTI",
                      help="4D beta image(s), one per subject (one volume per beta)")
    fmri.add_argument("--design", nargs="+", metavar="TSV",
                      help="per subject, a TSV with a condition (or stimulus / trial_type) "
                      "column giving each volume's stimulus id, and optionally a run column")
    fmri.add_argument("--subjects", nargs="+", metavar="NAME",
                      help="subject names, one per --betas (default sub-01, sub-02, ...)")
    fmri.add_argument("--atlas", metavar="NIFTI",
                      help="integer atlas image (0 = background) defining the ROIs")
    fmri.add_argument("--labels", metavar="TSV|NAME=VALUE", nargs="+",
                      help="ROI names of the atlas values: a lookup TSV (index, name) or "
                      "NAME=VALUE pairs (default: one ROI per atlas value)")
    fmri.add_argument("--mask", action="append", metavar="NAME=NIFTI",
                      help="a binary ROI mask (repeat for several ROIs; instead of --atlas)")
    fmri.add_argument("--resample", action="store_true",
                      help="resample the atlas / masks to the betas' grid (nearest neighbour)")
    fmri.add_argument("--noise", choices=["none", "shrinkage"], default="none",
                      help="noise precision for mahalanobis / crossnobis: none (identity) or "
                      "shrinkage estimated per ROI (default none)")
    ephys = parser.add_argument_group("electrophysiology (NWB)")
    ephys.add_argument("--nwb", metavar="FILE", help="NWB file with units and a trials table")
    ephys.add_argument("--window", nargs=2, type=float, metavar=("START", "STOP"),
                       help="spike-counting window in seconds after each trial's start")
    ephys.add_argument("--stimulus-column", default="stimulus",
                       help="trials column holding the stimulus id (default stimulus)")
    ephys.add_argument("--region-column", default=None,
                       help="electrodes / units column naming each unit's region (one RDM per "
                       "region; default: all units together)")
    ephys.add_argument("--intervals", default="trials",
                       help="NWB intervals table of the trials (default trials)")
    parser.add_argument("--method", default=None,
                        help="dissimilarity: euclidean, correlation, mahalanobis, crossnobis, "
                        "poisson (default correlation for fMRI, euclidean for NWB)")
    parser.add_argument("--out", required=True, metavar="FILE.hdf5",
                        help="output rsatoolbox RDMs file (.hdf5 or .h5)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl rdms``; returns 0 on success (bad input: a named error, which
    ``brainrdl.cli.main`` reports as ``brainrdl rdms: error: ...`` with exit status 2)."""
    out = _check_out(args.out)
    if (args.betas is None) == (args.nwb is None):
        raise ValueError("give either --betas (with --design and ROIs) or --nwb")
    rdms = _fmri(args) if args.betas is not None else _nwb(args)
    from rsatoolbox.rdm import concat

    with warnings.catch_warnings():  # the Datasets carry 'stimulus' and its copy 'conds'
        warnings.filterwarnings("ignore", message=r"\[concat\] Multiple pattern descriptors")
        joined = concat(rdms) if len(rdms) > 1 else rdms[0]
    joined.save(str(out), file_type="hdf5", overwrite=True)
    rois = list(dict.fromkeys(str(r) for r in joined.rdm_descriptors.get("roi", [])))
    print(f"wrote {out}: {joined.n_rdm} RDMs of {joined.n_cond} stimuli "
          f"(regions {rois}, method {joined.dissimilarity_measure})")  # fmt: skip
    return 0


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix not in (".hdf5", ".h5"):
        raise ValueError(f"--out must end in .hdf5 or .h5 (rsatoolbox's HDF5 format); got {path!r}")
    if out.is_dir():
        raise ValueError(f"--out {str(out.resolve())!r} is a folder; give a file name")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"--out: the folder {str(parent)!r} does not exist")
    return out


def _pairs(specs: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{option} expects NAME=VALUE; got {spec!r}")
        pairs[name] = value
    return pairs


def _fmri(args) -> list:
    from data_adapters.fmri import rdms_from_betas

    if not args.design or len(args.design) != len(args.betas):
        raise ValueError(
            f"--design needs one TSV per --betas file ({len(args.betas)}); got "
            f"{len(args.design or [])}"
        )
    subjects = args.subjects or [f"sub-{i + 1:02d}" for i in range(len(args.betas))]
    if len(subjects) != len(args.betas):
        raise ValueError(f"--subjects needs one name per --betas file ({len(args.betas)})")
    for path in [*args.betas, *args.design, *([args.atlas] if args.atlas else [])]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file {str(Path(path).resolve())!r}")
    if (args.atlas is None) == (args.mask is None):
        raise ValueError("give the ROIs as --atlas (with --labels) or as --mask NAME=NIFTI")
    labels = None
    if args.labels:
        if len(args.labels) == 1 and "=" not in args.labels[0]:
            labels = args.labels[0]
        else:
            labels = {k: int(v) for k, v in _pairs(args.labels, "--labels").items()}
    masks = _pairs(args.mask, "--mask") if args.mask else None
    method = args.method or "correlation"
    out = []
    for betas, design, subject in zip(args.betas, args.design, subjects):
        per_roi = rdms_from_betas(
            betas, design, atlas=args.atlas, labels=labels, masks=masks, method=method,
            noise=None if args.noise == "none" else args.noise, subject=subject,
            resample=args.resample, progress=not args.no_progress,
        )  # fmt: skip
        out.extend(per_roi.values())
    return out


def _nwb(args) -> list:
    from data_adapters.ephys import rdms_from_nwb

    if args.window is None:
        raise ValueError("--nwb needs --window START STOP (seconds after each trial's start)")
    if not Path(args.nwb).is_file():
        raise FileNotFoundError(f"--nwb: no such file {str(Path(args.nwb).resolve())!r}")
    result = rdms_from_nwb(
        args.nwb, args.stimulus_column, tuple(args.window), method=args.method or "euclidean",
        region_column=args.region_column, intervals=args.intervals,
        progress=not args.no_progress,
    )  # fmt: skip
    if not isinstance(result, dict):
        result = {"all": result}
    out = []
    for region, rdms in result.items():
        rdms.rdm_descriptors["roi"] = [str(region)] * rdms.n_rdm
        if "subject" not in rdms.rdm_descriptors:
            subject = rdms.descriptors.get("subject", "sub-01")
            rdms.rdm_descriptors["subject"] = [str(subject)] * rdms.n_rdm
        out.append(rdms)
    return out
