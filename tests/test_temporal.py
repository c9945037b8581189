"""Layer × time tables: compare_layers per time point, peaks, best layers, curves with a band."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import rsatoolbox
import torch

import brainrdl
from brainrdl.analysis.temporal import compare_layers_over_time, plot_layers_over_time

N_COND = 8
K = N_COND * (N_COND - 1) // 2


@pytest.fixture(scope="module")
def data():
    """Layer 'early' is planted at t=0.1, 'late' at t=0.3, nothing at t=0.0; 4 subjects."""
    rng = np.random.default_rng(0)
    layers = rsatoolbox.rdm.RDMs(rng.random((2, K)), rdm_descriptors={"layer": ["early", "late"]})
    rows, times, subjects = [], [], []
    for t, source in ((0.0, None), (0.1, 0), (0.3, 1)):
        for s in range(4):
            base = np.zeros(K) if source is None else layers.dissimilarities[source]
            rows.append(base + 0.15 * rng.random(K))
            times.append(t)
            subjects.append(f"sub-{s}")
    brain = rsatoolbox.rdm.RDMs(np.array(rows), rdm_descriptors={"time": times,
                                                                "subject": subjects})
    return layers, brain


def test_table_is_compare_layers_per_time_point(data):
    layers, brain = data
    table = compare_layers_over_time(layers, brain, method="corr")
    assert table.shape[0] == 2 * 3
    assert list(table.columns[:3]) == ["layer", "time", "similarity"]
    times = np.array(brain.rdm_descriptors["time"])
    for t in (0.0, 0.1, 0.3):
        sub = brain[np.flatnonzero(times == t)]
        ref = brainrdl.compare_layers(layers, {"x": sub}, method="corr",
                                      subject_descriptor="subject")
        got = table[table["time"] == t].set_index("layer")
        for row in ref.itertuples():
            assert got.loc[row.layer, "similarity"] == pytest.approx(row.similarity)
            assert got.loc[row.layer, "noise_ceiling_low"] == pytest.approx(row.noise_ceiling_low)
            # and the similarity is rsatoolbox's mean correlation over subjects
            idx = ["early", "late"].index(row.layer)
            rsa = rsatoolbox.rdm.compare(layers[idx], sub, method="corr").mean()
            assert row.similarity == pytest.approx(rsa)


def test_best_layer_and_peak_follow_the_planted_times(data):
    layers, brain = data
    table = compare_layers_over_time(layers, brain)
    best = table[table["best"]].set_index("time")["layer"]
    assert best[0.1] == "early" and best[0.3] == "late"
    peaks = table.groupby("layer")["peak"].first()
    assert peaks["early"] == 0.1 and peaks["late"] == 0.3
    assert (table["noise_ceiling_high"] >= table["noise_ceiling_low"] - 1e-12).all()


def test_list_of_rdms_and_bootstrap(data):
    layers, brain = data
    subjects = np.array(brain.rdm_descriptors["subject"])
    parts = [brain[np.flatnonzero(subjects == s)] for s in np.unique(subjects)]
    table = compare_layers_over_time(layers, parts, n_bootstrap=30, seed=0)
    assert np.isfinite(table["ci_low"]).all()
    assert (table["ci_low"] <= table["ci_high"]).all()


def test_model_layers_are_extracted_once():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    x = torch.randn(N_COND, 5)
    layer_rdms = brainrdl.extract_rdms(model, x, ["0", "2"], progress=False)
    brain = rsatoolbox.rdm.RDMs(np.random.default_rng(1).random((2, K)),
                                rdm_descriptors={"time": [0.0, 0.1]})
    a = compare_layers_over_time(model, brain, stimuli=x, layer_names=["0", "2"])
    b = compare_layers_over_time(layer_rdms, brain)
    np.testing.assert_allclose(a["similarity"], b["similarity"])


def test_plot_has_curves_band_and_labels(data):
    layers, brain = data
    ax = plot_layers_over_time(compare_layers_over_time(layers, brain))
    labels = [line.get_label() for line in ax.lines]
    assert "early" in labels and "late" in labels
    assert any(c.get_label() == "noise ceiling" for c in ax.collections)
    assert ax.get_xlabel() == "time (s)" and "corr" in ax.get_ylabel()


def test_named_errors(data):
    layers, brain = data
    with pytest.raises(ValueError, match="no 'when' rdm descriptor"):
        compare_layers_over_time(layers, brain, time_descriptor="when")
    with pytest.raises(TypeError, match="brain_rdms must be"):
        compare_layers_over_time(layers, {"a": brain})
    with pytest.raises(ValueError, match="lacks the columns"):
        import pandas as pd

        plot_layers_over_time(pd.DataFrame({"layer": ["a"]}))
