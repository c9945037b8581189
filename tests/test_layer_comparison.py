"""compare_layers / compare_models against rsatoolbox."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs, compare
from torch import nn

import brainrdl
from brainrdl.analysis.layer_comparison import compare_models

N = 12
K = N * (N - 1) // 2


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.random(K)
    layers = RDMs(
        np.stack([truth + rng.normal(0, s, K) for s in (0.2, 0.6, 2.0)]),
        rdm_descriptors={"layer": ["conv1", "conv2", "fc"]},
        pattern_descriptors={"stimulus": list(range(N))},
    )
    it = RDMs(
        truth + rng.normal(0, 0.5, (4, K)),
        rdm_descriptors={"subject": ["a", "a", "b", "b"], "session": [1, 2, 1, 2]},
        pattern_descriptors={"stimulus": list(range(N))},
    )
    v1 = RDMs(rng.random((3, K)), rdm_descriptors={"subject": ["a", "b", "c"]},
              pattern_descriptors={"stimulus": list(range(N))})  # fmt: skip
    return layers, {"IT": it, "V1": v1}


@pytest.mark.parametrize("method", ["corr", "spearman", "cosine"])
def test_similarity_and_noise_ceiling_equal_rsatoolbox(method):
    layers, brain = _setup()
    table = brainrdl.compare_layers(layers, brain, method=method, subject_descriptor="subject")
    assert len(table) == 6
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()
    for region, rdms in brain.items():
        expected = compare(layers, rdms, method).mean(1)
        rows = table[table["region"] == region]
        np.testing.assert_allclose(rows["similarity"], expected, rtol=1e-6)
        low, high = boot_noise_ceiling(rdms, method=method, rdm_descriptor="subject")
        np.testing.assert_allclose(rows["noise_ceiling_low"], low, rtol=1e-6)
        np.testing.assert_allclose(rows["noise_ceiling_high"], high, rtol=1e-6)
        assert rows["best"].sum() == 1
        assert rows.loc[rows["best"], "layer"].item() == rows.loc[rows["similarity"].idxmax(),
                                                                   "layer"]  # fmt: skip


def test_bootstrap_cis_bracket_similarity_and_are_reproducible():
    layers, brain = _setup(1)
    kw = dict(subject_descriptor="subject", n_bootstrap=200, seed=0)
    a = brainrdl.compare_layers(layers, brain, **kw)
    b = brainrdl.compare_layers(layers, brain, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert (a["ci_low"] <= a["similarity"]).all() and (a["similarity"] <= a["ci_high"]).all()
    for kind in ("subjects", "both"):
        t = brainrdl.compare_layers(layers, brain, bootstrap=kind, **kw)
        assert np.isfinite(t["ci_low"]).all()


def test_stimulus_alignment_reorders_layer_rdms():
    layers, brain = _setup(2)
    perm = np.random.default_rng(0).permutation(N)
    mats = layers.get_matrices()[:, perm][:, :, perm]
    shuffled = RDMs(mats, rdm_descriptors=layers.rdm_descriptors,
                    pattern_descriptors={"stimulus": list(perm)})  # fmt: skip
    a = brainrdl.compare_layers(layers, brain)
    b = brainrdl.compare_layers(shuffled, brain)
    np.testing.assert_allclose(a["similarity"], b["similarity"], rtol=1e-12)


def test_per_subject_rows():
    layers, brain = _setup(3)
    t = brainrdl.compare_layers(layers, {"IT": brain["IT"]}, subject_descriptor="subject",
                                per_subject=True, n_bootstrap=50, seed=1)  # fmt: skip
    assert set(t["subject"]) == {"all", "a", "b"}
    sub_a = t[t["subject"] == "a"]
    expected = compare(layers, brain["IT"].subset("subject", "a"), "corr").mean(1)
    np.testing.assert_allclose(sub_a["similarity"], expected, rtol=1e-6)
    assert np.isfinite(sub_a["ci_low"]).all()


def test_compare_models_paired_difference():
    layers, brain = _setup(4)
    rng = np.random.default_rng(9)
    after = RDMs(layers.get_vectors() + rng.normal(0, 0.3, (3, K)),
                 rdm_descriptors=layers.rdm_descriptors,
                 pattern_descriptors=layers.pattern_descriptors)  # fmt: skip
    t = compare_models({"before": layers, "after": after}, brain, n_bootstrap=200, seed=0)
    diff = t[t["model"] == "after - before"]
    assert len(diff) == 6
    for row in diff.itertuples():
        sims = t[(t["layer"] == row.layer) & (t["region"] == row.region)].set_index("model")
        assert row.similarity == pytest.approx(
            sims.loc["after", "similarity"] - sims.loc["before", "similarity"])
        assert row.ci_low <= row.ci_high and 0 <= row.p_value <= 1
    # a model against itself: the paired difference is exactly zero in every resample
    same = compare_models({"a": layers, "b": layers}, brain, n_bootstrap=50, seed=0)
    d = same[same["model"] == "b - a"]
    for col in ("similarity", "ci_low", "ci_high"):
        np.testing.assert_allclose(d[col], 0.0, atol=1e-12)


def test_model_input_matches_extracted_rdms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6))
    stimuli = torch.randn(N, 1, 4, 4)
    _, brain = _setup(5)
    t = brainrdl.compare_layers(net, brain, stimuli=stimuli, layer_names=["1", "3"])
    rdms = brainrdl.extract_rdms(net, stimuli, ["1", "3"], progress=False)
    np.testing.assert_allclose(
        t[t["region"] == "IT"]["similarity"], compare(rdms, brain["IT"], "corr").mean(1),
        rtol=1e-6,
    )  # fmt: skip


def test_errors_name_the_argument():
    layers, brain = _setup()
    with pytest.raises(ValueError, match="stimuli"):
        brainrdl.compare_layers(nn.Linear(2, 2), brain)
    with pytest.raises(KeyError, match="subject_descriptor"):
        brainrdl.compare_layers(layers, brain, subject_descriptor="participant")
    with pytest.raises(ValueError, match="method"):
        brainrdl.compare_layers(layers, brain, method="pearson")
    with pytest.raises(TypeError, match="brain_rdms"):
        brainrdl.compare_layers(layers, [1, 2])
    small = RDMs(np.random.default_rng(0).random((2, 10)))
    with pytest.raises(ValueError, match="conditions"):
        brainrdl.compare_layers(RDMs(np.ones((1, K)) + np.arange(K)), {"X": small})


def test_model_with_stimulus_ids_matches_labelled_brain_rdms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6))
    stimuli = torch.randn(N, 1, 4, 4)
    _, brain = _setup(5)
    names = [f"stim-{i:02d}" for i in range(N)]  # as the adapters label stimuli
    labelled = {r: RDMs(b.dissimilarities, rdm_descriptors=b.rdm_descriptors,
                        pattern_descriptors={"stimulus": names})
                for r, b in brain.items()}  # fmt: skip
    with pytest.raises(ValueError, match="stimulus_ids="):
        brainrdl.compare_layers(net, labelled, stimuli=stimuli, layer_names=["1"])
    got = brainrdl.compare_layers(net, labelled, stimuli=stimuli, layer_names="1",
                                  stimulus_ids=names)  # fmt: skip
    ref = brainrdl.compare_layers(net, brain, stimuli=stimuli, layer_names=["1"])
    assert list(got["layer"]) == ["1", "1"]
    np.testing.assert_allclose(got["similarity"], ref["similarity"], rtol=1e-12)
    models = compare_models({"a": net, "b": net}, labelled, stimuli=stimuli, layer_names=["1"],
                            stimulus_ids=names, n_bootstrap=np.int64(5), seed=0)  # fmt: skip
    assert set(models["model"]) == {"a", "b", "b - a"}


def test_layer_names_str_and_numpy_n_bootstrap():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6))
    stimuli = torch.randn(N, 1, 4, 4)
    _, brain = _setup(6)
    a = brainrdl.compare_layers(net, brain, stimuli=stimuli, layer_names="3",
                                n_bootstrap=np.int64(20), seed=0)  # fmt: skip
    b = brainrdl.compare_layers(net, brain, stimuli=stimuli, layer_names=["3"], n_bootstrap=20,
                                seed=0)  # fmt: skip
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="n_bootstrap"):
        brainrdl.compare_layers(net, brain, stimuli=stimuli, layer_names="3", n_bootstrap=2.5)


def test_stimulus_ids_for_precomputed_layer_rdms():
    layers, brain = _setup(7)
    names = [f"s{i}" for i in range(N)]
    labelled = {r: RDMs(b.dissimilarities, rdm_descriptors=b.rdm_descriptors,
                        pattern_descriptors={"stimulus": names})
                for r, b in brain.items()}  # fmt: skip
    got = brainrdl.compare_layers(layers, labelled, stimulus_ids=names)
    np.testing.assert_allclose(got["similarity"], brainrdl.compare_layers(layers, brain)
                               ["similarity"], rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="stimulus_ids has 3 labels"):
        brainrdl.compare_layers(layers, labelled, stimulus_ids=names[:3])
