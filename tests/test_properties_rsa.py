"""Properties of the RDM engine that pin down its arithmetic: closed forms, autograd against finite
differences, defaults, boundaries and the messages of its errors.

Written to kill the mutants that survived the reference-equality tests (docs/mutation-testing.md):
each test states a property any correct implementation has, not a snapshot of today's output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainrdl.rsa.distances import (
    mahalanobis_rdm,
    pairwise_rdm,
    poisson_rdm,
    square_from_upper_tri,
    upper_tri,
)

METHODS_WITH_GRAD = ("euclidean", "correlation", "cosine", "mahalanobis", "poisson")


def _closed_form(x: np.ndarray, method: str, precision: np.ndarray | None = None) -> np.ndarray:
    """Literal double loop over condition pairs (the definitions, as rsatoolbox documents them)."""
    n, d = x.shape
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            a, b = x[i], x[j]
            if method == "euclidean":
                out[i, j] = ((a - b) ** 2).sum() / d
            elif method == "correlation":
                out[i, j] = 1 - np.corrcoef(a, b)[0, 1]
            elif method == "cosine":
                out[i, j] = 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)
            elif method == "mahalanobis":
                out[i, j] = (a - b) @ precision @ (a - b) / d
            elif method == "poisson":
                ra, rb = (a + 0.1) / 1.1, (b + 0.1) / 1.1  # prior_lambda 1, prior_weight 0.1
                out[i, j] = ((ra - rb) * (np.log(ra) - np.log(rb))).sum() / d
    np.fill_diagonal(out, 0.0)
    return out


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine", "poisson"])
def test_small_values_match_the_definition(method, requires_grad):
    """Distances far below 1 (where a wrong clamp or scale shows) equal the literal definition,
    on the in-place path and on the autograd path."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.01, 0.05, size=(6, 5))
    t = torch.tensor(x, requires_grad=requires_grad)
    got = pairwise_rdm(t, method).detach().numpy()
    np.testing.assert_allclose(got, _closed_form(x, method), rtol=1e-9, atol=1e-12)
    if method != "correlation":  # correlation is scale-free; the others are small here
        assert np.all(got[np.triu_indices(6, 1)] < 0.5)


def test_default_method_and_poisson_prior_are_the_documented_ones():
    x = np.random.default_rng(1).uniform(0.5, 3.0, size=(5, 4))
    t = torch.tensor(x)
    np.testing.assert_allclose(pairwise_rdm(t).numpy(), _closed_form(x, "euclidean"), rtol=1e-10)
    assert pairwise_rdm(t).shape == (5, 5)  # square unless vector=True
    np.testing.assert_allclose(pairwise_rdm(t, "poisson").numpy(), _closed_form(x, "poisson"),
                               rtol=1e-10)
    np.testing.assert_allclose(poisson_rdm(t).numpy(), _closed_form(x, "poisson"), rtol=1e-10)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("method", METHODS_WITH_GRAD)
def test_gradients_equal_finite_differences(method, batched):
    """The custom symmetric-Gram backward equals finite differences (double precision), for
    single and batched patterns, under an upstream gradient that is not symmetric."""
    gen = torch.Generator().manual_seed(3)
    shape = (2, 5, 4) if batched else (5, 4)
    x = (torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    weight = torch.randn((*shape[:-1], shape[-2]), generator=gen, dtype=torch.float64)
    noise = torch.eye(4, dtype=torch.float64) + 0.1 if method == "mahalanobis" else None

    def f(inp):
        return (pairwise_rdm(inp, method, noise=noise) * weight).sum()

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


def test_mahalanobis_equals_definition_for_full_diagonal_and_batched_precision():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3)) + 10.0  # a large common offset must not matter
    a = rng.normal(size=(3, 3))
    prec = a @ a.T + 3 * np.eye(3)
    t = torch.tensor(x)
    np.testing.assert_allclose(mahalanobis_rdm(t, torch.tensor(prec)).numpy(),
                               _closed_form(x, "mahalanobis", prec), rtol=1e-9, atol=1e-12)
    diag = np.array([0.5, 2.0, 3.0])
    np.testing.assert_allclose(mahalanobis_rdm(t, torch.tensor(diag)).numpy(),
                               _closed_form(x, "mahalanobis", np.diag(diag)), rtol=1e-9)
    # a float32 precision with float64 patterns is cast to the patterns' dtype
    got32 = mahalanobis_rdm(t, torch.tensor(prec, dtype=torch.float32))
    assert got32.dtype == torch.float64
    np.testing.assert_allclose(got32.numpy(), _closed_form(x, "mahalanobis", prec), rtol=1e-6)
    # one precision per batch element
    xb = torch.tensor(np.stack([x, x[::-1].copy()]))
    precb = torch.tensor(np.stack([prec, np.eye(3)]))
    got = mahalanobis_rdm(xb, precb).numpy()
    np.testing.assert_allclose(got[0], _closed_form(x, "mahalanobis", prec), rtol=1e-9)
    np.testing.assert_allclose(got[1], _closed_form(x[::-1], "mahalanobis", np.eye(3)), rtol=1e-9)


def test_mahalanobis_refuses_a_precision_of_the_wrong_size_by_name():
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError,
                       match=r"noise must have shape \(D, D\) = \(3, 3\).*got \(2, 2\)"):
        mahalanobis_rdm(x, torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got \(5,\)"):
        mahalanobis_rdm(x, torch.ones(5, dtype=torch.float64))


def test_poisson_boundary_rate_zero_is_refused_with_the_threshold():
    """A value exactly at −prior_lambda·prior_weight gives a zero rate: log 0 is undefined."""
    x = torch.tensor([[-0.1, 1.0], [1.0, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"rates > 0.*-prior_lambda\*prior_weight = -0\.1\b"):
        poisson_rdm(x)


def test_undefined_patterns_are_named_with_their_kind():
    with pytest.raises(ValueError, match=r"cosine distance is undefined.*all zero.*conditions \[1\]"
                       r".*drop them or use method='euclidean'"):
        pairwise_rdm(torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]]), "cosine")
    with pytest.raises(ValueError, match=r"correlation distance is undefined.*constant across "
                       r"channels.*conditions \[0\]"):
        pairwise_rdm(torch.tensor([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0], [3.0, 1.0, 0.0]]),
                     "correlation")


@pytest.mark.parametrize("n", [2, 3, 7, 45, 101, 200])
def test_upper_tri_round_trip_for_many_sizes_and_batches(n):
    gen = torch.Generator().manual_seed(n)
    v = torch.rand(3, n * (n - 1) // 2, generator=gen)
    square = square_from_upper_tri(v)
    assert square.shape == (3, n, n)
    assert torch.equal(square, square.transpose(-1, -2))
    assert torch.all(torch.diagonal(square, dim1=-2, dim2=-1) == 0)
    assert torch.equal(upper_tri(square), v)
    # row-major order, as scipy's squareform
    from scipy.spatial.distance import squareform

    np.testing.assert_array_equal(square[1].numpy(), squareform(v[1].numpy()))


def test_square_from_upper_tri_names_an_impossible_length():
    with pytest.raises(ValueError, match=r"vector length 4 is not n\(n-1\)/2 for any n"):
        square_from_upper_tri(torch.ones(4))


# --------------------------------------------------------------------------- ranks
# rank_transform is scipy.stats.rankdata (method "average") along the last axis, NaN entries
# ranked NaN without displacing the others; its dtype is the input's floating dtype.

from scipy.stats import rankdata  # noqa: E402

from brainrdl.rsa.ranks import centred_ranks, rank_transform  # noqa: E402


def _rankdata_rows(x: np.ndarray) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        ok = ~np.isnan(row)
        out[idx][ok] = rankdata(row[ok])
    return out


@pytest.mark.parametrize("with_nan", [False, True])
def test_batched_ranks_with_ties_equal_rankdata_row_by_row(with_nan):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(2, 3, 7)).astype(float)  # ties in every row
    if with_nan:
        x[0, 1, [2, 5]] = np.nan
        x[1, 2, 0] = np.nan
    got = rank_transform(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, _rankdata_rows(x))


def test_ranks_of_nearly_equal_distinct_values_are_exact():
    """Values a few ulps apart are distinct values, not ties (however they are sorted)."""
    one = 1.0
    up1, up2 = np.nextafter(one, 2.0), np.nextafter(np.nextafter(one, 2.0), 2.0)
    x = np.array([[up2, up1, one, up1, 0.5, 3.0, up2, one + 1e-9],
                  [one, up2, up1, 2.0, 2.0, one, 7.0, up1]])
    got = rank_transform(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, _rankdata_rows(x))
    np.testing.assert_array_equal(centred_ranks(torch.as_tensor(x)).numpy(),
                                  _rankdata_rows(x) - 4.5)
    # a row of true ties first, then a row whose near-equal values sit in position order
    # opposite to their value order: each row is resolved on its own values
    y = np.array([[one, 5.0, one, 2.0], [up1, 3.0, one, 0.0]])
    np.testing.assert_array_equal(rank_transform(torch.as_tensor(y)).numpy(), _rankdata_rows(y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ranks_keep_the_floating_dtype_and_rank_integers_as_float64(dtype):
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0], [1.0, float("nan"), 0.0, 5.0]], dtype=dtype)
    assert rank_transform(x).dtype == dtype
    assert rank_transform(x[:1]).dtype == dtype  # the NaN-free path as well
    ints = rank_transform(torch.tensor([[3, 1, 2, 2]]))
    assert ints.dtype == torch.float64
    assert ints.tolist() == [[4.0, 1.0, 2.5, 2.5]]  # half ranks survive


def test_ranks_of_empty_and_single_entry_vectors():
    assert rank_transform(torch.empty(3, 0)).shape == (3, 0)
    assert rank_transform(torch.tensor([[5.0], [-2.0]])).tolist() == [[1.0], [1.0]]


# --------------------------------------------------------------------------- poisson_cv, lists

from rsatoolbox.data import Dataset  # noqa: E402

from brainrdl.rsa.crossnobis import poisson_cv_from_fold_sums  # noqa: E402
from brainrdl.rsa.rdm import calc_rdm  # noqa: E402


def _poisson_cv_by_hand(sums, counts, prior_lambda, prior_weight):
    """The docstring's definition, fold by fold: shrunk leave-one-out train rates against the log
    of the shrunk held-out rates, d_ij = mean_f (K[i,i] + K[j,j] - K[i,j] - K[j,i]) / D."""
    n, n_folds, d = sums.shape
    out = np.zeros((n, n))
    for f in range(n_folds):
        others = [g for g in range(n_folds) if g != f]
        train = sums[:, others].sum(1) / counts[:, others].sum(1)[:, None]
        test = sums[:, f] / counts[:, f][:, None]
        shrink = lambda m: (m + prior_lambda * prior_weight) / (1 + prior_weight)  # noqa: E731
        k = shrink(train) @ np.log(shrink(test)).T
        out += (np.diag(k)[:, None] + np.diag(k)[None, :] - k - k.T) / d
    return out / n_folds


@pytest.mark.parametrize(("prior_lambda", "prior_weight"), [(None, None), (2.0, 0.5), (0.3, 0.0)])
def test_poisson_cv_from_fold_sums_is_the_documented_formula(prior_lambda, prior_weight):
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 4, size=(4, 3)).astype(float)
    sums = rng.poisson(3.0, size=(4, 3, 5)).astype(float) * counts[..., None] + 0.5
    kwargs = {} if prior_lambda is None else {"prior_lambda": prior_lambda,
                                              "prior_weight": prior_weight}
    got = poisson_cv_from_fold_sums(torch.as_tensor(sums), torch.as_tensor(counts), **kwargs)
    expected = _poisson_cv_by_hand(sums, counts, prior_lambda or 1.0,
                                   0.1 if prior_weight is None else prior_weight)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_poisson_cv_refuses_a_held_out_rate_of_exactly_zero():
    sums = torch.tensor([[[0.0], [2.0]], [[1.0], [3.0]]], dtype=torch.float64)
    counts = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="poisson_cv"):
        poisson_cv_from_fold_sums(sums, counts, prior_weight=0.0)  # log(0) would be -inf
    assert torch.isfinite(poisson_cv_from_fold_sums(sums, counts)).all()  # the prior lifts it


