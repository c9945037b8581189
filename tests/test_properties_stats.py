"""Properties of the bootstrap and the noise ceiling that reference tests leave open.

Written to kill mutants that survived the suite (docs/mutation-testing.md). Each test states what
any correct implementation must do: an interval labelled 95 % is the 2.5/97.5 percentile pair of
the resamples, a weighted statistic equals the statistic of the expanded vector (rsatoolbox,
SciPy), a rank is the weight below an entry plus half its own tie group, a noise ceiling equals
rsatoolbox's — never a snapshot of today's output.
"""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from rsatoolbox.rdm import compare as rsa_compare
from scipy.stats import rankdata

from brainrdl.stats.bootstrap import (
    BootstrapResult,
    bootstrap_compare,
    compare_all_pairs,
    pair_weights,
    percentile_ci,
    weighted_compare,
    weighted_ranks,
)
from brainrdl.stats.ceilings import noise_ceiling, noise_ceiling_vectors, pool_vectors

# --------------------------------------------------------------------------- percentile_ci


@pytest.mark.parametrize("ci", [0.5, 0.9, 0.95, 0.99])
def test_percentile_ci_is_the_central_interval_of_the_resamples(ci):
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(400, 3))
    low, high = percentile_ci(samples, ci=ci)
    tail = 100 * (1 - ci) / 2
    np.testing.assert_allclose(low, np.percentile(samples, tail, axis=0), rtol=1e-12)
    np.testing.assert_allclose(high, np.percentile(samples, 100 - tail, axis=0), rtol=1e-12)
    # the interval holds the labelled share of the resamples (up to one resample per end)
    inside = np.mean((samples >= low) & (samples <= high), axis=0)
    assert np.all(np.abs(inside - ci) <= 2 / len(samples))


def test_percentile_ci_default_is_95_percent_and_ignores_nan_resamples():
    samples = np.arange(1001.0)[:, None] / 10  # 0.0, 0.1, ..., 100.0
    with_nan = np.vstack([samples, np.full((50, 1), np.nan)])
    low, high = percentile_ci(with_nan)
    assert float(low[0]) == pytest.approx(2.5) and float(high[0]) == pytest.approx(97.5)
    # a tensor gives the same interval as its array
    t_low, t_high = percentile_ci(torch.as_tensor(with_nan))
    assert float(t_low[0]) == float(low[0]) and float(t_high[0]) == float(high[0])


@pytest.mark.parametrize("ci", [0.0, 1.0, -0.5, 95.0])
def test_percentile_ci_rejects_levels_outside_the_open_unit_interval(ci):
    with pytest.raises(ValueError, match="ci"):
        percentile_ci(np.zeros((5, 1)), ci=ci)


# --------------------------------------------------------------------------- weighted statistics


def _expanded(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each entry repeated w times (weight 0: dropped), the definition of the weighted forms."""
    return np.repeat(v, w.astype(int), axis=-1)


def _closed_form_ranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rank of each entry in the expanded vector: the weight strictly below it plus the average
    position inside its own tie group, (tie weight + 1) / 2."""
    below = np.array([w[v < x].sum() for x in v])
    tied = np.array([w[v == x].sum() for x in v])
    return below + (tied + 1) / 2


@pytest.mark.parametrize("seed", range(3))
def test_weighted_ranks_equal_rankdata_of_the_expanded_vector(seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 5, size=(3, 12)).astype(float)  # many ties
    v[1] = rng.permutation(12)  # one vector without ties
    w = rng.integers(1, 4, size=(2, 12)).astype(float)
    got = weighted_ranks(torch.as_tensor(v), torch.as_tensor(w))
    assert got.dtype == torch.float64  # the weights' dtype, whatever path computed them
    got = got.numpy()
    for b in range(w.shape[0]):
        for i in range(v.shape[0]):
            ranks = rankdata(_expanded(v[i], w[b]))
            # the first copy of each entry in the expanded vector; all copies tie
            first = np.concatenate([[0], np.cumsum(w[b])[:-1]]).astype(int)
            np.testing.assert_allclose(got[b, i], ranks[first], rtol=0, atol=1e-9)
            np.testing.assert_allclose(got[b, i], _closed_form_ranks(v[i], w[b]), atol=1e-9)


def test_weighted_ranks_with_large_weights_keep_the_closed_form():
    """Totals beyond float32's exact range take the float64 path: same definition."""
    rng = np.random.default_rng(5)
    v = np.array([[3.0, 1.0, 2.0, 2.0, 5.0, 0.5]])
    w = rng.integers(1, 2**21, size=(2, 6)).astype(float)
    w[0, 0] = 2.0**23  # total above 2**22
    got = weighted_ranks(torch.as_tensor(v), torch.as_tensor(w)).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b, 0], _closed_form_ranks(v[0], w[b]), rtol=1e-12)


