"""extract_rdms: same RDMs as the tensor engine, in one or many passes, from any stimulus source."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

from brainrdl.analysis.layer_rdms import ImageFolder, extract_rdms
from brainrdl.rsa.distances import pairwise_rdm, upper_tri

LAYERS = ["1", "4", "5"]


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10),
                        nn.ReLU(), nn.Linear(10, 5))  # fmt: skip
    return net.double()


def _reference(net, x, method):
    with torch.no_grad():
        acts = {"1": net[:2](x).flatten(1), "4": net[:5](x), "5": net(x)}
    return np.stack([upper_tri(pairwise_rdm(acts[k], method)).numpy() for k in LAYERS])


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
@pytest.mark.parametrize("budget", [1e9, 5000])  # one pass; many passes with small anchor blocks
def test_equals_pairwise_rdm(method, budget):
    net = _net()
    x = torch.randn(23, 3, 8, 8, dtype=torch.float64) + 2.0
    rdms = extract_rdms(net, x, LAYERS, batch_size=5, method=method, progress=False,
                        memory_budget=budget, dtype=torch.float64)  # fmt: skip
    assert rdms.rdm_descriptors["layer"] == LAYERS
    assert rdms.pattern_descriptors["stimulus"] == list(range(23))
    assert rdms.dissimilarity_measure == method
    ref = _reference(net, x, method)
    assert np.max(np.abs(rdms.get_vectors() - ref)) / np.max(np.abs(ref)) < 1e-10


def test_float32_default_is_close():
    net = _net()
    x = torch.randn(10, 3, 8, 8, dtype=torch.float64)
    rdms = extract_rdms(net, x, LAYERS, progress=False)
    np.testing.assert_allclose(rdms.get_vectors(), _reference(net, x, "correlation"), atol=1e-5)


def test_dataset_loader_and_folder_sources(tmp_path):
    net = _net().float()
    x = torch.rand(7, 3, 8, 8)
    ref = extract_rdms(net, x, ["5"], progress=False).get_vectors()
    ds = torch.utils.data.TensorDataset(x, torch.arange(7))
    got = extract_rdms(net, ds, ["5"], batch_size=3, progress=False)
    np.testing.assert_allclose(got.get_vectors(), ref, atol=1e-6)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    got = extract_rdms(net, loader, ["5"], progress=False, memory_budget=100)
    np.testing.assert_allclose(got.get_vectors(), ref, atol=1e-6)
    for i in range(7):  # PNG round trip at 8 bits: compare with the images as read back
        matplotlib.image.imsave(tmp_path / f"img{i}.png", x[i].permute(1, 2, 0).numpy())
    folder = ImageFolder(tmp_path)
    from_files = torch.stack([folder[i] for i in range(7)])
    got = extract_rdms(net, str(tmp_path), ["5"], progress=False)
    assert got.pattern_descriptors["stimulus"] == [f"img{i}" for i in range(7)]
    np.testing.assert_allclose(
        got.get_vectors(), extract_rdms(net, from_files, ["5"], progress=False).get_vectors(),
        atol=1e-6,
    )  # fmt: skip


def test_random_projection_approximates_wide_layer():
    net = _net()
    x = torch.randn(12, 3, 8, 8, dtype=torch.float64)
    # Johnson-Lindenstrauss: euclidean distances survive a Gaussian projection approximately
    exact = extract_rdms(net, x, ["1"], method="euclidean", progress=False).get_vectors()
    proj = extract_rdms(net, x, ["1"], method="euclidean", reduction="random_projection",
                        projection_dim=2000, progress=False).get_vectors()  # fmt: skip
    assert np.corrcoef(exact[0], proj[0])[0, 1] > 0.95
    again = extract_rdms(net, x, ["1"], method="euclidean", reduction="random_projection",
                         projection_dim=2000, progress=False).get_vectors()  # fmt: skip
    np.testing.assert_array_equal(proj, again)  # seeded


def test_model_state_restored_and_ids():
    net = _net()
    net.train()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    rdms = extract_rdms(net, x, ["5"], stimulus_ids=list("abcd"), progress=False)
    assert net.training
    assert rdms.pattern_descriptors["stimulus"] == list("abcd")


def test_errors():
    net = _net()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        extract_rdms(net, x, ["5"], method="mahalanobis")
    with pytest.raises(KeyError, match="layers"):
        extract_rdms(net, x, ["nope"])
    with pytest.raises(ValueError, match="shuffle"):
        ds = torch.utils.data.TensorDataset(x)
        extract_rdms(net, torch.utils.data.DataLoader(ds, shuffle=True), ["5"])
    with pytest.raises(ValueError, match="stimulus_ids"):
        extract_rdms(net, x, ["5"], stimulus_ids=[1, 2])
    with pytest.raises(TypeError, match="stimuli"):
        extract_rdms(net, [1, 2, 3], ["5"])
    with pytest.raises(ValueError, match="constant"):
        extract_rdms(nn.Sequential(nn.Linear(3, 1)), torch.randn(4, 3), ["0"], progress=False)
