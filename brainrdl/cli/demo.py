"""``brainrdl demo``: train a digit CNN with and without RDL toward the demo study's IT-like region.

1. Write the embedded demo study (``data_adapters.demo``: NIfTI betas, atlas) and build the
   teacher RDMs per region from the NIfTI files with the fMRI adapter
   (``data_adapters.fmri.rdms_from_betas``, crossnobis over runs).
2. Split the brain stimuli into training and held-out halves; the task digits exclude all of them.
3. Train the same seeded ``DigitCNN`` twice: baseline (alignment weight 0, so the same batches
   flow but nothing pulls) and RDL (``fc1`` toward IT).
4. Report test accuracy and held-out RSA (Pearson r of the ``fc1`` RDM with the IT RDM on held-out
   stimuli), save learning curves + a layer × region figure and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from brainrdl.cli.options import non_negative_float, positive_int
from brainrdl.train.functional import DEFAULT_COMPARISON, RDL_COMPARISONS

TAPPED_LAYER = "fc1"
LAYERS = ("conv1", "conv2", "fc1", "fc2")
REGIONS = ("EVC", "IT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``brainrdl demo`` options on ``parser``.

    Examples
    --------
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--out", "x", "--epochs", "3"]).epochs
    3
    """
    parser.add_argument(
        "--out", default="brainrdl-demo-out",
        help="output folder, created if missing (default: brainrdl-demo-out)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="torch device (default cpu; cuda needs a CUDA build of torch)")
    parser.add_argument("--epochs", type=positive_int, default=12,
                        help="training epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data split and training")
    parser.add_argument("--weight", type=non_negative_float, default=1.0,
                        help="weight of the RDL term (default 1)")
    parser.add_argument(
        "--comparison",
        default=DEFAULT_COMPARISON,
        choices=list(RDL_COMPARISONS),
        help=f"RDLLoss comparison (default {DEFAULT_COMPARISON}, the stable default of "
        "brainrdl.RDLLoss(); 'paper' is McClure & Kriegeskorte's squared error, which can diverge "
        "under Adam)",
    )
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads (default 1)")
    parser.add_argument("--no-figure", action="store_true", help="skip the figures")


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; writes ``summary.json`` and figures to ``args.out``."""
    summary = run_demo(
        args.out,
        device=args.device,
        epochs=args.epochs,
        seed=args.seed,
        weight=args.weight,
        comparison=args.comparison,
        figure=not args.no_figure,
        threads=args.threads,
    )
    for name in ("baseline", "rdl"):
        s = summary[name]
        print(
            f"{name:9s} accuracy {s['accuracy']:.3f}   held-out RSA with IT {s['heldout_rsa']:.3f}"
        )
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


def _brain_rdms(study: Any) -> dict[str, Any]:
    """Crossnobis RDMs per region (``{roi: rsatoolbox RDMs}``) from the study's NIfTI betas.

    The fMRI adapter (:func:`data_adapters.fmri.rdms_from_betas`) reads the atlas and its label
    table, the design TSV gives stimulus and run per volume, and crossnobis over runs (identity
    noise) estimates the squared distances without noise bias.

    Parameters
    ----------
    study : data_adapters.demo.DemoStudy
        The demo study written by :func:`data_adapters.demo.make_demo_study`.

    Returns
    -------
    dict
        Region name -> ``rsatoolbox.rdm.RDMs`` (pattern descriptor ``stimulus``).
    """
    from data_adapters.fmri import rdms_from_betas

    return rdms_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                           labels=study.atlas_labels, method="crossnobis")  # fmt: skip


def run_demo(
    out: str | Path,
    *,
    device: str = "cpu",
    epochs: int = 12,
    seed: int = 0,
    weight: float = 1.0,
    comparison: str = DEFAULT_COMPARISON,
    n_stimuli: int = 100,
    n_heldout: int = 40,
    figure: bool = True,
    progress: bool = False,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Train baseline and RDL students on the demo study; return (and write) the summary.

    Examples
    --------
    >>> import tempfile
    >>> s = run_demo(tempfile.mkdtemp(), epochs=1, figure=False)  # doctest: +SKIP
    >>> sorted(s["rdl"])  # doctest: +SKIP
    ['accuracy', 'heldout_rsa', ...]
    """
    import torch

    from brainrdl.validation import check_choice, check_device, check_output_dir, check_scalar

    # everything that can be wrong with the call is found here, before data or training
    check_device("device", device)
    check_scalar("epochs", epochs, int, min_val=1)
    check_scalar("weight", weight, float, min_val=0.0)
    check_choice("comparison", comparison, RDL_COMPARISONS)
    check_scalar("n_heldout", n_heldout, int, min_val=3, max_val=n_stimuli - 2)
    check_output_dir("out", out)
    previous_threads = torch.get_num_threads()
    if threads is not None and device == "cpu":
        # this net is tiny: one thread is fastest, and several spin badly on a shared machine
        torch.set_num_threads(threads)
    try:
        return _run_demo(out, device=device, epochs=epochs, seed=seed, weight=weight,
                         comparison=comparison, n_stimuli=n_stimuli, n_heldout=n_heldout,
                         figure=figure, progress=progress)  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


def _run_demo(
    out: str | Path, *, device: str, epochs: int, seed: int, weight: float, comparison: str,
    n_stimuli: int, n_heldout: int, figure: bool, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from brainrdl.nets.models import DigitCNN
    from brainrdl.train.brain_batches import BrainBatches
    from brainrdl.train.loop import fit
    from brainrdl.train.losses import RDLLoss
    from brainrdl.train.teachers import BrainTeacher
    from data_adapters.demo import load_task_digits, make_demo_study

    t_start = time.perf_counter()
    out = Path(out)
    study = make_demo_study(out / "data", seed=seed, n_stimuli=n_stimuli, n_runs=6,
                            with_bold=False, with_nwb=False)  # fmt: skip
    rdms = _brain_rdms(study)
    teacher = BrainTeacher(rdms)

    ids = list(study.stimulus_ids)
    images = torch.as_tensor(study.images, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    held, train = np.sort(order[:n_heldout]), np.sort(order[n_heldout:])
    heldout = (images[held], [ids[i] for i in held])
    brain = (images[train], [ids[i] for i in train])

    task = load_task_digits(exclude_ids=ids)
    x = torch.as_tensor(task.images, dtype=torch.float32)
    y = torch.as_tensor(task.labels)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 4
    test_idx, train_idx = perm[:n_test], perm[n_test:]

    results, logs, models = {}, {}, {}
    for name, w in (("baseline", 0.0), ("rdl", weight)):
        torch.manual_seed(seed)
        model = DigitCNN()
        loader = DataLoader(
            TensorDataset(x[train_idx], y[train_idx]), batch_size=64, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        val = DataLoader(TensorDataset(x[test_idx], y[test_idx]), batch_size=512)
        log = fit(
            model, loader, teacher=teacher, alignment={TAPPED_LAYER: ("IT", w)},
            loss=RDLLoss(comparison=comparison),
            brain_loader=BrainBatches(*brain, batch_size=len(train), mix_ratio=1.0, seed=seed),
            heldout=heldout, val_loader=val, epochs=epochs, device=device, progress=progress,
            lr=2e-3,
        )  # fmt: skip
        last = log.iloc[-1]
        results[name] = {
            "heldout_rsa": float(last[f"heldout_rsa/{TAPPED_LAYER}"]),
            "accuracy": float(last["val_accuracy"]),
            "alignment_weight": w,
        }
        logs[name], models[name] = log, model
        log.to_csv(out / f"log_{name}.csv", index=False)

    table = layer_region_table(models, rdms, heldout, device)
    table.to_csv(out / "layer_region_rsa.csv", index=False)
    summary: dict[str, Any] = {
        **results,
        "tapped_layer": TAPPED_LAYER,
        "target_region": "IT",
        "comparison": comparison,
        "epochs": epochs,
        "seed": seed,
        "n_heldout_stimuli": n_heldout,
        "n_train_brain_stimuli": len(train),
        "n_task_train": len(train_idx),
        "n_task_test": n_test,
        # fit scores held-out RSA with the loss's own distance (correlation for the default)
        "heldout_rsa_metric": "Pearson r between upper triangles of the fc1 "
        f"{RDLLoss(comparison=comparison).distance} RDM and the IT crossnobis RDM on held-out "
        "demo stimuli",
        "layer_region_rsa": table.to_dict(orient="records"),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if figure:
        _figure(logs, table, out)
        for name, log in logs.items():
            plot_curves(log, out / f"curves_{name}.png", monitored_only=name == "baseline")
    return summary


def layer_region_table(
    models: dict[str, Any], brain_rdms: dict[str, Any], heldout: Any, device: str
) -> Any:
    """Held-out RSA of every layer of each model with every region (a long DataFrame).

    Each layer's euclidean RDM over the held-out stimuli is compared with each region's RDM
    restricted to those stimuli by :func:`brainrdl.compare_layers` (Pearson r, ``"corr"``).

    Parameters
    ----------
    models : dict
        Model name -> trained ``torch.nn.Module`` with the layers in ``LAYERS``.
    brain_rdms : dict
        Region name -> ``rsatoolbox.rdm.RDMs`` with a ``stimulus`` pattern descriptor.
    heldout : tuple
        ``(images, stimulus_ids)`` of the held-out stimuli.
    device : str
        Device of the forward passes.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``layer``, ``region``, ``rsa``.
    """
    import pandas as pd
    import torch

    from brainrdl.analysis.layer_comparison import compare_layers

    images, ids = heldout
    brain = {r: brain_rdms[r].subset_pattern("stimulus", list(ids)) for r in REGIONS}
    tables = []
    for name, model in models.items():
        table = compare_layers(
            model, brain, stimuli=images, layer_names=list(LAYERS), stimulus_ids=list(ids),
            method="corr", device=device,
            extract_kwargs={"method": "euclidean", "dtype": torch.float64},
        )  # fmt: skip
        tables.append(table.assign(model=name).rename(columns={"similarity": "rsa"}))
    return pd.concat(tables, ignore_index=True)[["model", "layer", "region", "rsa"]]


def _figure(logs: dict[str, Any], table: Any, out: Path) -> None:
    """``demo.png``: test accuracy and held-out RSA per epoch, and the layer × region RSA grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"wspace": 0.45})
    for name, log in logs.items():
        axes[0].plot(log["epoch"], log["val_accuracy"], marker="o", label=name)
        axes[1].plot(log["epoch"], log[f"heldout_rsa/{TAPPED_LAYER}"], marker="o", label=name)
    axes[0].set(title="digit task", xlabel="epoch", ylabel="test accuracy")
    axes[1].set(title=f"held-out RSA, {TAPPED_LAYER} vs IT", xlabel="epoch",
                ylabel="Pearson r (held-out stimuli)")  # fmt: skip
    for ax in axes[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend()
    for ax, name in zip(axes[2:], logs):
        grid = table[table.model == name].pivot(index="layer", columns="region", values="rsa")
        grid = grid.loc[list(LAYERS), list(REGIONS)]
        im = ax.imshow(grid.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=f"{name}: layer × region RSA", xticks=range(len(REGIONS)),
               yticks=range(len(LAYERS)), xticklabels=REGIONS, yticklabels=LAYERS,
               xlabel="brain region", ylabel="model layer")  # fmt: skip
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    bar = fig.colorbar(im, ax=axes[2:], shrink=0.8)
    bar.set_label("RSA: Pearson r of layer RDM and region RDM\n(held-out stimuli)")
    fig.savefig(out / "demo.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_curves(log: Any, path: str | Path, *, monitored_only: bool = False) -> None:
    """Learning curves of one run: task loss, alignment loss, accuracy, held-out RSA.

    The alignment (RDL) loss has its own panel and axis: its scale differs from the task
    loss's by orders of magnitude, and drawn on one axis it flattens the task curves. For the
    baseline it is only monitored (weight 0, no gradient), which the panel's title says.

    Parameters
    ----------
    log : pandas.DataFrame
        The per-epoch log of :func:`brainrdl.fit`.
    path : str or Path
        PNG file to write.
    monitored_only : bool
        Whether the alignment term had weight 0 (baseline).

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> log = pd.DataFrame({"epoch": [1, 2], "task_loss": [1.0, 0.5], "align/fc1": [9.0, 8.0],
    ...                     "val_accuracy": [0.5, 0.8], "heldout_rsa/fc1": [0.1, 0.2]})
    >>> plot_curves(log, os.path.join(tempfile.mkdtemp(), "c.png"))
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    align = [c for c in log if c.startswith("align/")]
    task = [c for c in log if c.endswith("loss") and c not in align]
    panels = [
        ("task loss", "cross-entropy", task),
        ("alignment loss" + (" (monitored only, weight 0)" if monitored_only else ""),
         "RDL loss", align),
        ("accuracy", "accuracy", [c for c in log if c.endswith("accuracy")]),
        ("held-out RSA", "Pearson r", [c for c in log if c.startswith("heldout_rsa/")]),
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, (title, ylabel, cols) in zip(axes, panels):
        for c in cols:
            ax.plot(log["epoch"], log[c], marker="o", label=c)
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
