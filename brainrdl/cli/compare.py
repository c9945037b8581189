"""``brainrdl compare``: a layer × region table and plots for one or several networks.

Layer RDMs come from networks run over a stimulus set (``--model SPEC`` as in
:func:`brainrdl.load_model`, e.g. ``torchvision:resnet18`` or ``module:mymodels:make``, with
``--weights`` and ``--stimuli``), or from a saved rsatoolbox RDMs file (``--layer-rdms``). Brain
RDMs come from ``--brain FILE`` (an rsatoolbox HDF5 file, e.g. written by ``brainrdl rdms``; one
region per value of its ``roi`` rdm descriptor) or ``--brain REGION=FILE``. Writes
``comparison.csv``, ``similarity.png`` and ``heatmap.png`` (one network) or ``models.png`` (one
plot across several networks) into ``--out``.

Nothing here runs code from a data file: ``.pkl`` RDM files are refused unless ``--allow-pickle``
is given, and checkpoints are read with ``torch.load(weights_only=True)``; a whole pickled model
or a TorchScript file needs ``--trust-checkpoint``.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["--model", "torchvision:resnet18", "--stimuli", "img",
...                           "--brain", "rdms.hdf5"])
>>> args.layers, args.n_bootstrap
(['auto'], 1000)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from brainrdl.errors import InvalidArgumentError

DEFAULT_BOOTSTRAP = 1000
RDM_SUFFIXES = (".hdf5", ".h5", ".pkl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``brainrdl compare`` on ``parser``."""
    net = parser.add_argument_group("networks (layer RDMs from a model run over --stimuli)")
    net.add_argument(
        "--model", action="append", metavar="SPEC",
        help="network to compare: torchvision:NAME, timm:NAME, open_clip:NAME, hf:REPO or "
        "module:PKG.MOD:FUNCTION (a factory in your code; the current folder is importable). "
        "Repeat for several networks: one table and one plot across them",
    )  # fmt: skip
    net.add_argument(
        "--weights", action="append", metavar="FILE|NAME",
        help="weights of each --model, in order: a state-dict file (read with "
        "torch.load(weights_only=True)), a library weights name found in its local cache only "
        "('DEFAULT', a timm / open_clip tag; nothing is downloaded), or 'none' for random "
        "weights (the default)",
    )  # fmt: skip
    net.add_argument(
        "--model-factory", metavar="PKG.MOD:FUNCTION",
        help="same as --model module:PKG.MOD:FUNCTION (the current folder is importable)",
    )
    net.add_argument(
        "--checkpoint", metavar="FILE",
        help="weights of the (single) --model / --model-factory network: a state dict, read "
        "with torch.load(weights_only=True). A whole pickled model or a TorchScript file runs "
        "code from the file and is loaded only with --trust-checkpoint",
    )  # fmt: skip
    net.add_argument(
        "--trust-checkpoint", action="store_true",
        help="allow --checkpoint to be a pickled model or TorchScript file (this RUNS CODE from "
        "the file: only for files you made or trust)",
    )  # fmt: skip
    net.add_argument(
        "--stimuli", metavar="DIR|TSV|NPY",
        help="the stimuli: a folder of images whose file names (without suffix) are the brain "
        "RDMs' stimulus ids, a TSV with columns stimulus_id and path, or a .npy array "
        "(N, H, W[, C]) whose ids are 0..N-1",
    )  # fmt: skip
    net.add_argument(
        "--layers", nargs="+", default=["auto"], metavar="NAME",
        help="layers to tap: 'auto' (default: block outputs, pooled features and logits, as "
        "brainrdl.list_layers) or module paths as in model.named_modules()",
    )  # fmt: skip
    net.add_argument("--layer-names", nargs="+", metavar="NAME", help="same as --layers")
    net.add_argument(
        "--tokens", default="cls", choices=["cls", "mean", "flatten"],
        help="how transformer outputs (batch, tokens, features) become one vector per "
        "stimulus: the class token, the mean over tokens, or all tokens (default cls)",
    )  # fmt: skip
    net.add_argument(
        "--reduction", default="flatten", choices=["flatten", "avgpool", "random_projection"],
        help="how other layer outputs become vectors: flatten (default), avgpool (mean over "
        "space) or a seeded random projection to 1024 features",
    )  # fmt: skip
    net.add_argument(
        "--image-size", type=int, default=None, metavar="N",
        help="resize stimuli to N x N before the model's own transform (needed for a "
        "module: model when the images differ in size)",
    )  # fmt: skip
    net.add_argument(
        "--channels", type=int, choices=[1, 3], default=None,
        help="input channels of the model (default: from its transform or first convolution); "
        "greyscale and RGB images are converted",
    )  # fmt: skip
    net.add_argument("--batch-size", type=int, default=32,
                     help="stimuli per forward pass (default 32)")
    net.add_argument("--device", default=None,
                     help="torch device of the forward passes and the bootstrap (default cpu)")
    saved = parser.add_argument_group("saved layer RDMs (instead of --model)")
    saved.add_argument(
        "--layer-rdms", metavar="FILE",
        help="rsatoolbox RDMs file (.hdf5 / .h5) with a 'layer' rdm descriptor",
    )
    brain = parser.add_argument_group("brain RDMs")
    brain.add_argument(
        "--brain", action="append", metavar="[REGION=]FILE",
        help="rsatoolbox RDMs file (.hdf5 / .h5) of the brain, e.g. from brainrdl rdms; "
        "regions from its rdm descriptor --region-descriptor, or REGION=FILE for one region "
        "per file (repeat for several files); required unless --run gives the run's own",
    )  # fmt: skip
    parser.add_argument(
        "--run", default=None, metavar="DIR",
        help="a run folder of brainrdl train: its trained model, layers and held-out stimuli "
        "(and its target RDMs unless --brain is given)",
    )  # fmt: skip
    brain.add_argument(
        "--region-descriptor", default="roi",
        help="rdm descriptor naming the region of each brain RDM (default roi; a file without "
        "it is one region named after the file)",
    )  # fmt: skip
    brain.add_argument(
        "--allow-pickle", action="store_true",
        help="allow .pkl RDM files (unpickling RUNS CODE from the file: only for files you "
        "made or trust; HDF5 is safe)",
    )  # fmt: skip
    stats = parser.add_argument_group("statistics")
    stats.add_argument("--method", default="corr",
                       help="RDM comparison method, as brainrdl.compare: corr (default), "
                       "cosine, spearman, rho-a, tau-a, corr_cov, cosine_cov")
    stats.add_argument(
        "--subject-descriptor", default="auto",
        help="rdm descriptor telling subjects apart, for the noise ceiling and the subject "
        "bootstrap (default auto: 'subject' when the brain RDMs have it, else each RDM)",
    )  # fmt: skip
    stats.add_argument(
        "--n-bootstrap", type=int, default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap resamples for the confidence intervals (default {DEFAULT_BOOTSTRAP}; "
        "0 for none)",
    )  # fmt: skip
    stats.add_argument("--bootstrap", default="stimuli", choices=["stimuli", "subjects", "both"],
                       help="what the bootstrap resamples (default stimuli)")
    stats.add_argument("--ci", type=float, default=0.95,
                       help="coverage of the bootstrap intervals (default 0.95)")
    stats.add_argument("--seed", type=int, default=0,
                       help="seed of the bootstrap and of random weights (default 0)")
    stats.add_argument("--per-subject", action="store_true",
                       help="add one row per layer x region x subject")
    parser.add_argument("--out", default="brainrdl-compare",
                        help="output folder (default brainrdl-compare)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    from brainrdl.cli.compare_metric import add_metric_argument

    add_metric_argument(parser)


class CompareError(InvalidArgumentError):
    """Bad input to ``brainrdl compare`` (reported as ``brainrdl compare: error: ...``)."""


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl compare``; returns 0 on success.

    Bad input raises a named error, which ``brainrdl.cli.main`` reports as ``brainrdl compare:
    error: argument --option: ...`` with exit status 2; the cheap checks come first, before any
    file is read or model built.
    """
    from brainrdl.rsa.methods import COMPARISON_METHODS
    from brainrdl.validation import check_choice, check_scalar

    if getattr(args, "metric", "rsa") != "rsa":
        return _run_pattern_metric(args)
    check_choice("method", args.method, COMPARISON_METHODS)
    check_scalar("n_bootstrap", args.n_bootstrap, int, min_val=0)
    check_scalar("ci", args.ci, float, min_val=0.0, max_val=1.0,
                 include_min=False, include_max=False)
    if args.run is not None:
        return _run_folder(args)
    if not args.brain:
        raise CompareError("--brain is required (or --run DIR, a brainrdl train run folder)")
    out = _check_out(args.out)
    brain = _brain(args)
    sources = _sources(args, brain)
    table = _table(args, sources, brain)
    _write(args, table, out, several=len(sources) > 1)
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    """``--run DIR``: the trained model of a ``brainrdl train`` run on its held-out stimuli,
    against ``--brain`` or the run's own target RDMs."""
    import torch

    from brainrdl.analysis.layer_comparison import compare_layers
    from brainrdl.runs.runner import load_run

    out = _check_out(args.out)
    run = load_run(args.run)
    if run.stimuli is None:
        raise CompareError(f"--run {args.run!r}: the run saved no held-out stimuli to compare on")
    brain = _brain(args) if args.brain else run.brain_rdms
    table = compare_layers(
        run.model, brain, stimuli=run.stimuli, layer_names=run.layers,
        stimulus_ids=run.stimulus_ids, method=args.method, n_bootstrap=args.n_bootstrap,
        bootstrap=args.bootstrap, ci=args.ci, seed=args.seed, device=args.device,
        extract_kwargs={"method": run.config["heldout"]["rdm_method"], "dtype": torch.float64,
                        "progress": not args.no_progress},
    )  # fmt: skip
    table.insert(0, "model", Path(args.run).name)
    _write(args, table, out, several=False)
    return 0


def _run_pattern_metric(args: argparse.Namespace) -> int:
    """``--metric cka|encoding|procrustes``: brain patterns (rsatoolbox Datasets in HDF5, one
    ``REGION=FILE`` per subject) against layer patterns (``--layer-patterns`` .npz, or one
    ``--model`` run over ``--stimuli``)."""
    from brainrdl.analysis.layer_comparison import compare_layers
    from brainrdl.cli.compare_metric import metric_kwargs, pattern_inputs
    from brainrdl.validation import check_scalar

    check_scalar("n_bootstrap", args.n_bootstrap, int, min_val=0)
    out = _check_out(args.out)
    specs = []
    for spec in args.brain:
        region, sep, path = spec.partition("=")
        if not sep or not region or not path:
            raise CompareError(f"--brain: a pattern metric needs REGION=FILE (a Dataset per "
                               f"subject); got {spec!r}")  # fmt: skip
        specs.append((region, path))
    brain, layers, ids = pattern_inputs(args, specs)
    common = dict(metric=args.metric, metric_kwargs=metric_kwargs(args) or None,
                  n_bootstrap=args.n_bootstrap, bootstrap=args.bootstrap, ci=args.ci,
                  seed=args.seed, device=args.device)  # fmt: skip
    if layers is not None:
        table = compare_layers(layers, brain, stimulus_ids=ids, **common)
        name = Path(args.layer_patterns).stem
    else:
        specs_m = list(args.model or [])
        if len(specs_m) != 1 or not args.stimuli:
            raise CompareError("a pattern metric takes --layer-patterns FILE.npz, or one --model "
                               "SPEC with --stimuli DIR")  # fmt: skip
        import torch

        from brainrdl.analysis.stimuli import StimulusSet
        from brainrdl.nets.layers import expand_layers
        from brainrdl.nets.loading import load_model

        torch.manual_seed(args.seed)
        weights = (args.weights or [None])[0]
        model, transform, default_layers = load_model(specs_m[0], weights)
        stim = StimulusSet.from_any(args.stimuli, size=args.image_size).for_model(transform, model)
        layer_names = (default_layers if not args.layers or args.layers == ["auto"]
                       else expand_layers(model, args.layers))  # fmt: skip
        table = compare_layers(model, brain, stimuli=stim, layer_names=layer_names,
                               stimulus_ids=ids or list(stim.ids), **common)  # fmt: skip
        name = specs_m[0]
    table.insert(0, "model", name)
    _write(args, table, out, several=False)
    return 0


# ------------------------------------------------------------------------------------- inputs


def _check_out(path: str) -> Path:
    """Create the output folder and check that it is writable, before any work."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {str(out.resolve())!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".brainrdl-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CompareError(f"--out: cannot write into {str(out.resolve())!r} ({err})") from err
    return out


def load_rdms(path: str, option: str, allow_pickle: bool = False):
    """Read an rsatoolbox RDMs file: HDF5, or ``.pkl`` only with ``allow_pickle``.

    Examples
    --------
    >>> load_rdms("x.pkl", "--brain")
    Traceback (most recent call last):
    ...
    brainrdl.cli.compare.CompareError: --brain: 'x.pkl' is a pickle file; ...
    """
    p = Path(path)
    if p.suffix not in RDM_SUFFIXES:
        raise CompareError(
            f"{option}: {path!r} must be an rsatoolbox RDMs file (.hdf5 or .h5); write one with "
            "brainrdl rdms or RDMs.save(path, file_type='hdf5')"
        )
    if p.suffix == ".pkl" and not allow_pickle:
        raise CompareError(
            f"{option}: {path!r} is a pickle file; unpickling runs code stored in the file, so "
            "brainrdl refuses it. Convert it to HDF5 (rsatoolbox: RDMs.save(path, "
            "file_type='hdf5')) or, for a file you made yourself, pass --allow-pickle"
        )
    if not p.is_file():
        raise FileNotFoundError(f"{option}: no such file {str(p.resolve())!r}")
    from rsatoolbox.rdm import load_rdm

    try:
        return load_rdm(str(p), file_type="pkl" if p.suffix == ".pkl" else "hdf5")
    except (OSError, KeyError, ValueError) as err:
        raise CompareError(
            f"{option}: cannot read {str(p.resolve())!r} as rsatoolbox RDMs ({err})"
        ) from err


def _brain(args) -> dict:
    regions: dict = {}
    for spec in args.brain:
        region, sep, path = spec.partition("=")
        if sep and (not region or not path):
            raise CompareError(f"--brain expects FILE or REGION=FILE; got {spec!r}")
        if not sep:
            path, region = spec, None
        rdms = load_rdms(path, "--brain", args.allow_pickle)
        desc = args.region_descriptor
        if region is None and desc in rdms.rdm_descriptors:
            for name in dict.fromkeys(str(r) for r in rdms.rdm_descriptors[desc]):
                _add_region(regions, name, rdms.subset(desc, _typed(rdms, desc, name)), path)
        else:
            _add_region(regions, region or Path(path).stem, rdms, path)
    return regions


def _typed(rdms, desc, name):
    for value in rdms.rdm_descriptors[desc]:
        if str(value) == name:
            return value
    return name


def _add_region(regions: dict, name: str, rdms, path: str) -> None:
    if name in regions:
        raise CompareError(f"--brain: region {name!r} is given twice (again in {path!r})")
    regions[name] = rdms


def _brain_ids(brain: dict) -> list | None:
    """The stimulus ids the brain RDMs need (union over regions, in first-seen order)."""
    ids: dict[str, object] = {}
    for rdms in brain.values():
        labels = rdms.pattern_descriptors.get("stimulus")
        if labels is None:
            return None
        for label in labels:
            ids.setdefault(str(label), label.item() if hasattr(label, "item") else label)
    return list(ids.values())


def _sources(args, brain: dict) -> dict:
    """Name → model bundle (model, transform, layers) or saved layer RDMs."""
    from brainrdl.nets.loading import load_model

    specs = list(args.model or [])
    if args.model_factory:
        specs.append("module:" + args.model_factory)
    legacy = (args.layers and len(args.layers) == 1
              and Path(args.layers[0]).suffix in RDM_SUFFIXES)  # fmt: skip
    layer_rdms = args.layer_rdms or (args.layers[0] if legacy else None)
    if args.layer_names:
        args.layers = args.layer_names
    elif legacy:
        args.layers = ["auto"]
    if layer_rdms is None and not specs and args.checkpoint is None:
        raise CompareError(
            "give the layer RDMs: --model SPEC --stimuli DIR (a network run over stimuli) or "
            "--layer-rdms FILE (saved RDMs)"
        )
    sources: dict = {}
    if layer_rdms is not None:
        rdms = load_rdms(layer_rdms, "--layer-rdms", args.allow_pickle)
        sources[Path(layer_rdms).stem] = rdms
    weights = list(args.weights or [])
    if weights and len(weights) != len(specs):
        raise CompareError(
            f"--weights: give one per --model ({len(specs)} networks), 'none' for random "
            f"weights; got {len(weights)}"
        )
    if args.checkpoint is not None and len(specs) > 1:
        raise CompareError("--checkpoint goes with one network; use --weights FILE per --model")
    if args.checkpoint is not None and weights:
        raise CompareError("give the weights as --weights or as --checkpoint, not both")
    if specs or args.checkpoint is not None:
        if not args.stimuli:
            raise CompareError("--model needs --stimuli (a folder of images, a TSV or a .npy)")
        _stimuli(args, brain)  # check ids before building any network
    if not specs and args.checkpoint is not None:  # a bare --checkpoint: a whole model
        model = _trusted_checkpoint(args)
        from brainrdl.nets.layers import list_layers
        from brainrdl.nets.loading import ImageTransform, input_channels

        sources[Path(args.checkpoint).stem] = (
            model, ImageTransform(channels=input_channels(model)), list_layers(model))
        return sources
    for i, spec in enumerate(specs):
        w = weights[i] if weights else None
        w = None if w is not None and w.lower() in ("none", "random") else w
        import torch

        torch.manual_seed(args.seed)  # random weights: the same network on every run
        model, transform, layers = load_model(spec, w)
        if args.checkpoint is not None:
            _checkpoint_into(model, args)
            w = args.checkpoint
        name = spec if len(specs) == len(set(specs)) else f"{spec} [{_weights_label(w)}]"
        if name in sources:
            raise CompareError(f"--model {spec!r} with the same weights is given twice")
        sources[name] = (model, transform, layers)
    return sources


def _weights_label(weights) -> str:
    if weights is None:
        return "random"
    return Path(weights).name if Path(weights).suffix else str(weights)


def _checkpoint_into(model, args) -> None:
    """Load ``--checkpoint`` into a built network: weights only, unless trusted."""
    from brainrdl.nets.loading import WeightsError, load_weights

    try:
        load_weights(model, args.checkpoint)
    except WeightsError as err:
        if not args.trust_checkpoint or "not a plain weights file" not in str(err):
            raise CompareError(
                f"--checkpoint: {err}" + ("" if args.trust_checkpoint else
                                         "; a whole pickled model needs --trust-checkpoint")
            ) from err  # fmt: skip
        loaded = _unsafe_load(args.checkpoint)
        state = loaded.state_dict() if hasattr(loaded, "state_dict") else loaded
        model.load_state_dict(state)


def _trusted_checkpoint(args):
    """A whole model from ``--checkpoint`` (pickled module or TorchScript): needs trust."""
    path = Path(args.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint: no such file {str(path.resolve())!r}")
    if not args.trust_checkpoint:
        raise CompareError(
            f"--checkpoint {str(path)!r} without --model: loading a whole pickled model or a "
            "TorchScript file runs code from the file. Save model.state_dict() and give "
            "--model SPEC (or --model-factory PKG.MOD:FUNCTION) with --checkpoint, or pass "
            "--trust-checkpoint for a file you made yourself"
        )
    return _unsafe_load(path)


def _unsafe_load(path):
    """TorchScript or a full pickle: only reached with ``--trust-checkpoint``."""
    import torch

    print(f"warning: --trust-checkpoint: loading {str(path)!r} runs the code stored in it",
          file=sys.stderr)  # fmt: skip
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated but still loads old files
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        pass  # not TorchScript
    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        obj = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(obj, (torch.nn.Module, dict)):
        raise CompareError(f"--checkpoint: {str(path)!r} holds a {type(obj).__name__}, not a model")
    return obj


def _stimuli(args, brain: dict):
    """The stimulus set, checked against the brain RDMs' ids (cached on ``args``)."""
    from brainrdl.analysis.stimuli import StimulusSet

    if getattr(args, "_stimulus_set", None) is not None:
        return args._stimulus_set, args._brain_ids
    stim = StimulusSet.from_any(args.stimuli, size=args.image_size)
    brain_ids = _brain_ids(brain)
    if brain_ids is None:
        n = {r.n_cond for r in brain.values()}
        if n != {len(stim)}:
            raise CompareError(
                f"--brain RDMs have no 'stimulus' pattern descriptor and {sorted(n)} stimuli, "
                f"but --stimuli has {len(stim)}: give the brain RDMs stimulus ids"
            )
        ids = list(stim.ids)
    else:
        mapping = stim.check_ids(brain_ids, source=f"--brain RDMs ({', '.join(args.brain)})")
        ids = [mapping.get(s, s) for s in stim.ids]  # the brain's own labels (int 3, not "3")
    args._stimulus_set, args._brain_ids = stim, ids
    return stim, ids


# ---------------------------------------------------------------------------------- the table


def _table(args, sources: dict, brain: dict):
    import pandas as pd

    from brainrdl.analysis.layer_comparison import compare_layers, compare_models

    entries = {}
    for name, src in sources.items():
        if isinstance(src, tuple):
            entries[name] = _layer_rdms(args, brain, *src)
        else:
            entries[name] = src
    subject = _subject_descriptor(args.subject_descriptor, brain)
    common = dict(method=args.method, subject_descriptor=subject, n_bootstrap=args.n_bootstrap,
                  bootstrap=args.bootstrap, ci=args.ci, seed=args.seed,
                  device=args.device)  # fmt: skip
    if len(entries) == 1:
        (name, rdms), = entries.items()
        table = compare_layers(rdms, brain, per_subject=args.per_subject, **common)
        table.insert(0, "model", name)
        return table
    table = compare_models(entries, brain, **common)
    return pd.DataFrame(table)


def _subject_descriptor(value: str, brain: dict):
    if value != "auto":
        return value
    has = all("subject" in r.rdm_descriptors and len(set(map(str, r.rdm_descriptors["subject"])))
              > 1 for r in brain.values())  # fmt: skip
    return "subject" if has else None


def _layer_rdms(args, brain, model, transform, default_layers):
    from brainrdl.analysis.layer_rdms import extract_rdms
    from brainrdl.nets.layers import expand_layers
    from brainrdl.nets.taps import resolve_layers

    stim, ids = _stimuli(args, brain)
    stim = stim.for_model(transform, model)
    if args.channels is not None:
        stim = stim.with_options(channels=args.channels)
    layers = default_layers if args.layers == ["auto"] else expand_layers(model, args.layers)
    resolve_layers(model, layers)  # an unknown name fails here, before any forward pass
    reduction = _reductions(args, model, stim, layers)
    return extract_rdms(model, stim, layers, batch_size=args.batch_size, device=args.device,
                        reduction=reduction, stimulus_ids=ids,
                        progress=not args.no_progress)  # fmt: skip


def _reductions(args, model, stim, layers) -> dict:
    """Per layer: ``--tokens`` for (batch, tokens, features) outputs, else ``--reduction``."""
    import torch

    from brainrdl.nets.taps import LayerTaps

    x = torch.stack([stim[i] for i in range(min(2, len(stim)))])
    device = args.device or "cpu"
    try:
        with LayerTaps(model, layers, reduction="none", detach=True) as taps, torch.no_grad():
            was = model.training
            model.eval()
            taps.extract(x.to(device) if device != "cpu" else x)
            model.train(was)
            shapes = {k: v.ndim for k, v in taps.activations.items()}
    except RuntimeError as err:  # a shape mismatch: say what the images were
        raise CompareError(
            f"the model cannot run on the stimuli (images of shape {tuple(x.shape[1:])}): "
            f"{str(err).splitlines()[0]}; set --image-size or --channels"
        ) from err
    return {name: (args.tokens if shapes[name] == 3 else args.reduction) for name in layers}


# ----------------------------------------------------------------------------------- outputs


def _write(args, table, out: Path, several: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from brainrdl.analysis import plot

    table.to_csv(out / "comparison.csv", index=False)
    written = ["comparison.csv"]
    if several:
        fig = models_plot(table)
        fig.savefig(out / "models.png", dpi=120)
        written.append("models.png")
    else:
        single = table.drop(columns="model")
        ax = plot.similarity_profile(single)
        ax.figure.tight_layout()
        ax.figure.savefig(out / "similarity.png", dpi=120)
        ax = plot.layer_region_heatmap(single)
        ax.figure.tight_layout()
        ax.figure.savefig(out / "heatmap.png", dpi=120)
        written += ["similarity.png", "heatmap.png"]
    plt.close("all")
    pooled = table if "subject" not in table else table[table["subject"].astype(str) == "all"]
    for row in pooled[pooled["best"] == True].itertuples():  # noqa: E712 (NaN on diff rows)
        ci = (f", {args.ci:.0%} CI {row.ci_low:.3f} to {row.ci_high:.3f}"
              if row.ci_low == row.ci_low else "")  # fmt: skip
        low, high = row.noise_ceiling_low, row.noise_ceiling_high
        ceiling = (f"noise ceiling {low:.3f}-{high:.3f}" if low == low and high == high
                   and row.n_rdms > 1 else "no noise ceiling (one brain RDM)")  # fmt: skip
        model = f"{row.model}: " if several else ""
        print(f"{model}{row.region}: best layer {row.layer} (similarity {row.similarity:.3f}"
              f"{ci}; {ceiling})")  # fmt: skip
    n_boot = f"{args.n_bootstrap} bootstrap resamples of {args.bootstrap}" if args.n_bootstrap \
        else "no bootstrap"  # fmt: skip
    print(f"wrote {', '.join(str(out / w) for w in written)} ({n_boot})")


def models_plot(table):
    """One panel per region: each network's similarity across its relative depth.

    Layers are placed at their relative depth (first layer 0, last 1) so that networks with
    different numbers of layers share the x axis; bars are the bootstrap intervals and the
    grey band the noise ceiling.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> t = pd.DataFrame({"model": ["a", "a", "b"], "layer": ["x", "y", "z"],
    ...                   "region": ["IT"] * 3, "similarity": [0.1, 0.3, 0.2],
    ...                   "ci_low": [0.0, 0.2, 0.1], "ci_high": [0.2, 0.4, 0.3],
    ...                   "noise_ceiling_low": [0.5] * 3, "noise_ceiling_high": [0.6] * 3,
    ...                   "method": ["corr"] * 3})
    >>> len(models_plot(t).axes)
    1
    """
    import matplotlib.pyplot as plt
    import numpy as np

    t = table[~table["model"].astype(str).str.contains(" - ", regex=False)]
    if "subject" in t:
        t = t[t["subject"].astype(str) == "all"]
    regions = list(dict.fromkeys(t["region"]))
    fig, axes = plt.subplots(1, len(regions), figsize=(4.5 * len(regions), 3.6), squeeze=False)
    method = str(t["method"].iloc[0]) if "method" in t and len(t) else "similarity"
    for ax, region in zip(axes[0], regions):
        r = t[t["region"] == region]
        for i, (model, m) in enumerate(r.groupby("model", sort=False)):
            x = np.linspace(0, 1, len(m)) if len(m) > 1 else np.array([1.0])
            y = m["similarity"].to_numpy(float)
            color = f"C{i % 10}"
            ax.plot(x, y, "o-", color=color, label=str(model))
            low, high = m["ci_low"].to_numpy(float), m["ci_high"].to_numpy(float)
            if np.isfinite(low).any():
                ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=color, capsize=3)
        lo = float(np.nanmean(r["noise_ceiling_low"]))
        hi = float(np.nanmean(r["noise_ceiling_high"]))
        if np.isfinite(lo) and np.isfinite(hi):
            ax.axhspan(lo, hi, color="0.5", alpha=0.2, linewidth=0, label="noise ceiling")
        ax.set_title(str(region))
        ax.set_xlabel("relative layer depth (first = 0, last = 1)")
        ax.set_ylabel(f"RDM similarity ({method})")
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig
