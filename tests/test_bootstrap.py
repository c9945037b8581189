"""Vectorised bootstrap: exact replay of rsatoolbox's resamples, and Monte-Carlo agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rsatoolbox.inference import bootstrap_sample_pattern, bootstrap_sample_rdm
from rsatoolbox.inference.evaluate import eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, compare
from scipy.stats import rankdata

from brainrdl.stats.bootstrap import (
    bootstrap_compare,
    pair_weights,
    percentile_ci,
    weighted_compare,
    weighted_ranks,
)

N_COND = 14
K = N_COND * (N_COND - 1) // 2


def _data(seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.random(K)
    layers = np.stack([truth + rng.normal(0, s, K) for s in (0.2, 0.5, 1.0)])
    layers[2] = np.round(layers[2] * 3)  # a layer with many ties (a categorical model)
    brain = np.stack([truth + rng.normal(0, 0.5, K) for _ in range(4)])
    return layers, brain


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(b), 1e-12))


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a"])
def test_weighted_compare_equals_rsatoolbox_on_subsampled_rdms(method):
    layers, brain = _data()
    lr = RDMs(layers)
    br = RDMs(brain)
    np.random.seed(3)  # noqa: NPY002 - rsatoolbox draws from the global state
    for _ in range(3):
        sample, idx = bootstrap_sample_pattern(br)  # duplicates -> NaN pairs, dropped
        pred = lr.subsample_pattern("index", idx)
        expected = compare(pred, sample, method)
        counts = torch.bincount(torch.as_tensor(idx), minlength=N_COND).double()[None]
        got = weighted_compare(
            torch.as_tensor(layers), torch.as_tensor(brain), pair_weights(counts), method
        )[0]
        assert _rel(got.numpy(), expected) < 1e-6


def test_weighted_ranks_equal_rankdata_of_expanded_vector():
    v = torch.tensor([[3.0, 1.0, 2.0, 2.0, 5.0], [1.0, 1.0, 1.0, 0.0, 4.0]], dtype=torch.float64)
    w = torch.tensor([[2.0, 1.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    ranks = weighted_ranks(v, w)[0]
    rep = np.repeat(np.arange(5), w[0].long().numpy())
    for i in range(2):
        expected = rankdata(v[i].numpy()[rep])
        got = ranks[i].numpy()[rep]
        np.testing.assert_allclose(got, expected)


def test_stimulus_bootstrap_replays_rsatoolbox_resamples_exactly():
    layers, brain = _data(1)
    br = RDMs(brain)
    models = [ModelFixed(f"m{i}", RDMs(layers[i : i + 1])) for i in range(3)]
    np.random.seed(0)  # noqa: NPY002 - rsatoolbox draws from the global state
    counts, expected = [], []
    for _ in range(20):
        sample, idx = bootstrap_sample_pattern(br)
        counts.append(np.bincount(idx, minlength=N_COND))
        expected.append(
            [np.mean(compare(m.predict_rdm().subsample_pattern("index", idx), sample, "corr"))
             for m in models]
        )  # fmt: skip
    res = bootstrap_compare(
        layers, brain, method="corr", n_bootstrap=20,
        pattern_counts=torch.as_tensor(np.array(counts), dtype=torch.float64),
    )  # fmt: skip
    assert _rel(res.mean_over_rdms().numpy(), np.array(expected)) < 1e-6


def test_subject_bootstrap_replays_rsatoolbox_rdm_resamples():
    layers, brain = _data(2)
    subjects = np.array(["a", "a", "b", "c"])
    br = RDMs(brain, rdm_descriptors={"subject": subjects})
    np.random.seed(1)  # noqa: NPY002 - rsatoolbox draws from the global state
    counts, expected = [], []
    for _ in range(10):
        sample, idx = bootstrap_sample_rdm(br, "subject")
        counts.append([np.sum(idx == s) for s in ["a", "b", "c"]])
        expected.append(compare(RDMs(layers), sample, "spearman").mean(1))
    res = bootstrap_compare(
        layers, brain, method="spearman", n_bootstrap=10, bootstrap="subjects",
        rdm_groups=subjects, group_counts=torch.as_tensor(np.array(counts)),
    )  # fmt: skip
    assert _rel(res.mean_over_rdms().numpy(), np.array(expected)) < 1e-6


def test_bootstrap_distribution_agrees_with_eval_bootstrap_pattern():
    layers, brain = _data(4)
    br = RDMs(brain)
    models = [ModelFixed(f"m{i}", RDMs(layers[i : i + 1])) for i in range(2)]
    np.random.seed(5)  # noqa: NPY002 - rsatoolbox draws from the global state
    ref = eval_bootstrap_pattern(models, br, method="corr", N=300, boot_noise_ceil=False)
    ref_eval = ref.evaluations
    ref_eval = ref_eval[np.isfinite(ref_eval[:, 0])]
    res = bootstrap_compare(layers[:2], brain, method="corr", n_bootstrap=3000, seed=0)
    ours = res.mean_over_rdms().numpy()
    ours = ours[np.isfinite(ours[:, 0])]
    ref_sd, our_sd = ref_eval.std(0), ours.std(0)
    # means within 4 Monte-Carlo standard errors, spreads within 20 % (SE of an SD at N=300: 4 %)
    assert np.all(np.abs(ref_eval.mean(0) - ours.mean(0)) < 4 * ref_sd / np.sqrt(300) + 1e-3)
    assert np.all(np.abs(our_sd / ref_sd - 1) < 0.2)
    ref_low, ref_high = np.quantile(ref_eval, [0.025, 0.975], axis=0)
    low, high = percentile_ci(ours, 0.95)
    assert np.all(np.abs(low - ref_low) < 1.0 * ref_sd)
    assert np.all(np.abs(high - ref_high) < 1.0 * ref_sd)


def test_resamples_with_fewer_than_three_stimuli_are_nan():
    layers, brain = _data()
    counts = torch.zeros(2, N_COND, dtype=torch.float64)
    counts[0, 0], counts[0, 1] = 7, 7  # two distinct stimuli: rsatoolbox gives NaN
    counts[1, :N_COND] = 1
    res = bootstrap_compare(layers, brain, n_bootstrap=2, pattern_counts=counts)
    assert torch.isnan(res.samples[0]).all()
    expected = compare(RDMs(layers), RDMs(brain), "corr")
    assert _rel(res.samples[1].numpy(), expected) < 1e-9


def test_seed_reproducible_and_both_kind_runs():
    layers, brain = _data()
    a = bootstrap_compare(layers, brain, n_bootstrap=8, bootstrap="both", seed=3)
    b = bootstrap_compare(layers, brain, n_bootstrap=8, bootstrap="both", seed=3)
    torch.testing.assert_close(a.samples, b.samples, equal_nan=True)
    torch.testing.assert_close(a.rdm_weights, b.rdm_weights)
    assert float(a.rdm_weights.sum(1)[0]) == 4.0


def test_fallback_method_loops_through_rsatoolbox():
    layers, brain = _data()
    counts = torch.ones(1, N_COND, dtype=torch.float64)
    counts[0, 0] = 2
    counts[0, 1] = 0
    res = bootstrap_compare(layers, brain, method="tau-a", n_bootstrap=1, pattern_counts=counts)
    fast = bootstrap_compare(layers, brain, method="spearman", n_bootstrap=1,
                             pattern_counts=counts)  # fmt: skip
    assert res.samples.shape == (1, 3, 4)
    # tau-a and spearman agree in sign and order on these data
    assert np.corrcoef(res.samples.flatten(), fast.samples.flatten())[0, 1] > 0.9


def test_bad_arguments_name_the_argument():
    layers, brain = _data()
    with pytest.raises(ValueError, match="bootstrap"):
        bootstrap_compare(layers, brain, bootstrap="patterns")
    with pytest.raises(ValueError, match="n_bootstrap"):
        bootstrap_compare(layers, brain, n_bootstrap=0)
    with pytest.raises(ValueError, match="x and y"):
        bootstrap_compare(layers, brain[:, :-1])
    with pytest.raises(ValueError, match="rdm_groups"):
        bootstrap_compare(layers, brain, rdm_groups=[1, 2])
    with pytest.raises(ValueError, match="ci"):
        percentile_ci(np.zeros((3, 1)), ci=1.5)


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a"])
def test_count_kernel_equals_expanded_vectors_across_blocks_and_chunks(method):
    """The per-row GEMM (corr) and chunked ranks (spearman) equal rsatoolbox on expanded vectors,
    also when the pairs are split over many blocks and the resamples over many chunks."""
    from brainrdl.stats.bootstrap import _Kernel

    n = 23
    k = n * (n - 1) // 2
    rng = np.random.default_rng(7)
    truth = rng.random(k)
    x = np.stack([truth + rng.normal(0, 0.4, k), np.round(truth * 4)])  # second: many ties
    y = np.stack([truth + rng.normal(0, 0.6, k) for _ in range(3)])
    counts = torch.as_tensor(rng.multinomial(n, np.ones(n) / n, size=6), dtype=torch.float64)
    kernel = _Kernel(torch.as_tensor(x), torch.as_tensor(y), method, memory_budget=2000)
    got = kernel.from_counts(counts).numpy()
    iu, ju = np.triu_indices(n, 1)
    for b, c in enumerate(counts.numpy()):
        rep = np.repeat(np.arange(k), (c[iu] * c[ju]).astype(int))
        expected = compare(RDMs(x[:, rep]), RDMs(y[:, rep]), method)
        assert _rel(got[b], expected) < 1e-9


@pytest.mark.parametrize("method", ["corr", "spearman"])
def test_pairs_missing_in_a_vector_are_dropped_as_rsatoolbox_does(method):
    layers, brain = _data()
    layers, brain = layers.copy(), brain.copy()
    layers[:, 5] = np.nan
    brain[:, 5] = np.nan
    keep = np.arange(K) != 5
    counts = torch.ones(2, N_COND, dtype=torch.float64)
    counts[1, 0], counts[1, 3] = 3, 0
    res = bootstrap_compare(layers, brain, method=method, n_bootstrap=2, pattern_counts=counts)
    expected = compare(RDMs(layers[:, keep]), RDMs(brain[:, keep]), method)
    assert _rel(res.samples[0].numpy(), expected) < 1e-9
    assert np.isfinite(res.samples[1].numpy()).all()
