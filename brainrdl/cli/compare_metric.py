"""The ``--metric`` option of ``brainrdl compare``: pattern metrics from the command line.

``brainrdl compare`` compares layer RDMs with brain RDMs (``--metric rsa``, the default). With
``--metric cka | encoding | procrustes`` the brain inputs are *patterns*: ``--brain REGION=FILE``
names an rsatoolbox ``Dataset`` saved as HDF5 (``Dataset.save(path, file_type="hdf5")``; stimuli
× channels with a ``stimulus`` observation descriptor; repeat ``REGION=FILE`` for several subjects
of a region), and the layers come from a checkpoint run over ``--stimuli`` (as for RSA) or from
``--layer-patterns FILE.npz`` (one array per layer, stimuli × features; pickles are refused).

The compare command wires this in with three calls (see :func:`add_metric_argument`,
:func:`pattern_inputs`, :func:`metric_kwargs`).

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_metric_argument(parser)
>>> args = parser.parse_args(["--metric", "cka", "--debiased"])
>>> args.metric, metric_kwargs(args)
('cka', {'debiased': True})
"""

from __future__ import annotations

import argparse
from pathlib import Path

METRICS = ("rsa", "cka", "encoding", "procrustes")


def add_metric_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--metric`` and its options on the ``compare`` parser."""
    group = parser.add_argument_group("metric (pattern metrics take brain Datasets, not RDMs)")
    group.add_argument(
        "--metric", default="rsa", choices=METRICS,
        help="rsa (RDMs, default), cka, encoding (cross-validated ridge) or procrustes; the last "
        "three need --brain REGION=DATASET.hdf5",
    )  # fmt: skip
    group.add_argument("--layer-patterns", default=None,
                       help="layer activations as .npz (name -> stimuli × features), instead of "
                            "--checkpoint, for a pattern metric")  # fmt: skip
    group.add_argument("--stimulus-ids", default=None,
                       help="text file with one stimulus label per line, in the layers' order "
                            "(to match the Datasets' 'stimulus' descriptor)")  # fmt: skip
    group.add_argument("--debiased", action="store_true", help="cka: debiased (unbiased HSIC)")
    group.add_argument("--alphas", type=float, nargs="+", default=None,
                       help="encoding: candidate ridge penalties")  # fmt: skip
    group.add_argument("--folds", type=int, default=5, help="encoding: outer folds")
    group.add_argument("--scoring", default="corr", choices=["corr", "r2"],
                       help="encoding: per-voxel score")  # fmt: skip
    group.add_argument("--whiten", type=float, default=1.0,
                       help="procrustes: partial whitening alpha (1 none, 0 full)")  # fmt: skip


def metric_kwargs(args: argparse.Namespace) -> dict:
    """The ``metric_kwargs`` of :func:`brainrdl.compare_layers` from the parsed options."""
    if args.metric == "cka":
        return {"debiased": bool(args.debiased)}
    if args.metric == "encoding":
        out = {"n_folds": args.folds, "scoring": args.scoring}
        if args.alphas:
            out["alphas"] = list(args.alphas)
        return out
    if args.metric == "procrustes":
        return {"alpha": args.whiten}
    return {}


def pattern_inputs(args: argparse.Namespace, region_specs: list[tuple[str, str]]):
    """(brain, layers or None, stimulus ids or None) for a pattern metric.

    ``brain`` maps region → list of ``Dataset`` (one per ``REGION=FILE``, in order). ``layers``
    is a dict from ``--layer-patterns`` (None: the caller taps ``--checkpoint``). Raises
    ValueError / FileNotFoundError naming the option on bad input.
    """
    from rsatoolbox.data import load_dataset

    brain: dict[str, list] = {}
    for region, path in region_specs:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"--brain {region}={path}: no such file")
        if p.suffix.lower() not in (".hdf5", ".h5"):
            raise ValueError(f"--brain {region}={path}: a pattern metric needs an rsatoolbox "
                             "Dataset saved as .hdf5 (pickles are not read)")  # fmt: skip
        brain.setdefault(region, []).append(load_dataset(str(p), file_type="hdf5"))
    layers = None
    if args.layer_patterns:
        import numpy as np

        p = Path(args.layer_patterns)
        if not p.is_file():
            raise FileNotFoundError(f"--layer-patterns {p}: no such file")
        with np.load(p, allow_pickle=False) as npz:
            layers = {name: npz[name] for name in npz.files}
        if not layers:
            raise ValueError(f"--layer-patterns {p}: the file holds no arrays")
    ids = None
    if args.stimulus_ids:
        ids = [line.strip() for line in Path(args.stimulus_ids).read_text().splitlines()
               if line.strip()]  # fmt: skip
    return brain, layers, ids