def _datasets(n_ds=2, seed=4):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_ds):
        out.append(Dataset(rng.poisson(4.0, size=(12, 5)).astype(float) + 0.5,
                           descriptors={"session": i},
                           obs_descriptors={"stim": np.repeat(["a", "b", "c", "d"], 3),
                                            # runs in another order than the occurrences, so
                                            # the default folds would differ from these
                                            "run": np.array([0, 1, 2, 1, 2, 0, 2, 0, 1,
                                                             0, 2, 1])}))
    return out


@pytest.mark.parametrize(("method", "kwargs"), [
    ("poisson_cv", {"cv_descriptor": "run", "prior_lambda": 2.0, "prior_weight": 0.5}),
    ("poisson", {"prior_lambda": 0.5, "prior_weight": 1.0}),
    ("crossnobis", {"cv_descriptor": "run", "remove_mean": True}),
    ("euclidean", {"remove_mean": True}),
])
def test_a_list_of_datasets_is_each_dataset_with_the_same_arguments(method, kwargs):
    dss = _datasets()
    together = calc_rdm(dss, method=method, descriptor="stim", **kwargs)
    for i, ds in enumerate(dss):
        alone = calc_rdm(ds, method=method, descriptor="stim", **kwargs)
        np.testing.assert_allclose(together.get_vectors()[i], alone.get_vectors()[0],
                                   rtol=1e-10)


def test_a_list_of_precisions_goes_one_per_dataset():
    dss = _datasets()
    noises = [np.diag([1.0, 2.0, 3.0, 4.0, 5.0]), np.eye(5) * 0.5]
    together = calc_rdm(dss, method="crossnobis", descriptor="stim", noise=noises,
                        cv_descriptor="run")
    for i, ds in enumerate(dss):
        alone = calc_rdm(ds, method="crossnobis", descriptor="stim", noise=noises[i],
                         cv_descriptor="run")
        np.testing.assert_allclose(together.get_vectors()[i], alone.get_vectors()[0], rtol=1e-10)
    # the same precisions stacked in one (n_datasets, D, D) array
    stacked = calc_rdm(dss, method="crossnobis", descriptor="stim", noise=np.stack(noises),
                       cv_descriptor="run")
    np.testing.assert_allclose(stacked.get_vectors(), together.get_vectors(), rtol=1e-12)
    with pytest.raises(ValueError, match="noise"):
        calc_rdm(dss, method="crossnobis", descriptor="stim", noise=noises[:1],
                 cv_descriptor="run")


def test_default_folds_are_the_occurrence_index_of_each_condition():
    """cv_descriptor=None: the k-th observation of each condition is in fold k (rsatoolbox), so
    an explicit fold descriptor in that order gives the same RDM; unequal counts are refused."""
    rng = np.random.default_rng(5)
    stim = np.array(["b", "a", "a", "c", "b", "c", "a", "b", "c"])
    occurrence = np.array([0, 0, 1, 0, 1, 1, 2, 2, 2])
    ds = Dataset(rng.normal(size=(9, 4)), obs_descriptors={"stim": stim, "fold": occurrence})
    implicit = calc_rdm(ds, method="crossnobis", descriptor="stim")
    explicit = calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="fold")
    np.testing.assert_allclose(implicit.get_vectors(), explicit.get_vectors(), rtol=1e-10)
    uneven = Dataset(rng.normal(size=(7, 4)),
                     obs_descriptors={"stim": np.array(["a", "a", "a", "b", "b", "c", "c"])})
    with pytest.raises(ValueError, match="cv_descriptor"):
        calc_rdm(uneven, method="crossnobis", descriptor="stim")


# --------------------------------------------------------------------------- tau-a (Fenwick)

from brainrdl.rsa.ranks import tau_a_fenwick  # noqa: E402


def _tau_a_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """(concordant - discordant) / (k (k - 1) / 2), ties counting as neither."""
    k = len(x)
    num = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
              for i in range(k) for j in range(i + 1, k))
    return num / (k * (k - 1) / 2)


def _tau_table(a, b):
    return np.array([[_tau_a_by_hand(x, y) for y in b] for x in a])


