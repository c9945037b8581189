"""Plots return Axes, draw into a given ax, and show what the table says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from rsatoolbox.rdm import RDMs

from brainrdl.analysis import plot


@pytest.fixture
def table():
    rows = []
    for region, sims in {"V1": [0.5, 0.3, 0.1], "IT": [0.1, 0.2, 0.4]}.items():
        for layer, s in zip(["conv1", "conv2", "fc"], sims):
            rows.append({"layer": layer, "region": region, "similarity": s, "ci_low": s - 0.05,
                         "ci_high": s + 0.05, "noise_ceiling_low": 0.6,
                         "noise_ceiling_high": 0.8, "method": "corr"})  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_marks_best_layer_per_region(table):
    _fig, ax = plt.subplots()
    out = plot.layer_region_heatmap(table, ax=ax)
    assert out is ax
    data = ax.images[0].get_array()
    np.testing.assert_allclose(data, [[0.5, 0.1], [0.3, 0.2], [0.1, 0.4]])
    boxes = sorted((p.get_x(), p.get_y()) for p in ax.patches)
    assert boxes == [(-0.5, -0.5), (0.5, 1.5)]  # V1 -> conv1 (row 0), IT -> fc (row 2)
    rel = plot.layer_region_heatmap(table, relative_to_ceiling=True)
    np.testing.assert_allclose(rel.images[0].get_array()[0, 0], 0.5 / 0.6)
    plt.close("all")


def test_similarity_profile_band_and_errorbars(table):
    _fig, ax = plt.subplots()
    plot.similarity_profile(table, ax=ax)
    lines = [ln for ln in ax.lines if ln.get_label() in ("V1", "IT")]
    np.testing.assert_allclose(lines[0].get_ydata(), [0.5, 0.3, 0.1])
    bands = [p for p in ax.patches if p.get_alpha() == pytest.approx(0.15)]
    assert len(bands) == 2
    assert len(ax.containers) == 2  # error bars per region
    with pytest.raises(ValueError, match="regions"):
        plot.similarity_profile(table, regions=["MT"])
    plt.close("all")


def test_rdm_image_category_ticks():
    rdm = RDMs(np.random.default_rng(0).random((1, 15)),
               pattern_descriptors={"cat": list("aabbc" + "c")})  # fmt: skip
    ax = plot.rdm_image(rdm, categories="cat")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.get_xticks(), [0.5, 2.5, 4.5])
    ax = plot.rdm_image(rdm.get_matrices()[0], rank=True)
    assert ax.images[0].get_array().max() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="categories"):
        plot.rdm_image(rdm, categories=["a"])
    plt.close("all")


def test_mds_recovers_two_clusters():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.1, (5, 3)), rng.normal(5, 0.1, (5, 3))])
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    _fig, ax = plt.subplots()
    assert plot.mds_plot(d, labels=["a"] * 5 + ["b"] * 5, ax=ax) is ax
    a, b = (c.get_offsets() for c in ax.collections)
    between = np.linalg.norm(a.mean(0) - b.mean(0))
    assert between > 5 * max(np.ptp(a, axis=0).max(), 1e-9) * 0.5
    plt.close("all")


def test_bad_table():
    with pytest.raises(ValueError, match="columns"):
        plot.layer_region_heatmap(pd.DataFrame({"layer": ["a"]}))


def test_rdm_image_sorts_split_categories_into_blocks():
    # stimuli in id order, classes interleaved: one tick per class, blocks after sorting
    labels = list("abcabcabc")
    vec = np.random.default_rng(1).random(36)
    rdm = RDMs(vec[None], dissimilarity_measure="crossnobis",
               pattern_descriptors={"cat": labels})  # fmt: skip
    ax = plot.rdm_image(rdm, categories="cat")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.get_xticks(), [1.0, 4.0, 7.0])
    order = np.argsort(np.array(labels), kind="stable")
    np.testing.assert_allclose(ax.images[0].get_array(),
                               rdm.get_matrices()[0][np.ix_(order, order)])  # fmt: skip
    assert ax.figure.axes[-1].get_ylabel() == "crossnobis dissimilarity"
    ax = plot.rdm_image(rdm, categories="cat", sort=False)
    assert len(ax.get_xticklabels()) == 9  # unsorted: every run gets its tick
    plt.close("all")


def test_similarity_profile_draws_no_ceiling_for_one_brain_rdm():
    import pandas as pd

    table = pd.DataFrame({"layer": ["a", "b"], "region": ["IT", "IT"], "similarity": [0.2, 0.3],
                          "noise_ceiling_low": [1.0, 1.0], "noise_ceiling_high": [1.0, 1.0],
                          "n_rdms": [1, 1], "method": ["corr", "corr"]})  # fmt: skip
    ax = plot.similarity_profile(table)
    assert not ax.patches  # no band at 1-1
    ax = plot.similarity_profile(table.assign(n_rdms=3))
    assert len(ax.patches) == 1
    plt.close("all")