def test_tie_bounds_are_the_first_and_last_sorted_position_of_each_tie_group():
    from brainrdl.stats.bootstrap import _tie_bounds

    sv = torch.tensor([[1.0, 1.0, 2.0, 2.0, 7.0], [0.0, 1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    bounds = _tie_bounds(sv)
    for i in range(2):
        for k in range(5):
            group = (sv[i] == sv[i, k]).nonzero().flatten()
            assert bounds[i, :, k].tolist() == [int(group.min()), int(group.max())]


def test_pair_weights_are_products_of_the_draw_counts_in_squareform_order():
    counts = torch.tensor([[2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    iu, ju = np.triu_indices(4, 1)
    expected = counts.numpy()[:, iu] * counts.numpy()[:, ju]
    np.testing.assert_array_equal(pair_weights(counts).numpy(), expected)
    # any leading shape: one resample alone, or resamples in a batch of batches
    np.testing.assert_array_equal(pair_weights(counts[0]).numpy(), expected[0])
    np.testing.assert_array_equal(pair_weights(counts[None]).numpy(), expected[None])


def _rsa(x, y, method):
    return rsa_compare(x, y, method=method)


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a"])
@pytest.mark.parametrize("seed", range(2))
def test_weighted_compare_equals_rsatoolbox_on_the_expanded_vectors(method, seed):
    rng = np.random.default_rng(10 + seed)
    k = 15
    x = rng.random((3, k))
    x[2] = np.round(x[2] * 3)  # ties
    y = rng.random((2, k))
    w = rng.integers(0, 4, size=(3, k)).astype(float)
    got = weighted_compare(torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(w), method)
    assert got.shape == (3, 3, 2)
    for b in range(3):
        ref = _rsa(_expanded(x, w[b]), _expanded(y, w[b]), method)
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a"])
def test_weighted_compare_drops_pairs_missing_in_any_vector(method):
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 10)), rng.random((2, 10))
    x[0, 2] = np.nan
    y[1, 7] = np.nan
    w = np.ones((1, 10))
    got = weighted_compare(torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(w), method)
    keep = np.ones(10, bool)
    keep[[2, 7]] = False
    ref = _rsa(x[:, keep], y[:, keep], method)
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=1e-9)


@pytest.mark.parametrize("method", ["corr", "cosine"])
def test_weighted_moments_do_not_depend_on_the_memory_budget(method):
    """A budget too small for one block of pairs forces the block-wise path: same numbers."""
    from brainrdl.stats.bootstrap import _Kernel  # the budget is not a public argument here

    rng = np.random.default_rng(4)
    x, y = torch.as_tensor(rng.random((2, 21))), torch.as_tensor(rng.random((3, 21)))
    counts = torch.as_tensor(rng.integers(0, 3, size=(4, 7)).astype(float))
    big = _Kernel(x, y, method)
    small = _Kernel(x, y, method, memory_budget=1.0)
    torch.testing.assert_close(small.from_counts(counts), big.from_counts(counts))
    torch.testing.assert_close(small(pair_weights(counts)), big(pair_weights(counts)))
    torch.testing.assert_close(big.from_counts(counts), big(pair_weights(counts)))


# --------------------------------------------------------------------------- bootstrap_compare


def _expanded_rdm_vector(v: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """rsatoolbox's stimulus resample: rows and columns repeated by the draw counts, the pairs of
    a stimulus with its own copy dropped; the upper triangle of what remains."""
    n = len(counts)
    sq = np.zeros((v.shape[0], n, n))
    iu, ju = np.triu_indices(n, 1)
    sq[:, iu, ju] = v
    sq[:, ju, iu] = v
    idx = np.repeat(np.arange(n), counts.astype(int))
    a, b = np.triu_indices(len(idx), 1)
    keep = idx[a] != idx[b]
    return sq[:, idx[a][keep], idx[b][keep]]


@pytest.mark.parametrize("method", ["corr", "cosine", "spearman", "rho-a", "tau-a", "tau-b"])
def test_each_stimulus_resample_equals_rsatoolbox_on_the_resampled_rdms(method):
    rng = np.random.default_rng(20)
    n = 7
    x, y = rng.random((2, n * (n - 1) // 2)), rng.random((2, n * (n - 1) // 2))
    counts = torch.tensor([[2, 0, 1, 1, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 3, 2, 0, 1, 1]],
                          dtype=torch.float64)
    res = bootstrap_compare(x, y, method=method, n_bootstrap=3, pattern_counts=counts)
    for b in range(3):
        ref = _rsa(_expanded_rdm_vector(x, counts[b].numpy()),
                   _expanded_rdm_vector(y, counts[b].numpy()), method)
        np.testing.assert_allclose(res.samples[b].numpy(), ref, rtol=1e-9, atol=1e-12)
    assert torch.equal(res.rdm_weights, torch.ones(3, 2, dtype=torch.float64))


def test_resamples_need_three_distinct_stimulus_groups():
    rng = np.random.default_rng(21)
    x, y = rng.random((1, 10)), rng.random((1, 10))
    counts = torch.tensor([[3, 2, 0, 0, 0], [2, 2, 1, 0, 0]], dtype=torch.float64)
    res = bootstrap_compare(x, y, n_bootstrap=2, pattern_counts=counts)
    assert torch.isnan(res.samples[0]).all()  # two distinct stimuli: undefined, as rsatoolbox
    assert torch.isfinite(res.samples[1]).all()  # three is enough


def test_random_draws_are_n_with_replacement_over_every_group():
    rng = np.random.default_rng(22)
    n = 6
    x = torch.as_tensor(rng.random((1, n * (n - 1) // 2)))
    y = torch.as_tensor(rng.random((4, n * (n - 1) // 2)))
    res = bootstrap_compare(x, y, n_bootstrap=3000, bootstrap="both", seed=1,
                            rdm_groups=[0, 0, 1, 2])
    w = res.rdm_weights
    # RDMs of one group move together; each row draws as many groups as there are (3)
    assert torch.equal(w[:, 0], w[:, 1])
    assert torch.all(w[:, [0, 2, 3]].sum(1) == 3)
    # every group is drawn once per resample on average, the last one included
    np.testing.assert_allclose(w[:, [0, 2, 3]].mean(0).numpy(), 1.0, atol=0.1)
    assert torch.all(w >= 0) and torch.all(w == w.round())


def test_seed_fixes_the_draws_and_other_seeds_change_them():
    rng = np.random.default_rng(23)
    x, y = rng.random((1, 28)), rng.random((2, 28))
    a = bootstrap_compare(x, y, n_bootstrap=20, seed=5)
    b = bootstrap_compare(x, y, n_bootstrap=20, seed=5)
    c = bootstrap_compare(x, y, n_bootstrap=20, seed=6)
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("method", ["corr", "spearman", "tau-a"])
def test_chunking_does_not_change_the_resamples(method):
    rng = np.random.default_rng(24)
    x, y = rng.random((2, 21)), rng.random((2, 21))
    whole = bootstrap_compare(x, y, method=method, n_bootstrap=7, seed=3, chunk_size=7)
    pieces = bootstrap_compare(x, y, method=method, n_bootstrap=7, seed=3, chunk_size=2)
    default = bootstrap_compare(x, y, method=method, n_bootstrap=7, seed=3)
    torch.testing.assert_close(pieces.samples, whole.samples, equal_nan=True)
    torch.testing.assert_close(default.samples, whole.samples, equal_nan=True)


def test_pattern_groups_resample_whole_groups():
    rng = np.random.default_rng(25)
    n = 6
    x, y = rng.random((1, 15)), rng.random((1, 15))
    groups = ["a", "a", "b", "c", "c", "d"]
    counts = torch.tensor([[2.0, 0.0, 1.0, 1.0]])  # a twice, b once, c once, d never
    res = bootstrap_compare(x, y, n_bootstrap=1, pattern_counts=counts, pattern_groups=groups)
    stim = np.array([2, 2, 0, 1, 1, 1], float)[:n]
    ref = _rsa(_expanded_rdm_vector(x, stim), _expanded_rdm_vector(y, stim), "corr")
    np.testing.assert_allclose(res.samples[0].numpy(), ref, rtol=1e-9)


def test_subject_bootstrap_keeps_the_full_comparison_and_weights_subjects():
    rng = np.random.default_rng(26)
    x, y = rng.random((2, 10)), rng.random((3, 10))
    group_counts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    res = bootstrap_compare(x, y, n_bootstrap=2, bootstrap="subjects", group_counts=group_counts)
    full = _rsa(x, y, "corr")
    for b in range(2):
        np.testing.assert_allclose(res.samples[b].numpy(), full, rtol=1e-9)
    assert torch.equal(res.rdm_weights, group_counts.double())
    np.testing.assert_allclose(res.mean_over_rdms().numpy(),
                               (full[None] * group_counts.numpy()[:, None]).sum(-1)
                               / group_counts.numpy().sum(-1)[:, None], rtol=1e-12)


def test_mean_over_rdms_is_the_weighted_mean():
    samples = torch.tensor([[[1.0, 3.0]], [[2.0, 6.0]]])
    weights = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    got = BootstrapResult(samples, weights).mean_over_rdms()
    assert got.tolist() == [[2.5], [2.0]]


def test_device_defaults_to_the_input_and_arrays_give_the_same_result():
    rng = np.random.default_rng(27)
    x, y = rng.random((1, 10)), rng.random((2, 10))
    a = bootstrap_compare(x, y, n_bootstrap=4, seed=0)
    b = bootstrap_compare(torch.as_tensor(x), torch.as_tensor(y), n_bootstrap=4, seed=0)
    assert a.samples.device == b.samples.device == torch.device("cpu")
    torch.testing.assert_close(a.samples, b.samples, equal_nan=True)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"n_bootstrap": 0}, "n_bootstrap"), ({"n_bootstrap": 2.0}, "n_bootstrap"),
     ({"bootstrap": "pairs"}, "bootstrap"), ({"pattern_groups": [0, 1]}, "pattern_groups"),
     ({"rdm_groups": [0]}, "rdm_groups"), ({"method": "corr", "x": np.zeros((1, 9))}, "K")],
)
def test_bootstrap_errors_name_their_argument(kwargs, word):
    args = {"x": np.random.default_rng(0).random((1, 10)),
            "y": np.random.default_rng(1).random((2, 10)), "n_bootstrap": 2, **kwargs}
    with pytest.raises(ValueError, match=word):
        bootstrap_compare(args.pop("x"), args.pop("y"), **args)


def test_vectors_that_are_no_upper_triangle_are_refused():
    with pytest.raises(ValueError, match="length 9"):
        bootstrap_compare(np.zeros((1, 9)), np.zeros((1, 9)), n_bootstrap=1)


def test_compare_all_pairs_uses_every_pair_finite_in_all_vectors():
    rng = np.random.default_rng(28)
    x, y = rng.random((2, 10)), rng.random((1, 10))
    x[1, 4] = np.nan
    keep = np.arange(10) != 4
    for method in ["corr", "tau-a"]:
        got = compare_all_pairs(torch.as_tensor(x), torch.as_tensor(y), method)
        np.testing.assert_allclose(got[0].numpy(), _rsa(x[:, keep], y[:, keep], method),
                                   rtol=1e-9)


# --------------------------------------------------------------------------- noise ceiling


def _rdms(n_subjects=5, n=8, seed=30, sessions=1):
    rng = np.random.default_rng(seed)
    common = rng.random(n * (n - 1) // 2)
    data = common + 0.6 * rng.random((n_subjects * sessions, n * (n - 1) // 2))
    subject = np.repeat(np.arange(n_subjects), sessions)
    return rsatoolbox.rdm.RDMs(data, rdm_descriptors={"subject": subject})


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a", "corr_cov"])
def test_noise_ceiling_equals_rsatoolbox_with_sessions_held_out_together(method):
    from rsatoolbox.inference import boot_noise_ceiling

    rdms = _rdms(sessions=2)
    got = noise_ceiling(rdms, method, rdm_descriptor="subject")
    ref = boot_noise_ceiling(rdms, method=method, rdm_descriptor="subject")
    np.testing.assert_allclose(got, [float(ref[0]), float(ref[1])], rtol=1e-8)
    # the same through explicit group labels and through square matrices
    labels = rdms.rdm_descriptors["subject"]
    np.testing.assert_allclose(noise_ceiling(rdms.get_vectors(), method, groups=labels), got,
                               rtol=1e-12)
    np.testing.assert_allclose(noise_ceiling(rdms.get_matrices(), method, groups=labels), got,
                               rtol=1e-12)


def test_noise_ceiling_default_method_and_descriptor_are_rsatoolboxs():
    from rsatoolbox.inference import boot_noise_ceiling

    rdms = _rdms(seed=31)
    ref = boot_noise_ceiling(rdms, method="cosine", rdm_descriptor="index")
    np.testing.assert_allclose(noise_ceiling(rdms), [float(ref[0]), float(ref[1])], rtol=1e-8)


def test_noise_ceiling_by_hand_for_two_subjects():
    """Two RDMs: the lower bound compares each with the other, the upper bound each with the
    pool of both; for ``corr`` the pool is the mean of the z-scored vectors."""
    a = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    b = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])
    low, high = noise_ceiling(np.stack([a, b]), "corr")
    r = np.corrcoef(a, b)[0, 1]
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    pool = (z(a) + z(b)) / 2
    assert low == pytest.approx(r, rel=1e-12)
    assert high == pytest.approx((np.corrcoef(pool, a)[0, 1] + np.corrcoef(pool, b)[0, 1]) / 2,
                                 rel=1e-12)


def test_noise_ceiling_of_identical_rdms_is_one_at_both_ends():
    v = np.random.default_rng(32).random(10)
    for method in ["cosine", "corr", "spearman"]:
        low, high = noise_ceiling(np.stack([v, v, v]), method)
        assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["cosine", "cosine_cov", "corr", "corr_cov", "spearman", "rho-a",
                                    "tau-a", "tau-b", "kendall"])
def test_pool_vectors_match_rsatoolbox_pool_rdm_with_missing_pairs(method):
    import warnings

    from rsatoolbox.util.inference_util import pool_rdm

    rng = np.random.default_rng(33)
    data = rng.random((3, 10))
    data[1, 3] = np.nan
    rdms = rsatoolbox.rdm.RDMs(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pool_rdm(rdms, method=method).get_vectors()
        got = pool_vectors(torch.as_tensor(data), method).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, equal_nan=True)


@pytest.mark.parametrize("method", ["tau-a", "tau-b", "kendall"])
def test_tau_pools_warn_that_they_average_ranks(method):
    with pytest.warns(UserWarning, match="averaged ranks"):
        pool_vectors(torch.rand(3, 6, dtype=torch.float64), method)


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman"])
def test_pool_vectors_compute_in_float64(method):
    v = torch.rand(3, 10, generator=torch.Generator().manual_seed(1))
    got = pool_vectors(v, method)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), pool_vectors(v.double(), method).numpy(), rtol=1e-13)


def test_explicit_groups_win_over_the_descriptor_and_lists_are_arrays():
    rdms = _rdms(sessions=2, seed=35)
    index = np.arange(rdms.n_rdm)
    by_groups = noise_ceiling(rdms, "corr", rdm_descriptor="subject", groups=index)
    np.testing.assert_allclose(by_groups, noise_ceiling(rdms, "corr", rdm_descriptor="index"),
                               rtol=1e-12)
    vectors = rdms.get_vectors()
    np.testing.assert_allclose(noise_ceiling(vectors.tolist(), "corr"),
                               noise_ceiling(vectors, "corr"), rtol=1e-12)


def test_noise_ceiling_errors_name_their_argument():
    rdms = _rdms(seed=34)
    with pytest.raises(KeyError, match="session"):
        noise_ceiling(rdms, "corr", rdm_descriptor="session")
    with pytest.raises(ValueError, match="groups"):
        noise_ceiling_vectors(torch.rand(3, 6, dtype=torch.float64), [0, 1], "corr")
    with pytest.raises(ValueError, match="method"):
        noise_ceiling(rdms, "pearson")
    with pytest.raises(ValueError, match="rdms"):
        noise_ceiling(np.zeros(6), "corr")
    with pytest.raises(TypeError, match="rdms"):
        noise_ceiling("rdms.npy", "corr")


def test_noise_ceiling_needs_a_matrix_of_at_least_one_rdm_and_accepts_exactly_one():
    with pytest.raises(ValueError, match="n_rdms"):
        noise_ceiling_vectors(torch.rand(6, dtype=torch.float64), None, "corr")
    with pytest.raises(ValueError, match="n_rdms"):
        noise_ceiling_vectors(torch.zeros(0, 6, dtype=torch.float64), None, "corr")
    # one RDM: rsatoolbox compares the pool (the RDM itself) with it, at both ends
    low, high = noise_ceiling_vectors(torch.rand(1, 6, dtype=torch.float64), None, "corr")
    assert float(low) == pytest.approx(1.0) and float(high) == pytest.approx(1.0)


def test_noise_ceiling_computes_in_float64_whatever_the_input_dtype():
    v = torch.rand(4, 28, generator=torch.Generator().manual_seed(0)).float()
    for method in ["corr", "spearman"]:
        got = noise_ceiling(v, method)
        np.testing.assert_allclose(got, noise_ceiling(v.double(), method), rtol=1e-13)
        np.testing.assert_allclose(got, noise_ceiling(v.double().numpy(), method), rtol=1e-13)


# --------------------------------------------------------------------------- rank bootstrap paths


def _weighted_spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Pearson of the expanded vectors' ranks, as weighted sums (float64, the definition)."""
    keep = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[keep], y[keep], w[keep].astype(np.float64)
    rx, ry = _closed_form_ranks(x, w), _closed_form_ranks(y, w)
    mx, my = (w * rx).sum() / w.sum(), (w * ry).sum() / w.sum()
    cov = (w * (rx - mx) * (ry - my)).sum()
    return cov / np.sqrt((w * (rx - mx) ** 2).sum() * (w * (ry - my) ** 2).sum())


@pytest.mark.parametrize("missing_pair", [False, True])
@pytest.mark.parametrize("big", [31.0, 5001.0])
def test_rank_bootstrap_with_large_draw_counts_stays_exact(missing_pair, big):
    """Odd pair weights whose cubes (tie sums) or totals (ranks) float32 cannot hold exactly:
    651**3 > 2**24, and 5001 * 4001 pairs total more than 2**24."""
    rng = np.random.default_rng(40)
    x, y = rng.random((1, 15)), rng.random((1, 15))
    y[0, :5] = y[0, 5]  # ties
    if missing_pair:
        x[0, 7] = np.nan
    counts = torch.tensor([[big, big - 10 if big < 100 else 4001.0, 1.0, 2.0, 1.0, 3.0]],
                          dtype=torch.float64)
    res = bootstrap_compare(x, y, method="spearman", n_bootstrap=1, pattern_counts=counts)
    w = pair_weights(counts)[0].numpy()
    expected = _weighted_spearman(x[0], y[0], w)
    assert float(res.samples[0, 0, 0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["spearman", "rho-a"])
def test_rank_bootstrap_with_a_missing_pair_equals_rsatoolbox_beyond_one_chunk(method):
    """A pair missing in one RDM is dropped from every resample; more than 256 resamples cross
    the internal chunk of resamples."""
    rng = np.random.default_rng(41)
    n = 6
    x, y = rng.random((2, 15)), rng.random((1, 15))
    x[1, 4] = np.nan
    counts = torch.as_tensor(rng.integers(0, 4, size=(300, n)).astype(float))
    counts[:, :3] = torch.clamp(counts[:, :3], min=1.0)  # at least three distinct stimuli
    # one call for all 300 resamples (chunk_size), so the kernel's own chunks of 256 are crossed
    res = bootstrap_compare(x, y, method=method, n_bootstrap=300, pattern_counts=counts,
                            chunk_size=300)
    for b in (0, 255, 256, 299):
        ex, ey = (_expanded_rdm_vector(v, counts[b].numpy()) for v in (x, y))
        keep = np.isfinite(ex).all(0) & np.isfinite(ey).all(0)  # rsatoolbox drops them too
        ref = _rsa(ex[:, keep], ey[:, keep], method)
        np.testing.assert_allclose(res.samples[b].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_weighted_ranks_of_many_large_odd_weights_keep_the_closed_form():
    """Each weight < 2**22 but the total > 2**24: float32 could not hold the ranks."""
    rng = np.random.default_rng(42)
    v = rng.permutation(12).astype(float)[None]
    w = (2 * rng.integers(1_000_000, 2_000_000, size=(1, 12)) + 1).astype(float)
    assert w.sum() > 2**24 and w.max() < 2**22
    got = weighted_ranks(torch.as_tensor(v), torch.as_tensor(w)).numpy()
    np.testing.assert_allclose(got[0, 0], _closed_form_ranks(v[0], w[0]), rtol=1e-13)


# --------------------------------------------------------------------------- inputs and names


def test_percentile_ci_of_a_tensor_that_requires_grad_is_that_of_its_values():
    """Resamples from a differentiable pipeline: the interval is read from the detached values."""
    samples = torch.rand(200, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    low, high = percentile_ci(samples.clone().requires_grad_(True), ci=0.9)
    ref_low, ref_high = percentile_ci(samples.numpy(), ci=0.9)
    np.testing.assert_array_equal(low, ref_low)
    np.testing.assert_array_equal(high, ref_high)


def test_percentile_ci_and_noise_ceiling_messages_name_their_argument_as_a_word():
    # word boundaries: a message naming another (longer) word does not pass
    with pytest.raises(ValueError, match=r"\bci\b"):
        percentile_ci(np.zeros((5, 1)), ci=1.5)
    with pytest.raises(ValueError, match=r"\bmethod\b='pearson'"):
        noise_ceiling(np.random.default_rng(0).random((3, 6)), "pearson")


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_noise_ceiling_of_a_tensor_that_requires_grad_is_that_of_its_values():
    v = torch.rand(4, 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for method in ["corr", "spearman"]:
        got = noise_ceiling(v.clone().requires_grad_(True), method)
        assert got == noise_ceiling(v.numpy(), method)


def _rdms_with(descriptors: dict) -> rsatoolbox.rdm.RDMs:
    data = np.random.default_rng(36).random((3, 6))
    return rsatoolbox.rdm.RDMs(data, rdm_descriptors=descriptors)


def test_subject_groups_auto_uses_the_subject_descriptor_only_when_present():
    from brainrdl.stats.ceilings import subject_groups

    with_subject = _rdms_with({"subject": ["a", "a", "b"], "session": [1, 2, 1]})
    assert subject_groups(with_subject).tolist() == ["a", "a", "b"]
    assert subject_groups(with_subject, "auto").tolist() == ["a", "a", "b"]
    # without a "subject" descriptor every RDM is its own subject
    assert subject_groups(_rdms_with({"session": [1, 2, 1]})) is None
    # a named descriptor, whatever "subject" says
    assert subject_groups(with_subject, "session").tolist() == [1, 2, 1]


@pytest.mark.parametrize("descriptor", [None, "index"])
def test_subject_groups_none_and_index_mean_each_rdm_alone(descriptor):
    from brainrdl.stats.ceilings import subject_groups

    assert subject_groups(_rdms_with({"subject": ["a", "a", "b"]}), descriptor) is None
    assert subject_groups(np.zeros((3, 6)), descriptor) is None  # no descriptors needed


def test_subject_groups_of_plain_vectors_have_no_descriptors():
    """Arrays and tensors carry no rdm descriptors: "auto" is each RDM alone, a name is absent."""
    from brainrdl.stats.ceilings import subject_groups

    for rdms in (np.zeros((3, 6)), torch.zeros(3, 6)):
        assert subject_groups(rdms) is None
        with pytest.raises(KeyError, match=r"subject_descriptor='subject'.*available: \[\]"):
            subject_groups(rdms, "subject")


def test_subject_groups_missing_descriptor_names_where_it_was_looked_up():
    from brainrdl.stats.ceilings import subject_groups

    rdms = _rdms_with({"subject": ["a", "a", "b"]})
    with pytest.raises(KeyError, match=r"'session'.* of the RDMs; available: \['index', "
                                       r"'subject'\]"):
        subject_groups(rdms, "session")
    with pytest.raises(KeyError, match=r"of region 'V1'; available"):
        subject_groups(rdms, "session", where="region 'V1'")


# --------------------------------------------------------------------------- degenerate RDMs


def _ceiling_rdms(seed=37, s=4, k=15):
    rng = np.random.default_rng(seed)
    return rng.random(k) + 0.4 * rng.random((s, k))


@pytest.mark.parametrize("method", ["cosine", "cosine_cov", "corr", "corr_cov"])
def test_noise_ceiling_does_not_depend_on_the_scale_of_each_rdm(method):
    """Scale-free methods: any positive factor per RDM changes nothing, also factors whose
    squares underflow (1e-200) or overflow (1e200) in float64, and RDMs on very different
    scales at once."""
    v = _ceiling_rdms()
    ref = noise_ceiling(v, method)
    for scales in ([1e-200, 1.0, 1e200, 3.0], [0.5, 0.5, 0.5, 1e-200], [2.0, 1e200, 1e200, 1.0]):
        got = noise_ceiling(v * np.array(scales)[:, None], method)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    # the pooled RDM of cosine is a mean of unit-RMS vectors: scale-free too
    np.testing.assert_allclose(pool_vectors(torch.as_tensor(v * 1e-200), "cosine").numpy(),
                               pool_vectors(torch.as_tensor(v), "cosine").numpy(), rtol=1e-12)


def test_noise_ceiling_of_unscaled_rdms_whose_largest_entry_is_one():
    """An RDM already on the unit scale (largest |entry| exactly 1) is a normal RDM."""
    from rsatoolbox.inference import boot_noise_ceiling

    v = _ceiling_rdms(seed=38)
    v = v / v.max(1, keepdims=True)
    for method in ["cosine", "corr"]:
        ref = boot_noise_ceiling(rsatoolbox.rdm.RDMs(v), method=method, rdm_descriptor="index")
        np.testing.assert_allclose(noise_ceiling(v, method), [float(ref[0]), float(ref[1])],
                                   rtol=1e-10)


@pytest.mark.parametrize("method", ["tau-a", "tau-b", "kendall"])
def test_tau_noise_ceiling_warns_exactly_once(method):
    import warnings

    v = _ceiling_rdms(seed=39)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noise_ceiling(v, method)
    assert [str(w.message) for w in caught] == ["Noise ceiling for tau based on averaged ranks!"]


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a", "corr_cov"])
def test_other_noise_ceilings_and_pools_do_not_warn(method):
    import warnings

    v = _ceiling_rdms(seed=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        noise_ceiling(v, method)
        pool_vectors(torch.as_tensor(v), method)  # warn=True by default: still nothing to say


def test_neg_riem_dist_noise_ceiling_equals_rsatoolbox_and_accepts_constant_rdms():
    import warnings

    from rsatoolbox.inference import boot_noise_ceiling

    from brainrdl.stats.ceilings import check_not_constant_rdms

    rng = np.random.default_rng(41)
    pats = rng.standard_normal((4, 6, 5)) + rng.standard_normal((6, 5))
    rdms = rsatoolbox.rdm.concat(
        [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(p)) for p in pats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = boot_noise_ceiling(rdms, method="neg_riem_dist", rdm_descriptor="index")
    np.testing.assert_allclose(noise_ceiling(rdms, "neg_riem_dist", "index"),
                               [float(ref[0]), float(ref[1])], rtol=1e-10)
    # a distance needs no spread: constant (even zero) RDMs pass the check unchanged
    y = torch.tensor([[2.0] * 6, [0.0] * 6], dtype=torch.float64)
    assert check_not_constant_rdms("brain RDMs", y, "neg_riem_dist") is y


def test_euclid_has_no_noise_ceiling_and_is_refused_by_name():
    """rsatoolbox pools "euclid" RDMs but cannot compare with "euclid": no ceiling exists."""
    with pytest.raises(ValueError, match=r"\bmethod\b='euclid'"):
        noise_ceiling(_ceiling_rdms(), "euclid")


def _check(y, method="corr"):
    from brainrdl.stats.ceilings import check_not_constant_rdms

    return check_not_constant_rdms("brain RDMs", torch.as_tensor(y, dtype=torch.float64), method)


@pytest.mark.parametrize("method", ["corr", "corr_cov", "spearman", "rho-a", "tau-a", "tau-b"])
def test_constant_rdms_are_refused_by_row_for_correlation_and_rank_methods(method):
    v = _ceiling_rdms(seed=42, s=3, k=6)
    for constant in (np.full(6, 0.7), np.zeros(6), 1e3 + np.arange(6) * 1e-12):
        y = v.copy()
        y[1] = constant  # the last one is constant up to rounding at its scale
        with pytest.raises(ValueError, match=r"^brain RDMs: RDMs \[1\] \(1 of 3\) are constant "
                                             r"\(all dissimilarities equal\); "
                                             rf"method='{method}'"):
            _check(y, method)
    assert _check(v, method) is not None  # varied RDMs pass


def test_constant_rdm_threshold_is_100_ulps_of_the_largest_entry():
    eps = np.finfo(float).eps
    at = np.array([[1.0, 1.0 - 100 * eps, 1.0, 1.0 - 50 * eps]])
    above = np.array([[1.0, 1.0 - 100.5 * eps, 1.0, 1.0]])
    assert at[0, 0] - at[0, 1] == 100 * eps and above[0, 0] - above[0, 1] == 100.5 * eps
    with pytest.raises(ValueError, match="constant"):
        _check(at)
    assert _check(above).shape == (1, 4)
    # the same relative spread at another scale: the threshold scales with the entries
    with pytest.raises(ValueError, match="constant"):
        _check(at * 2.0**40)
    assert _check(above * 2.0**-40).shape == (1, 4)


@pytest.mark.parametrize("method", ["cosine", "cosine_cov"])
def test_cosine_methods_refuse_only_all_zero_rdms(method):
    v = _ceiling_rdms(seed=43, s=3, k=6)
    y = v.copy()
    y[2] = 0.0
    with pytest.raises(ValueError, match=r"^brain RDMs: RDMs \[2\] \(1 of 3\) are all zero; "
                                         rf"method='{method}'"):
        _check(y, method)
    y[2] = 0.7  # constant but not zero: cosine is defined
    assert _check(y, method) is not None
    y[2] = v[2] / v[2].max()  # largest entry exactly 1
    assert _check(y, method) is not None


@pytest.mark.parametrize("method", ["cosine", "corr", "neg_riem_dist"])
def test_rdms_with_infinite_or_no_finite_entries_are_refused_for_every_method(method):
    v = _ceiling_rdms(seed=44, s=3, k=6)
    y = v.copy()
    y[0, 3] = np.inf
    with pytest.raises(ValueError, match=r"^brain RDMs contain infinite dissimilarities"):
        _check(y, method)
    y = v.copy()
    y[1] = np.nan
    with pytest.raises(ValueError, match=r"^brain RDMs: RDMs \[1\] hold no finite"):
        _check(y, method)
    y[1, 2] = 0.5  # one finite pair is enough for this check
    y[1, 3] = 0.9
    assert _check(y, method) is not None


def test_noise_ceiling_names_the_brain_rdms_and_the_method_when_the_pool_cancels():
    """Two RDMs that are each other's mirror image: their correlation pool is constant, so the
    upper bound is 0/0 while the lower bound (each against the other) is -1."""
    a = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    with pytest.raises(ValueError, match=r"undefined for method='corr'"):
        noise_ceiling(np.stack([a, -a]), "corr")
    with pytest.raises(ValueError, match=r"^brain RDMs: RDMs \[0\]"):
        noise_ceiling(np.stack([np.full(6, 3.0), a]), "corr")


def test_noise_ceiling_of_a_single_group_names_the_method_when_undefined():
    a = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    with pytest.raises(ValueError, match=r"undefined for method='corr'"):
        noise_ceiling(np.stack([a, -a]), "corr", groups=[0, 0])


def test_square_rdms_must_be_square():
    with pytest.raises(ValueError, match=r"rdms as matrices must be square.*\(2, 4, 3\)"):
        noise_ceiling(np.ones((2, 4, 3)), "corr")


def test_weighted_ranks_of_an_all_equal_vector_are_its_mean_rank():
    v = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 3.0, 2.0, 4.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 3.0, 0.0, 2.0]], dtype=torch.float64)
    got = weighted_ranks(v, w)[0].numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], _closed_form_ranks(v[i].numpy(), w[0].numpy()))
    np.testing.assert_allclose(got[0, [0, 1, 3]], 3.5)  # (6 + 1) / 2


def test_weighted_compare_defaults_to_corr_and_casts_every_input_to_float64():
    rng = np.random.default_rng(45)
    x, y = rng.random((2, 10)), rng.random((2, 10))
    w = rng.integers(0, 3, size=(2, 10))
    x32, y32 = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    ref = {m: weighted_compare(x32.double(), y32.double(), torch.tensor(w).double(), m)
           for m in ["corr", "cosine", "spearman"]}
    for m in ref:
        for a, b, c in [(x32, y32, torch.tensor(w)), (x32.double(), y32, torch.tensor(w)),
                        (x32, y32.double(), torch.tensor(w, dtype=torch.float32))]:
            got = weighted_compare(a, b, c, m)
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, ref[m], rtol=1e-12, atol=1e-14)
    # arrays; the default method is corr
    torch.testing.assert_close(weighted_compare(x, y, w), weighted_compare(x, y, w, "corr"))
    expanded = _rsa(_expanded(x, w[0]), _expanded(y, w[0]), "corr")
    np.testing.assert_allclose(weighted_compare(x, y, w)[0].numpy(), expanded, rtol=1e-9)


# --------------------------------------------------------------------------- bootstrap arguments


def _xy(seed=46, n=6, s=2):
    rng = np.random.default_rng(seed)
    k = n * (n - 1) // 2
    return rng.random((2, k)), rng.random((s, k))


@pytest.mark.parametrize(
    ("kwargs", "pattern", "error"),
    [({"n_bootstrap": 0}, r"^n_bootstrap=0 is out of range", ValueError),
     ({"n_bootstrap": 2.0}, r"^n_bootstrap must be an int", TypeError),
     ({"seed": 1.5}, r"^seed must be an int", TypeError),
     ({"bootstrap": "pairs"}, r"^bootstrap='pairs' is not supported", ValueError),
     ({"device": "gpu0"}, r"^device='gpu0' is not a torch device", ValueError),
     ({"pattern_groups": [0, 1]}, r"^pattern_groups must have one label per item \(6\)",
      ValueError),
     ({"rdm_groups": [0]}, r"^rdm_groups must have one label per item \(2\)", ValueError)],
)
def test_bootstrap_messages_start_with_the_argument_name(kwargs, pattern, error):
    x, y = _xy()
    with pytest.raises(error, match=pattern):
        bootstrap_compare(x, y, **{"n_bootstrap": 2, **kwargs})


def test_weighted_compare_refuses_a_method_without_a_weighted_form_by_name():
    x, y = _xy()
    with pytest.raises(ValueError, match=r"^method='tau-a' is not supported"):
        weighted_compare(x, y, np.ones((1, x.shape[1])), "tau-a")


def test_bootstrap_refuses_vectors_that_are_not_matrices_of_rows():
    x, y = _xy()
    for a, b in [(x[0], y), (x, y[0]), (x[:, :10], y)]:
        with pytest.raises(ValueError, match=r"^x and y must be \(L, K\) and \(S, K\)"):
            bootstrap_compare(a, b, n_bootstrap=2)


def test_bootstrap_default_is_1000_stimulus_resamples():
    x, y = _xy()
    res = bootstrap_compare(x, y, seed=0)
    assert res.samples.shape == (1000, 2, 2)
    assert res.rdm_weights.dtype == torch.float64  # torch.equal alone would accept float32
    assert torch.equal(res.rdm_weights, torch.ones(1000, 2, dtype=torch.float64))


def test_unseeded_bootstraps_draw_different_resamples():
    x, y = _xy()
    runs = [bootstrap_compare(x, y, n_bootstrap=8).samples for _ in range(3)]
    assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[1], runs[2])


def test_both_resamples_stimuli_and_subjects_with_the_given_counts():
    x, y = _xy(s=3)
    counts = torch.tensor([[2, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]])  # integer counts
    groups = torch.tensor([[0, 2, 1], [3, 0, 0]])
    res = bootstrap_compare(x, y, n_bootstrap=2, bootstrap="both", pattern_counts=counts,
                            group_counts=groups)
    assert res.samples.dtype == torch.float64 and res.rdm_weights.dtype == torch.float64
    assert torch.equal(res.rdm_weights, groups.double())
    for b in range(2):
        ref = _rsa(_expanded_rdm_vector(x, counts[b].numpy()),
                   _expanded_rdm_vector(y, counts[b].numpy()), "corr")
        np.testing.assert_allclose(res.samples[b].numpy(), ref, rtol=1e-9)
    # "stimuli" alone: the same samples, every brain RDM once
    stim = bootstrap_compare(x, y, n_bootstrap=2, pattern_counts=counts)
    torch.testing.assert_close(stim.samples, res.samples)
    assert torch.equal(stim.rdm_weights, torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("method", ["corr", "spearman"])
def test_bootstrap_casts_float32_inputs_to_float64_first(method):
    x, y = _xy(seed=47)
    x32, y32 = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    a = bootstrap_compare(x32, y32, method=method, n_bootstrap=5, seed=1)
    b = bootstrap_compare(x32.double(), y32.double(), method=method, n_bootstrap=5, seed=1)
    assert a.samples.dtype == torch.float64
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-13, atol=0)


def test_weighted_corr_is_shift_invariant_even_for_large_offsets():
    """corr does not depend on a common offset of a vector; offsets of 1e6 that differ between
    the vectors would cancel catastrophically in uncentred moments."""
    x, y = _xy(seed=48)
    w = torch.as_tensor(np.random.default_rng(49).integers(0, 3, size=(3, x.shape[1])),
                        dtype=torch.float64)
    ref = weighted_compare(x, y, w, "corr")
    shifted = weighted_compare(x + np.array([[1e6], [-3e5]]), y + np.array([[2e6], [0.0]]), w,
                               "corr")
    # adding 1e6 itself rounds the entries by ~1e-10; uncentred sums would lose ~1e-4
    torch.testing.assert_close(shifted, ref, rtol=0, atol=1e-8)


def test_bootstrap_progress_bar_names_the_method_and_counts_chunks(capsys, monkeypatch):
    import threading

    from tqdm import tqdm

    # a process-local lock and no monitor thread: tqdm's default lock is a multiprocessing
    # semaphore shared with forked processes (mutmut forks one per mutant), so a process killed
    # while holding it would block every later one
    monkeypatch.setattr(tqdm, "_lock", threading.RLock(), raising=False)
    monkeypatch.setattr(tqdm, "monitor_interval", 0)
    x, y = _xy()
    bootstrap_compare(x, y, n_bootstrap=4, seed=0, chunk_size=2, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap (corr)" in err and "2/2" in err and "chunk/s" in err
    bootstrap_compare(x, y, n_bootstrap=4, seed=0, chunk_size=2, progress=False)
    assert capsys.readouterr().err == ""
    bootstrap_compare(x, y, n_bootstrap=4, seed=0, chunk_size=2)  # None: not a terminal here
    assert capsys.readouterr().err == ""


def test_cosine_noise_ceiling_accepts_a_constant_nonzero_rdm():
    from rsatoolbox.inference import boot_noise_ceiling

    v = _ceiling_rdms(seed=50)
    v[2] = 0.8  # constant: cosine is defined, correlation is not
    ref = boot_noise_ceiling(rsatoolbox.rdm.RDMs(v), method="cosine", rdm_descriptor="index")
    np.testing.assert_allclose(noise_ceiling(v, "cosine"), [float(ref[0]), float(ref[1])],
                               rtol=1e-10)
