"""compare_layers(metric=...) for pattern metrics: table, references, bootstrap, ceilings."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch

import brainrdl
from brainrdl.stats.cka import cka
from brainrdl.stats.encoding import ridge_encoding
from brainrdl.stats.procrustes import procrustes_distance

COLUMNS = {"layer", "region", "metric", "similarity", "ci_low", "ci_high"}


def _setup(n=24, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 5))
    layers = {
        "early": torch.tensor(rng.standard_normal((n, 12))),
        "late": torch.tensor(
            latent @ rng.standard_normal((5, 20)) + 0.3 * rng.standard_normal((n, 20))
        ),
    }
    it = latent @ rng.standard_normal((5, 30)) + 0.5 * rng.standard_normal((n, 30))
    return layers, {"IT": rsatoolbox.data.Dataset(it)}, it


@pytest.mark.parametrize("metric", ["cka", "encoding", "procrustes"])
def test_table_and_values_match_metric_functions(metric):
    layers, brain, it = _setup()
    kw = {"alphas": [0.1, 1.0, 10.0]} if metric == "encoding" else None
    t = brainrdl.compare_layers(layers, brain, metric=metric, metric_kwargs=kw)
    assert COLUMNS <= set(t.columns) and set(t["metric"]) == {metric}
    assert list(t["layer"]) == ["early", "late"]
    y = torch.tensor(it)
    for name, x in layers.items():
        got = float(t.loc[t["layer"] == name, "similarity"].iloc[0])
        if metric == "cka":
            ref = float(cka(x, y))
        elif metric == "encoding":
            ref = ridge_encoding(x, y, alphas=[0.1, 1.0, 10.0], seed=0).score
        else:
            ref = float(torch.cos(procrustes_distance(x, y)))
            dist = float(t.loc[t["layer"] == name, "distance"].iloc[0])
            assert dist == pytest.approx(float(procrustes_distance(x, y)), abs=1e-8)
        assert got == pytest.approx(ref, abs=1e-8)
    assert t.loc[t["best"], "layer"].tolist() == ["late"]


@pytest.mark.parametrize("metric", ["cka", "procrustes", "encoding"])
def test_bootstrap_ci_brackets_and_resample_is_metric_of_rows(metric):
    layers, brain, _ = _setup(n=30, seed=1)
    kw = {"alphas": [1.0, 10.0]} if metric == "encoding" else None
    t = brainrdl.compare_layers(layers, brain, metric=metric, n_bootstrap=40, seed=3,
                                metric_kwargs=kw)
    # CKA / Procrustes resamples are shifted to remove the bias of duplicated stimuli, so the
    # interval brackets the estimate (here; percentile intervals need not in general)
    assert (t["ci_low"] <= t["similarity"]).all() and (t["similarity"] <= t["ci_high"]).all()
    assert (t["ci_low"] < t["ci_high"]).all()
    t2 = brainrdl.compare_layers(layers, brain, metric=metric, n_bootstrap=40, seed=3,
                                 metric_kwargs=kw)
    np.testing.assert_array_equal(t["ci_low"], t2["ci_low"])  # seeded


def test_bootstrap_sample_equals_metric_on_resampled_rows():
    from brainrdl.analysis.pattern_comparison import _resampled_metric

    g = torch.Generator().manual_seed(0)
    x = torch.randn(15, 4, generator=g, dtype=torch.float64)
    y = torch.randn(15, 6, generator=g, dtype=torch.float64)
    idx = torch.randint(15, (5, 15), generator=g)
    out = _resampled_metric(lambda a, b: cka(a, b, debiased=True), x, y, idx)
    for j in range(5):
        assert float(out[j]) == pytest.approx(float(cka(x[idx[j]], y[idx[j]], debiased=True)))


def test_subjects_stimulus_ids_and_per_subject_rows():
    rng = np.random.default_rng(2)
    n = 20
    layers = {"a": torch.tensor(rng.standard_normal((n, 8))),
              "b": torch.tensor(rng.standard_normal((n, 8)))}
    # subject datasets with shuffled stimulus order, labelled by a 'stimulus' descriptor
    subjects = []
    for _ in range(3):
        perm = rng.permutation(n)
        y = layers["a"].numpy()[perm] @ rng.standard_normal((8, 10)) + rng.standard_normal((n, 10))
        subjects.append(rsatoolbox.data.Dataset(
            y, obs_descriptors={"stimulus": [f"s{i}" for i in perm]}))
    ids = [f"s{i}" for i in range(n)]
    t = brainrdl.compare_layers(layers, {"V4": subjects}, metric="cka", stimulus_ids=ids,
                                per_subject=True, n_bootstrap=20, bootstrap="both", seed=0)
    pooled = t[t["subject"] == "all"]
    assert pooled["n_rdms"].tolist() == [3, 3]
    assert pooled.loc[pooled["best"], "layer"].tolist() == ["a"]
    per = t[t["subject"] != "all"]
    assert len(per) == 6
    # subject 0 row equals CKA on the re-ordered data
    perm_ids = subjects[0].obs_descriptors["stimulus"]
    order = [ids.index(s) for s in perm_ids]
    ref = float(cka(layers["a"][order], torch.tensor(subjects[0].measurements)))
    got = per[(per["subject"] == "0") & (per["layer"] == "a")]["similarity"].iloc[0]
    assert got == pytest.approx(ref)
    per_a = per[per["layer"] == "a"]["similarity"]
    assert pooled["similarity"].iloc[0] == pytest.approx(per_a.mean())


def test_encoding_split_half_ceiling_from_repeats():
    rng = np.random.default_rng(4)
    n, reps = 30, 4
    x = rng.standard_normal((n, 6))
    signal = x @ rng.standard_normal((6, 12))
    obs = np.concatenate([signal + rng.standard_normal((n, 12)) for _ in range(reps)])
    stim = np.tile(np.arange(n), reps)
    brain = {"IT": rsatoolbox.data.Dataset(obs, obs_descriptors={"stimulus": stim})}
    t = brainrdl.compare_layers({"x": torch.tensor(x)}, brain, metric="encoding",
                                metric_kwargs={"alphas": [0.1, 1.0, 10.0]})
    nc = float(t["noise_ceiling_high"].iloc[0])
    assert 0.5 < nc <= 1.0 and np.isfinite(t["noise_ceiling_low"].iloc[0])
    # similarity is computed on the mean pattern per stimulus
    mean = obs.reshape(reps, n, 12).mean(0)
    ref = ridge_encoding(torch.tensor(x), torch.tensor(mean), alphas=[0.1, 1.0, 10.0]).score
    assert float(t["similarity"].iloc[0]) == pytest.approx(ref)
    # CKA has no ceiling
    t2 = brainrdl.compare_layers({"x": torch.tensor(x)}, brain, metric="cka")
    assert np.isnan(t2["noise_ceiling_low"].iloc[0])


def test_model_layers_are_tapped():
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 4))
    stim = torch.randn(16, 6)
    brain = rsatoolbox.data.Dataset(np.random.default_rng(0).standard_normal((16, 9)))
    t = brainrdl.compare_layers(net, brain, stimuli=stim, layer_names=["1", "2"], metric="cka")
    with torch.no_grad():
        h = net[1](net[0](stim)).double()
    assert float(t["similarity"].iloc[0]) == pytest.approx(
        float(cka(h, torch.tensor(brain.measurements))))


def test_errors_are_named():
    layers, brain, _ = _setup()
    with pytest.raises(ValueError, match="metric="):
        brainrdl.compare_layers(layers, brain, metric="mutual_info")
    with pytest.raises(ValueError, match="observations but the layers have"):
        brainrdl.compare_layers({"a": torch.randn(10, 3)}, brain, metric="cka")
    with pytest.raises(TypeError, match="Dataset"):
        rdms = rsatoolbox.rdm.RDMs(np.random.default_rng(0).random((2, 276)))
        brainrdl.compare_layers(layers, {"IT": rdms}, metric="cka")
    with pytest.raises(ValueError, match="metric_kwargs"):
        brainrdl.compare_layers(layers, brain, metric="cka", metric_kwargs={"alphas": [1.0]})
    with pytest.raises(ValueError, match="stimuli the layers lack"):
        ds = rsatoolbox.data.Dataset(np.random.default_rng(0).random((24, 3)),
                                     obs_descriptors={"stimulus": list(range(100, 124))})
        brainrdl.compare_layers(layers, ds, metric="cka")


def test_rsa_table_gains_metric_column():
    rng = np.random.default_rng(0)
    layers = rsatoolbox.rdm.RDMs(rng.random((2, 28)), rdm_descriptors={"layer": ["a", "b"]})
    t = brainrdl.compare_layers(layers, {"IT": rsatoolbox.rdm.RDMs(rng.random((3, 28)))})
    assert set(t["metric"]) == {"rsa"}


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["cka", "encoding", "procrustes"])
def test_pattern_metrics_on_cuda_match_cpu(metric):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    layers, brain, _ = _setup(n=30, seed=5)
    kw = {"alphas": [1.0, 10.0]} if metric == "encoding" else None
    cpu = brainrdl.compare_layers(layers, brain, metric=metric, metric_kwargs=kw)
    gpu = brainrdl.compare_layers(layers, brain, metric=metric, metric_kwargs=kw, device="cuda",
                                  n_bootstrap=20, seed=0)
    np.testing.assert_allclose(gpu["similarity"], cpu["similarity"], rtol=1e-6, atol=1e-8)
    assert np.isfinite(gpu["ci_low"]).all()


def test_model_over_image_folder_uses_file_names(tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(0)
    names = [f"img{i:02d}" for i in range(10)]
    for name in names:
        matplotlib.image.imsave(tmp_path / f"{name}.png", rng.random((4, 4, 3)))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 6))
    brain = rsatoolbox.data.Dataset(rng.standard_normal((10, 5)),
                                    obs_descriptors={"stimulus": names[::-1]})
    t = brainrdl.compare_layers(net, brain, stimuli=str(tmp_path), layer_names=["1"],
                                metric="cka", extract_kwargs={"batch_size": 4, "progress": True})
    assert np.isfinite(t["similarity"]).all()
    with pytest.raises(ValueError, match="extract_kwargs"):
        brainrdl.compare_layers(net, brain, stimuli=str(tmp_path), layer_names=["1"],
                                metric="cka", extract_kwargs={"method": "euclidean"})


def test_brain_keyword_alias():
    layers, brain, _ = _setup()
    a = brainrdl.compare_layers(layers, brain=brain, metric="cka")
    b = brainrdl.compare_layers(layers, brain, metric="cka")
    np.testing.assert_array_equal(a["similarity"], b["similarity"])
    with pytest.raises(TypeError, match="brain"):
        brainrdl.compare_layers(layers, brain, brain=brain, metric="cka")
