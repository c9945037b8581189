"""`brainrdl demo`: teacher RDMs from the NIfTI files; RDL beats the baseline on held-out IT RSA."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from brainrdl.cli import demo


@pytest.mark.slow
def test_brain_rdms_come_from_fmri_adapter_and_recover_ground_truth(tmp_path, monkeypatch):
    import warnings

    from data_adapters import fmri
    from data_adapters.demo import make_demo_study

    study = make_demo_study(tmp_path, n_stimuli=30, n_runs=4, with_bold=False, with_nwb=False)
    calls = []
    real = fmri.rdms_from_betas

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fmri, "rdms_from_betas", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. "invalid value encountered in cast"
        rdms = demo._brain_rdms(study)
    assert len(calls) == 1 and calls[0]["method"] == "crossnobis"
    assert list(rdms) == ["EVC", "IT"]
    for roi in ("EVC", "IT"):
        assert rdms[roi].dissimilarity_measure == "crossnobis"
        assert list(rdms[roi].pattern_descriptors["stimulus"]) == study.stimulus_ids
        est = rdms[roi].dissimilarities[0]
        truth = study.ground_truth[roi].dissimilarities[0]
        assert np.corrcoef(est, truth)[0, 1] > 0.5


def test_layer_region_table_is_compare_layers():
    from rsatoolbox.rdm import RDMs

    from brainrdl.analysis.layer_comparison import compare_layers
    from brainrdl.nets.models import DigitCNN

    torch.manual_seed(0)
    n = 10
    images = torch.rand(n + 2, 1, 8, 8)
    ids = [f"s{i:02d}" for i in range(n + 2)]
    rng = np.random.default_rng(0)
    brain = {r: RDMs(rng.random((1, (n + 2) * (n + 1) // 2)),
                     pattern_descriptors={"stimulus": ids}) for r in demo.REGIONS}  # fmt: skip
    model = DigitCNN()
    table = demo.layer_region_table({"m": model}, brain, (images[:n], ids[:n]), "cpu")
    assert list(table.columns) == ["model", "layer", "region", "rsa"] and len(table) == 8
    sub = {r: b.subset_pattern("stimulus", ids[:n]) for r, b in brain.items()}
    ref = compare_layers(model, sub, stimuli=images[:n], layer_names=list(demo.LAYERS),
                         stimulus_ids=ids[:n], extract_kwargs={"method": "euclidean"})  # fmt: skip
    np.testing.assert_allclose(table["rsa"], ref["similarity"], rtol=1e-5)


def test_arguments():
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out", "d", "--device", "cpu", "--epochs", "2", "--seed", "3"])
    assert (args.out, args.epochs, args.seed, args.device) == ("d", 2, 3, "cpu")


@pytest.mark.slow
def test_rdl_raises_heldout_it_alignment(tmp_path):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--epochs", "6", "--seed", "0"])
    threads = torch.get_num_threads()
    assert demo.run(args) == 0
    assert torch.get_num_threads() == threads
    summary = json.loads((tmp_path / "summary.json").read_text())
    base, rdl = summary["baseline"], summary["rdl"]
    assert isinstance(base["heldout_rsa"], float) and isinstance(rdl["accuracy"], float)
    # a broken or sign-flipped loss leaves the gap near zero or negative
    assert rdl["heldout_rsa"] > base["heldout_rsa"] + 0.08
    assert rdl["accuracy"] > 0.85 and base["accuracy"] > 0.85
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_out_defaults_to_the_readme_folder():
    import argparse

    from brainrdl.cli import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args([]).out == "brainrdl-demo-out"


def test_demo_figures_are_labelled_and_keep_alignment_apart(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.append(self))
    log = pd.DataFrame({"epoch": [0, 1, 2], "task_loss": [2.0, 1.0, 0.5],
                        "align/fc1": [0.0, 50.0, 175.0], "val_accuracy": [0.5, 0.8, 0.9],
                        "heldout_rsa/fc1": [0.1, 0.2, 0.3]})  # fmt: skip
    demo.plot_curves(log, tmp_path / "c.png", monitored_only=True)
    axes = saved[-1].axes
    task_ax = next(ax for ax in axes if ax.get_title() == "task loss")
    assert [line.get_label() for line in task_ax.lines] == ["task_loss"]  # alignment not here
    assert "monitored only" in axes[1].get_title() and axes[1].get_ylabel() == "RDL loss"
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() for ax in axes)
    table = pd.DataFrame([{"model": m, "layer": layer, "region": r, "rsa": 0.1}
                          for m in ("baseline", "rdl") for layer in demo.LAYERS
                          for r in demo.REGIONS])  # fmt: skip
    demo._figure({"baseline": log, "rdl": log}, table, tmp_path)
    fig = saved[-1]
    labelled = [ax for ax in fig.axes if ax.get_ylabel()]
    assert any("Pearson r" in ax.get_ylabel() for ax in labelled if ax.get_label() == "<colorbar>")
    for ax in fig.axes[:2]:  # epochs drawn as whole numbers
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks)
    plt.close("all")
