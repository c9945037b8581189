"""``brainrdl compare``: layer × region table and plots from saved RDMs or a model checkpoint.

Layer RDMs come either from a saved rsatoolbox RDMs file (``--layers``, hdf5 or pkl, with a
``layer`` rdm descriptor) or from a model checkpoint run over a folder of images (``--checkpoint``
+ ``--stimuli`` + ``--layer-names``). Brain RDMs are given per region as ``--brain REGION=FILE``.
Writes ``comparison.csv``, ``similarity.png`` and ``heatmap.png`` into ``--out``.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> parser.parse_args(["--layers", "l.hdf5", "--brain", "IT=it.hdf5"]).brain
['IT=it.hdf5']
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``brainrdl compare`` on ``parser``."""
    src = parser.add_argument_group("layer RDMs (one of)")
    src.add_argument("--layers", help="saved layer RDMs (rsatoolbox .hdf5/.h5 or .pkl)")
    src.add_argument(
        "--checkpoint",
        help="model checkpoint: a pickled nn.Module (torch.save(model)), TorchScript, or a "
        "state dict together with --model-factory",
    )
    src.add_argument(
        "--model-factory",
        help="'package.module:function' returning the model, when --checkpoint is a state dict",
    )
    src.add_argument("--stimuli", help="folder of stimulus images (with --checkpoint)")
    src.add_argument("--layer-names", nargs="+", help="module paths to tap (with --checkpoint)")
    src.add_argument("--image-size", type=int, default=None, help="resize images to N x N")
    src.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--brain",
        action="append",
        required=True,
        metavar="REGION=FILE",
        help="brain RDMs of a region (repeat for several regions)",
    )
    parser.add_argument("--method", default="corr", help="comparison method (default corr)")
    parser.add_argument("--subject-descriptor", default=None, help="rdm descriptor of subjects")
    parser.add_argument("--n-bootstrap", type=int, default=0)
    parser.add_argument("--bootstrap", default="stimuli", choices=["stimuli", "subjects", "both"])
    parser.add_argument("--ci", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--per-subject", action="store_true", help="add per-subject rows")
    parser.add_argument("--out", default="brainrdl-compare", help="output folder")


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl compare``; returns the exit status (0 on success, 2 on bad input)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from brainrdl.analysis import plot
    from brainrdl.analysis.layer_comparison import compare_layers

    try:
        brain = {region: _load_rdms(path, "--brain") for region, path in _regions(args.brain)}
        layers, stimuli, layer_names = _layers(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"brainrdl compare: error: {err}")
        return 2
    table = compare_layers(
        layers,
        brain,
        stimuli=stimuli,
        layer_names=layer_names,
        method=args.method,
        subject_descriptor=args.subject_descriptor,
        n_bootstrap=args.n_bootstrap,
        bootstrap=args.bootstrap,
        ci=args.ci,
        seed=args.seed,
        device=args.device,
        per_subject=args.per_subject,
        extract_kwargs={"batch_size": args.batch_size, "progress": True},
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    ax = plot.similarity_profile(table)
    ax.figure.tight_layout()
    ax.figure.savefig(out / "similarity.png", dpi=120)
    ax = plot.layer_region_heatmap(table)
    ax.figure.tight_layout()
    ax.figure.savefig(out / "heatmap.png", dpi=120)
    plt.close("all")
    best = table[table["best"]] if "subject" not in table else table[
        table["best"] & (table["subject"].astype(str) == "all")]  # fmt: skip
    for row in best.itertuples():
        print(f"{row.region}: best layer {row.layer} (similarity {row.similarity:.3f}, noise "
              f"ceiling {row.noise_ceiling_low:.3f}-{row.noise_ceiling_high:.3f})")  # fmt: skip
    print(f"wrote {out / 'comparison.csv'}, similarity.png, heatmap.png")
    return 0


def _regions(specs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        region, sep, path = spec.partition("=")
        if not sep or not region or not path:
            raise ValueError(f"--brain expects REGION=FILE; got {spec!r}")
        pairs.append((region, path))
    return pairs


def _load_rdms(path: str, option: str):
    from rsatoolbox.rdm import load_rdm

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{option}: no such file {path!r}")
    kind = "pkl" if p.suffix == ".pkl" else "hdf5" if p.suffix in (".h5", ".hdf5") else None
    if kind is None:
        raise ValueError(f"{option}: {path!r} must be an rsatoolbox RDMs file (.hdf5, .h5, .pkl)")
    return load_rdm(str(p), file_type=kind)


def _layers(args):
    if (args.layers is None) == (args.checkpoint is None):
        raise ValueError("give either --layers (saved RDMs) or --checkpoint (with --stimuli)")
    if args.layers is not None:
        return _load_rdms(args.layers, "--layers"), None, None
    if not args.stimuli or not args.layer_names:
        raise ValueError("--checkpoint needs --stimuli FOLDER and --layer-names NAME [NAME ...]")
    from brainrdl.analysis.layer_rdms import ImageFolder

    model = load_model(args.checkpoint, args.model_factory)
    return model, ImageFolder(args.stimuli, size=args.image_size), args.layer_names


def load_model(checkpoint: str, factory: str | None = None):
    """Load a model from a pickled module, TorchScript file, or state dict + factory.

    A state dict is read with ``torch.load(weights_only=True)``, which runs no code from the
    file. A pickled module needs ``weights_only=False``, which executes the pickle: that is done
    only when the safe read fails, with a warning on stderr that the file is trusted as code.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save(torch.nn.Linear(2, 3), path)
    >>> load_model(path).out_features
    3
    """
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint: no such file {checkpoint!r}")
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated but still loads old files
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        pass  # not TorchScript
    obj = _torch_load(path)
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        state = obj.get("state_dict", obj.get("model", obj))
        if factory is None:
            raise ValueError(
                "--checkpoint holds a state dict; give --model-factory 'package.module:function' "
                "that builds the model"
            )
        module_name, _, fn = factory.partition(":")
        if not fn:
            raise ValueError(f"--model-factory expects 'package.module:function'; got {factory!r}")
        model = getattr(importlib.import_module(module_name), fn)()
        model.load_state_dict(state)
        return model
    raise ValueError(f"--checkpoint: {checkpoint!r} holds a {type(obj).__name__}, not a model")


def _torch_load(path: Path):
    """``torch.load`` running pickled code only when the weights-only read fails (warns)."""
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # holds objects other than tensors, e.g. a whole module
        pass
    print(
        f"warning: --checkpoint {str(path)!r} is not a plain weights file; loading it with "
        "torch.load(weights_only=False), which runs the code pickled in it: only use "
        "checkpoints you trust (a state dict + --model-factory avoids this)",
        file=sys.stderr,
    )
    return torch.load(str(path), map_location="cpu", weights_only=False)
