"""Real data (../shared/data/kriegeskorte2008): loader, hIT noise ceilings, a CNN vs hIT/mIT."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import compare
from torch import nn

import brainrdl
from brainrdl.analysis import plot
from brainrdl.datasets.kriegeskorte2008 import load_kriegeskorte2008

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def data(kriegeskorte2008):
    return kriegeskorte2008


def test_loader_contents(data):
    assert tuple(data.images.shape) == (92, 3, 175, 175)
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert data.hit.n_rdm == 8 and data.hit.n_cond == 92
    assert sorted(set(data.hit.rdm_descriptors["subject"])) == ["BE", "KO", "SN", "TI"]
    assert data.fig1.rdm_descriptors["region"] == ["mIT", "hIT"]
    assert data.category_vectors.shape == (92, 12)
    assert int((data.animacy() == "animate").sum()) == 48  # 48 animate, 44 inanimate images
    # the RDMs are 1 - Pearson r between response patterns: symmetric, zero diagonal
    mats = data.hit.get_matrices()
    np.testing.assert_allclose(mats, np.transpose(mats, (0, 2, 1)))


@pytest.mark.parametrize("method", ["corr", "spearman"])
def test_hit_noise_ceiling_equals_rsatoolbox(data, method):
    expected = boot_noise_ceiling(data.hit, method=method, rdm_descriptor="subject")
    got = brainrdl.noise_ceiling(data.hit, method, "subject")
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert 0 < got[0] < got[1] < 1


@pytest.mark.slow
def test_small_cnn_against_hit_and_mit(data, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip
    layers = ["1", "4", "8", "9"]
    table = brainrdl.compare_layers(
        net, data.region_rdms(), stimuli=data.images, layer_names=layers, method="corr",
        subject_descriptor="subject", n_bootstrap=100, seed=0,
    )  # fmt: skip
    assert len(table) == 8 and set(table["region"]) == {"hIT", "mIT"}
    rdms = brainrdl.extract_rdms(net, data.images, layers, progress=False)
    hit = table[table["region"] == "hIT"]
    np.testing.assert_allclose(hit["similarity"], compare(rdms, data.hit, "corr").mean(1),
                               rtol=1e-6)  # fmt: skip
    low, _high = boot_noise_ceiling(data.hit, method="corr", rdm_descriptor="subject")
    np.testing.assert_allclose(hit["noise_ceiling_low"], low, rtol=1e-6)
    assert (table["ci_low"] <= table["ci_high"]).all()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    plot.similarity_profile(table, ax=axes[0])
    plot.layer_region_heatmap(table, ax=axes[1])
    plot.rdm_image(data.hit, categories=list(data.categories), ax=axes[2])
    plot.mds_plot(rdms.subset("layer", "9"), labels=data.animacy(), ax=axes[3])
    fig.savefig(tmp_path / "kriegeskorte.png")
    plt.close(fig)
    assert (tmp_path / "kriegeskorte.png").stat().st_size > 10_000


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder"):
        load_kriegeskorte2008(tmp_path)