@pytest.mark.parametrize(("n1", "n2"), [(3, 2), (2, 3), (2, 2)])
def test_tau_a_fenwick_is_the_pair_count_definition_with_ties_on_either_side(n1, n2):
    rng = np.random.default_rng(11)
    k = 12
    a = rng.integers(0, 5, size=(n1, k)).astype(float)  # ties
    b = rng.normal(size=(n2, k))
    b[0] = np.round(b[0])  # ties in one y vector only
    a[-1] = rng.permutation(k)  # one x vector without ties
    got = tau_a_fenwick(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(got, _tau_table(a, b), rtol=0, atol=1e-12)


def test_tau_a_fenwick_broadcasts_batches_from_either_side_and_any_thread_count():
    rng = np.random.default_rng(12)
    k = 9
    a = rng.integers(0, 4, size=(3, k)).astype(float)
    b = rng.integers(0, 4, size=(2, 2, k)).astype(float)
    got = tau_a_fenwick(torch.as_tensor(a), torch.as_tensor(b))
    assert got.shape == (2, 3, 2)
    for t in range(2):
        np.testing.assert_allclose(got[t].numpy(), _tau_table(a, b[t]), atol=1e-12)
    for threads in (1, 2):
        assert torch.equal(tau_a_fenwick(torch.as_tensor(a), torch.as_tensor(b),
                                         n_threads=threads), got)


def test_tau_a_fenwick_of_views_sharing_memory():
    """x and y may be views of one array (a model RDM set against part of itself)."""
    v = torch.as_tensor(np.random.default_rng(13).integers(0, 5, size=(5, 10)).astype(float))
    a, b = v[:3], v[:2]
    np.testing.assert_allclose(tau_a_fenwick(a, b).numpy(), _tau_table(a.numpy(), b.numpy()),
                               atol=1e-12)


def test_tau_a_fenwick_without_pairs_is_nan():
    assert torch.isnan(tau_a_fenwick(torch.ones(1, 1, dtype=torch.float64),
                                     torch.ones(2, 1, dtype=torch.float64))).all()


def test_tau_a_fenwick_keeps_the_floating_dtype_of_its_inputs():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0]])
    assert tau_a_fenwick(a, b).dtype == torch.float32
    assert tau_a_fenwick(a.double(), b).dtype == torch.float64
    assert tau_a_fenwick(a.long(), b.long()).dtype == torch.float64


def test_comparing_rdms_of_different_sizes_names_both_sizes():
    import rsatoolbox

    from brainrdl.rsa.comparison import compare

    rng = np.random.default_rng(14)
    with pytest.raises(ValueError, match=r"rdm1 with 5 conditions.*rdm2 with 4 conditions"):
        compare(rsatoolbox.rdm.RDMs(rng.random((1, 10))), rsatoolbox.rdm.RDMs(rng.random((1, 6))))
    # a vector of 7 entries is no upper triangle: its length is all there is to name
    with pytest.raises(ValueError, match=r"rdm2 with 7 dissimilarities"):
        compare(torch.rand(1, 10, dtype=torch.float64), torch.rand(1, 7, dtype=torch.float64))


def test_crossnobis_fold_pairs_keep_the_mean_by_default():
    from brainrdl.rsa.crossnobis import crossnobis_fold_pairs

    rng = np.random.default_rng(15)
    means = torch.as_tensor(rng.normal(size=(4, 3, 5)) + 2.0)
    precisions = torch.eye(5, dtype=torch.float64).expand(3, 5, 5)
    default = crossnobis_fold_pairs(means, precisions)
    torch.testing.assert_close(default, crossnobis_fold_pairs(means, precisions,
                                                              remove_mean=False))


def test_crossnobis_with_unequal_observation_counts_equals_rsatoolbox():
    """Conditions seen a different number of times per fold take the general (non-scalar) path."""
    from rsatoolbox.rdm import calc_rdm as rsa_calc_rdm

    rng = np.random.default_rng(18)
    stim = np.array(["a", "a", "b", "c", "a", "a", "b", "c", "a", "b", "c", "c"])
    run = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    ds = Dataset(rng.normal(size=(12, 4)), obs_descriptors={"stim": stim, "run": run})
    ours = calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="run")
    ref = rsa_calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="run")
    np.testing.assert_allclose(ours.get_vectors(), ref.get_vectors(), rtol=1e-8)
