"""Properties of the RDM comparisons (``brainrdl.rsa.comparison``, ``brainrdl.rsa.ranks``) that pin
down their arithmetic: closed forms, references (rsatoolbox, SciPy), invariances, boundaries.

Written to kill the mutants that survived the reference-equality tests of the ``compare`` group
(docs/mutation-testing.md): each test states a property any correct implementation has, not a
snapshot of today's output. Deterministic and fast (seeded generators, small sizes).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from rsatoolbox.rdm import RDMs
from rsatoolbox.rdm import compare as rsa_compare
from scipy.stats import kendalltau, rankdata

from brainrdl.errors import DegenerateDataError
from brainrdl.rsa import comparison
from brainrdl.rsa.comparison import compare, compare_vectors
from brainrdl.rsa.ranks import rank_transform, sort_rows, tau_a, tau_a_fenwick, tau_a_gemm


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rsatoolbox(v1: np.ndarray, v2: np.ndarray, method: str, sigma_k=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rsa_compare(RDMs(v1), RDMs(v2), method, sigma_k=sigma_k)


def _square(v: np.ndarray) -> np.ndarray:
    return RDMs(v).get_matrices()[0]


# --------------------------------------------------------------------------- references


def test_spearman_is_pearson_of_scipy_ranks():
    x = _rng(0).integers(0, 4, size=(3, 15)).astype(np.float64)  # many ties
    y = _rng(1).random((2, 15))
    got = compare(torch.as_tensor(x), torch.as_tensor(y), "spearman").numpy()
    want = np.array([[np.corrcoef(rankdata(a), rankdata(b))[0, 1] for b in y] for a in x])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["cosine_cov", "corr_cov"])
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_compare_vectors_uses_its_sigma_k_like_rsatoolbox(method, kind):
    """compare_vectors passes sigma_k on: the same numbers as rsatoolbox with that sigma_k (and
    not those of the identity)."""
    rng = _rng(2)
    n = 6
    v1, v2 = rng.random((2, 15)), rng.random((3, 15))
    if kind == "diag":
        sigma = rng.random(n) * 3 + 0.2
    else:
        x = rng.standard_normal((n, 3 * n))
        sigma = x @ x.T / (3 * n) + 0.1 * np.eye(n)
    # rsatoolbox solves a full sigma_k by conjugate gradients to a relative residual of 1e-5
    rtol = 1e-9 if kind == "diag" else 1e-3
    want = _rsatoolbox(v1, v2, method, sigma)
    got = compare_vectors(torch.as_tensor(v1), torch.as_tensor(v2), method,
                          sigma_k=torch.as_tensor(sigma)).numpy()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)
    identity = _rsatoolbox(v1, v2, method)
    assert not np.allclose(got, identity, rtol=1e-3)  # sigma_k mattered


# --------------------------------------------------------------------------- errors


def test_compare_vectors_names_its_method_argument():
    a = torch.rand(1, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^method='kendall' is not supported"):
        compare_vectors(a, a, "kendall")


# --------------------------------------------------------------------------- square RDMs


def test_square_with_a_tiny_asymmetry_in_a_small_entry_is_a_square():
    """Symmetry is judged with an absolute tolerance of 1e-5 of the largest entry: an asymmetry
    of 1e-4 in an entry near 0 is rounding when the largest entry is 100, so the tensor is one
    square RDM (its upper triangle is used) however ``square`` is given."""
    rng = _rng(3)
    v = rng.random(10) * 100
    v[0] = 0.0  # entry (0, 1)
    v[-1] = 100.0
    sq = _square(v[None])
    sq[1, 0] = 1e-4  # well within 1e-5 * 100 = 1e-3 of sq[0, 1] = 0
    other = rng.random((2, 10))
    want = _rsatoolbox(v[None], other, "corr")
    others = torch.as_tensor(RDMs(other).get_matrices())  # squares: read alike either way
    for square in (None, True):
        got = compare(torch.as_tensor(sq), others, "corr", square=square)
        assert got.shape == (1, 2)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    sq[1, 0] = 1e-2  # 10x the tolerance: not symmetric
    with pytest.raises(DegenerateDataError, match="not symmetric"):
        compare(torch.as_tensor(sq), torch.as_tensor(other), "corr")


@pytest.mark.parametrize("square", [None, True])
def test_square_rdm_with_missing_pairs_is_a_square(square):
    """NaN marks a missing dissimilarity (at (i, j) and (j, i)): still one symmetric square RDM,
    compared as rsatoolbox compares the vector with NaN at that position."""
    rng = _rng(4)
    v1, v2 = rng.random((1, 10)), rng.random((2, 10))
    v1[0, [2, 7]] = np.nan
    v2[:, [2, 7]] = np.nan
    sq = _square(v1)
    assert np.isnan(sq).sum() == 4
    squares2 = torch.as_tensor(RDMs(v2).get_matrices())
    got = compare(torch.as_tensor(sq), squares2, "corr", square=square)
    np.testing.assert_allclose(got.numpy(), _rsatoolbox(v1, v2, "corr"), rtol=1e-12)


def test_full_sigma_k_limit_is_inclusive(monkeypatch):
    """A full sigma_k is supported up to and including _MAX_K_FULL_SIGMA dissimilarities (the
    limit is lowered here so that the boundary is cheap to reach)."""
    rng = _rng(5)
    v1, v2 = rng.random((1, 10)), rng.random((1, 10))  # 5 conditions, 10 dissimilarities
    x = rng.standard_normal((5, 15))
    sigma = x @ x.T / 15 + 0.1 * np.eye(5)
    monkeypatch.setattr(comparison, "_MAX_K_FULL_SIGMA", 10)
    got = compare(v1, v2, "cosine_cov", sigma_k=sigma)
    np.testing.assert_allclose(got, _rsatoolbox(v1, v2, "cosine_cov", sigma), rtol=1e-3)
    monkeypatch.setattr(comparison, "_MAX_K_FULL_SIGMA", 9)
    with pytest.raises(ValueError, match="supported up to 9 dissimilarities"):
        compare(v1, v2, "cosine_cov", sigma_k=sigma)


# --------------------------------------------------------------------------- ranks


def test_sort_rows_of_integers_is_a_stable_argsort_with_a_bool_tie_mask():
    """Integer rows (the argsort path): ties in index order, as documented, and ``starts`` a
    bool mask of where the sorted values change."""
    x = _rng(6).integers(0, 3, size=(2, 3000))  # long rows of heavy ties
    order, starts = sort_rows(x)
    np.testing.assert_array_equal(order, np.argsort(x, axis=-1, kind="stable"))
    assert starts.dtype == np.bool_
    srt = np.sort(x, axis=-1)
    want = np.ones(x.shape, dtype=bool)
    want[:, 1:] = srt[:, 1:] != srt[:, :-1]
    np.testing.assert_array_equal(starts, want)


# --------------------------------------------------------------------------- full sigma_k


def _full_sigma(n: int, seed: int) -> np.ndarray:
    x = _rng(seed).standard_normal((n, 3 * n))
    return x @ x.T / (3 * n) + 0.1 * np.eye(n)


def _whitened_cosine(v1: np.ndarray, v2: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The closed form v1ᵀV⁻¹v2 / (‖v1‖_V ‖v2‖_V), V = ξ∘ξ, ξ = CΣCᵀ, by a literal loop over the
    pairs of the contrasts (NaN for a zero vector, as rsatoolbox's 0/0)."""
    n = sigma.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    contrasts = np.zeros((len(pairs), n))
    for p, (i, j) in enumerate(pairs):
        contrasts[p, i], contrasts[p, j] = 1.0, -1.0
    xi = contrasts @ sigma @ contrasts.T
    v_inv = np.linalg.inv(xi * xi)
    out = np.empty((len(v1), len(v2)))
    for i, a in enumerate(v1):
        for j, b in enumerate(v2):
            with np.errstate(invalid="ignore"):
                out[i, j] = a @ v_inv @ b / np.sqrt(a @ v_inv @ a) / np.sqrt(b @ v_inv @ b)
    return out


def test_full_sigma_k_batches_like_a_loop_and_zero_vectors_give_nan_in_their_row_only():
    """Batched compare_vectors with a full sigma_k: each batch entry is the closed form; a zero
    vector gives NaN in its own row (column) only, the other cells keep their values."""
    rng = _rng(7)
    n, k = 5, 10
    sigma = _full_sigma(n, 8)
    a = rng.random((3, 4, k))   # 3 resamples x 4 RDMs
    b = rng.random((3, 2, k))   # another count of RDMs on the other side
    a[1, 2] = 0.0
    b[2, 0] = 0.0
    got = compare_vectors(torch.as_tensor(a), torch.as_tensor(b), "cosine_cov",
                          sigma_k=torch.as_tensor(sigma)).numpy()
    assert got.shape == (3, 4, 2)
    for t in range(3):
        np.testing.assert_allclose(got[t], _whitened_cosine(a[t], b[t], sigma), rtol=1e-9)
    nan = np.isnan(got)
    assert nan[1, 2].all() and nan[2, :, 0].all()
    assert nan.sum() == 2 + 4 - 0  # row (1, 2, :) and column (2, :, 0), no overlap
    assert np.isfinite(got[0]).all()


def test_full_sigma_k_zero_vector_on_the_left_is_nan_like_rsatoolbox():
    rng = _rng(9)
    v1, v2 = rng.random((3, 10)), rng.random((2, 10))
    v1[1] = 0.0
    sigma = _full_sigma(5, 10)
    got = compare(v1, v2, "cosine_cov", sigma_k=sigma)
    want = _whitened_cosine(v1, v2, sigma)
    assert np.isnan(got[1]).all() and np.isnan(want[1]).all()
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], rtol=1e-9)
    np.testing.assert_allclose(got[[0, 2]], _rsatoolbox(v1, v2, "cosine_cov", sigma)[[0, 2]],
                               rtol=1e-3)


def test_singular_full_sigma_k_is_refused_by_name():
    """A sigma_k whose contrast covariance is singular (here: every pattern equally correlated,
    so every contrast has variance 0 and V = 0) is refused."""
    v = _rng(11).random((1, 10))
    with pytest.raises(DegenerateDataError, match="sigma_k gives a singular"):
        compare(v, v, "cosine_cov", sigma_k=np.ones((5, 5)))


# --------------------------------------------------------------------------- ranks, tau-a


def test_ranks_of_an_empty_integer_vector_are_float64():
    out = rank_transform(torch.empty(3, 0, dtype=torch.int64))
    assert out.shape == (3, 0) and out.dtype == torch.float64


@pytest.mark.parametrize("method", ["tau-a", "spearman", "rho-a"])
def test_two_entries_one_pair(method):
    """With k = 2 there is one pair: the rank correlations are +1 (same order) or -1."""
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 5.0], [5.0, 3.0]], dtype=torch.float64)
    np.testing.assert_allclose(compare(a, b, method).numpy(), [[1.0, -1.0]], rtol=0, atol=1e-12)


def test_tau_a_gemm_keeps_the_floating_dtype_and_batches_on_either_side():
    rng = _rng(12)
    a = rng.integers(0, 4, size=(3, 9)).astype(np.float64)
    b = rng.integers(0, 4, size=(2, 2, 9)).astype(np.float64)
    want = np.stack([_tau_table(a, b[t]) for t in range(2)])
    got = tau_a_gemm(torch.as_tensor(a), torch.as_tensor(b))
    assert got.shape == (2, 3, 2) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    got_t = tau_a_gemm(torch.as_tensor(b), torch.as_tensor(a))
    np.testing.assert_allclose(got_t.numpy(), want.transpose(0, 2, 1), atol=1e-12)
    f32 = tau_a_gemm(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b[0],
                                                                             dtype=torch.float32))
    assert f32.dtype == torch.float32
    ints = tau_a_gemm(torch.as_tensor(a).long(), torch.as_tensor(b[0]).long())
    assert ints.dtype == torch.float64


def _tau_table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(concordant - discordant) / (k (k - 1) / 2) by the literal double loop over pairs."""
    k = a.shape[-1]
    out = np.empty((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i, j] = sum(np.sign(x[p] - x[q]) * np.sign(y[p] - y[q])
                            for p in range(k) for q in range(p + 1, k)) / (k * (k - 1) / 2)
    return out


def test_tau_a_without_pairs_is_nan_on_either_path():
    """One entry: no pairs, tau-a = 0/0 (NaN, as scipy.stats.kendalltau), from the GEMM path and
    the Fenwick path alike (the GEMM path gave 0 before)."""
    a, b = torch.ones(2, 1, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)
    for fn in (tau_a, tau_a_gemm, tau_a_fenwick):
        out = fn(a, b)
        assert out.shape == (2, 3) and torch.isnan(out).all(), fn.__name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(kendalltau([1.0], [2.0]).statistic)


def test_tau_a_of_reversed_and_identical_orders_is_exactly_minus_one_and_one():
    """The extreme values are reached exactly (no clamp is needed: the pair counts are exact),
    on the GEMM path (k <= 300) and the Fenwick path (k > 300), for float64 and float32."""
    for k in (40, 301):
        x = torch.arange(k, dtype=torch.float64)[None]
        both = torch.cat([x, -x])
        for dtype in (torch.float64, torch.float32):
            for fn in (tau_a_gemm, tau_a_fenwick, tau_a):
                out = fn(x.to(dtype), both.to(dtype))
                assert out.tolist() == [[1.0, -1.0]], (fn.__name__, k, dtype)


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_dissimilarities_are_refused_naming_the_argument_and_positions(bad):
    rng = _rng(13)
    v1, v2 = rng.random((2, 10)), rng.random((3, 10))
    w1 = v1.copy()
    w1[1, [3, 8]] = bad
    w1[0, 3] = np.nan  # NaN elsewhere does not hide the infinities
    with pytest.raises(DegenerateDataError,
                       match=r"^rdm1 contains 2 infinite dissimilarities \(at vector positions "
                             r"\[3, 8\]\)"):
        compare(w1, v2)
    w2 = v2.copy()
    w2[2, 5] = bad
    with pytest.raises(DegenerateDataError, match=r"^rdm2 contains 1 infinite .*\[5\]\)"):
        compare(torch.as_tensor(v1), torch.as_tensor(w2))
    # compare_vectors names its own arguments
    with pytest.raises(DegenerateDataError, match=r"^a contains 2 infinite"):
        compare_vectors(torch.as_tensor(w1), torch.as_tensor(v2))
    with pytest.raises(DegenerateDataError, match=r"^b contains 1 infinite"):
        compare_vectors(torch.as_tensor(v1), torch.as_tensor(w2))


def test_nan_in_rdm2_only_is_refused_like_nan_in_rdm1_only():
    rng = _rng(14)
    v1, v2 = rng.random((2, 10)), rng.random((2, 10))
    v2[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN at different dissimilarities \(positions \[4\]"):
        compare(v1, v2)
    with pytest.raises(ValueError, match=r"NaN at different dissimilarities \(positions \[4\]"):
        compare_vectors(torch.as_tensor(v1), torch.as_tensor(v2))


def test_sigma_k_variances_must_be_positive_and_finite():
    v = _rng(15).random((2, 10))
    sigma = np.ones(5)
    sigma[2] = 0.0  # the boundary: a zero variance is not positive
    with pytest.raises(ValueError, match="sigma_k as variances"):
        compare(v, v, "cosine_cov", sigma_k=sigma)
    sigma[2] = np.nan
    with pytest.raises(DegenerateDataError, match="sigma_k must be finite"):
        compare(v, v, "cosine_cov", sigma_k=sigma)
    # a list is read as an array; other methods ignore sigma_k, as rsatoolbox does
    np.testing.assert_allclose(compare(v, v, "cosine_cov", sigma_k=[1.0, 2.0, 1.0, 3.0, 1.0]),
                               _rsatoolbox(v, v, "cosine_cov", np.array([1.0, 2, 1, 3, 1])),
                               rtol=1e-9)
    np.testing.assert_array_equal(compare(v, v, "corr", sigma_k=np.ones(3)), compare(v, v, "corr"))


def test_valid_mask_must_be_one_dimensional_with_k_true_entries():
    a = torch.rand(2, 9, dtype=torch.float64)
    two_d = torch.zeros(2, 10, dtype=torch.bool)
    two_d[0, :9] = True  # 9 True entries, but not a 1-d mask
    with pytest.raises(ValueError, match=r"valid must be a 1-d boolean mask with k=9"):
        compare_vectors(a, a, valid=two_d)
    too_many = torch.ones(10, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"with 10 True"):
        compare_vectors(a, a, valid=too_many)


# --------------------------------------------------------------------------- tensor inputs


def test_integer_tensors_are_compared_as_float64():
    rng = _rng(16)
    x = rng.integers(0, 9, size=(2, 10))
    y = rng.integers(0, 9, size=(3, 10))
    for method in ("corr", "spearman", "cosine_cov"):
        got = compare(torch.as_tensor(x), torch.as_tensor(y), method)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), _rsatoolbox(x.astype(float), y.astype(float),
                                                            method), rtol=1e-9)
    # one integer vector (k,) is one RDM
    one = compare(torch.as_tensor(x[0]), torch.as_tensor(y), "corr")
    assert one.shape == (1, 3) and one.dtype == torch.float64


def test_two_condition_square_is_one_dissimilarity():
    """A 2x2 zero-diagonal symmetric tensor is one square RDM of a single dissimilarity: too
    few to compare (it is not read as two vectors of length 2)."""
    sq = torch.tensor([[0.0, 3.0], [3.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"at least 2 non-NaN dissimilarities; got 1"):
        compare(sq, sq)
    with pytest.raises(ValueError, match=r"at least 2 non-NaN dissimilarities; got 1"):
        compare(sq[None], sq[None])  # the 3-d stack of squares alike


def test_all_zero_square_and_nan_diagonal_square_are_one_rdm_each():
    rng = _rng(17)
    others = torch.as_tensor(rng.random((2, 10)))
    zero = torch.zeros(5, 5, dtype=torch.float64)
    got = compare(zero, others, "cosine")
    assert got.shape == (1, 2) and (got == 0).all()  # zero length: 0, as rsatoolbox
    v = rng.random((1, 10))
    sq = torch.as_tensor(_square(v))
    torch.diagonal(sq).fill_(float("nan"))
    got = compare(sq, others, "corr")
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got.numpy(), _rsatoolbox(v, others.numpy(), "corr"), rtol=1e-12)


def test_square_true_checks_shape_and_symmetry():
    rng = _rng(18)
    with pytest.raises(ValueError, match=r"rdm1 with square=True must be \(n_cond, n_cond\)"):
        compare(torch.rand(3, 10), torch.rand(5, 5), square=True)
    sq = torch.as_tensor(_square(rng.random((1, 10))))
    sq[3, 1] += 1.0  # not symmetric; square=True still refuses it, naming the first such pair
    want = (rf"rdm1 is a square \(5, 5\) tensor .* \(rdm1\[1, 3\] = {float(sq[1, 3]):.6g} vs "
            rf"rdm1\[3, 1\] = {float(sq[3, 1]):.6g}\)")
    with pytest.raises(DegenerateDataError, match=want):
        compare(sq, sq.T.contiguous(), square=True)
    out = compare(sq, sq, square=False)  # rows as vectors: allowed when asked for
    assert out.shape == (5, 5)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_cosine_and_correlation_do_not_depend_on_a_common_scale(scale):
    """Rows far below or above 1 (whose squared norms under- or overflow) give the cosines of
    the unscaled rows."""
    rng = _rng(19)
    v1, v2 = rng.random((2, 15)), rng.random((3, 15))
    for method in ("cosine", "corr"):
        want = compare(torch.as_tensor(v1), torch.as_tensor(v2), method)
        got = compare(torch.as_tensor(v1 * scale), torch.as_tensor(v2), method)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- sigma_k's dtype


def test_sigma_k_list_is_read_as_float64_like_its_array():
    """A list sigma_k is the float64 array of its numbers: the same result as that array and as
    rsatoolbox, not the float32 rounding torch.as_tensor gives a list of Python floats."""
    v1, v2 = _rng(40).random((2, 10)), _rng(41).random((3, 10))
    diag = [1.1, 2.3, 0.7, 3.3, 1.9]  # none of them a float32 number
    x = _rng(42).standard_normal((5, 15))
    full = (x @ x.T / 15 + 0.1 * np.eye(5)).tolist()
    for sigma in (diag, full):
        as_array = np.asarray(sigma, dtype=np.float64)
        assert not np.array_equal(as_array, as_array.astype(np.float32))
        got = compare(v1, v2, "cosine_cov", sigma_k=sigma)
        np.testing.assert_array_equal(got, compare(v1, v2, "cosine_cov", sigma_k=as_array))
        got_t = compare(torch.as_tensor(v1), torch.as_tensor(v2), "corr_cov", sigma_k=sigma)
        np.testing.assert_array_equal(
            got_t.numpy(), compare(torch.as_tensor(v1), torch.as_tensor(v2), "corr_cov",
                                   sigma_k=torch.as_tensor(as_array)).numpy())
    np.testing.assert_allclose(compare(v1, v2, "cosine_cov", sigma_k=diag),
                               _rsatoolbox(v1, v2, "cosine_cov", np.asarray(diag)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_sigma_k_takes_the_rdms_dtype(kind):
    """sigma_k is used in the RDMs' dtype, whatever its own: float32 RDMs give a float32 result
    with a float64 sigma_k, and float64 RDMs with a float32 sigma_k give the float64 result of
    the same (float32-exact) numbers."""
    v1, v2 = _rng(43).random((2, 10)), _rng(44).random((3, 10))
    if kind == "diag":
        sigma = np.array([1.5, 0.5, 2.0, 1.25, 3.0])
    else:
        x = _rng(45).standard_normal((5, 15))
        sigma = (x @ x.T / 15 + 0.1 * np.eye(5)).astype(np.float32).astype(np.float64)
    want = compare(v1, v2, "cosine_cov", sigma_k=sigma)
    for method in ("cosine_cov", "corr_cov"):
        ref = compare(v1, v2, method, sigma_k=sigma)
        f32 = compare(torch.as_tensor(v1, dtype=torch.float32),
                      torch.as_tensor(v2, dtype=torch.float32), method, sigma_k=sigma)
        assert f32.dtype == torch.float32
        np.testing.assert_allclose(f32.numpy(), ref, rtol=1e-4)
        f64 = compare_vectors(torch.as_tensor(v1), torch.as_tensor(v2), method,
                              sigma_k=torch.as_tensor(sigma, dtype=torch.float32))
        assert f64.dtype == torch.float64
        np.testing.assert_allclose(f64.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(want, _rsatoolbox(v1, v2, "cosine_cov", sigma), rtol=1e-3)


def test_compare_is_differentiable_in_a_sigma_k_tensor():
    """A sigma_k tensor that requires grad is used as a tensor (not through NumPy): the
    comparison is differentiable in it, and its gradient matches finite differences."""
    v1 = torch.as_tensor(_rng(46).random((2, 10)))
    v2 = torch.as_tensor(_rng(47).random((3, 10)))
    diag = torch.tensor([1.5, 0.5, 2.0, 1.25, 3.0], dtype=torch.float64, requires_grad=True)
    x = torch.as_tensor(_rng(48).standard_normal((5, 6))).requires_grad_(True)
    eye = torch.eye(5, dtype=torch.float64)
    # a full sigma_k is symmetric: differentiate through a symmetric parametrisation of it
    for make, param in ((lambda d: d, diag), (lambda y: y @ y.T / 6 + 0.1 * eye, x)):
        for method in ("cosine_cov", "corr_cov"):
            assert torch.autograd.gradcheck(
                lambda p, m=method, f=make: compare(v1, v2, m, sigma_k=f(p)), (param,))
            assert torch.autograd.gradcheck(
                lambda p, m=method, f=make: compare_vectors(v1, v2, m, sigma_k=f(p)), (param,))


# --------------------------------------------------------------------------- batched *_cov


@pytest.mark.parametrize("method", ["cosine_cov", "corr_cov"])
@pytest.mark.parametrize("sigma", [None, "diag"])
@pytest.mark.parametrize("nan", [False, True])
def test_cov_methods_batch_like_rsatoolbox_on_each_entry(method, sigma, nan):
    """compare_vectors on a batch (B, n1, k) against (B, n2, k): each batch entry is rsatoolbox's
    comparison of that entry's RDMs, with the identity or a diagonal sigma_k, with or without
    NaN positions (n1, n2, B and n all differ so that no axis can stand in for another)."""
    n, batch, n1, n2 = 6, 2, 3, 4
    rng = _rng(50)
    a, b = rng.random((batch, n1, 15)), rng.random((batch, n2, 15))
    if nan:
        a[..., [1, 9]] = np.nan
        b[..., [1, 9]] = np.nan
    sig = None if sigma is None else rng.random(n) * 3 + 0.2
    got = compare_vectors(torch.as_tensor(a), torch.as_tensor(b), method,
                          sigma_k=None if sig is None else torch.as_tensor(sig)).numpy()
    assert got.shape == (batch, n1, n2)
    for t in range(batch):
        np.testing.assert_allclose(got[t], _rsatoolbox(a[t], b[t], method, sig), rtol=1e-9,
                                   atol=1e-12)
    # a batch of one on the right broadcasts against the whole left batch
    one = compare_vectors(torch.as_tensor(a), torch.as_tensor(b[:1]), method,
                          sigma_k=None if sig is None else torch.as_tensor(sig)).numpy()
    for t in range(batch):
        np.testing.assert_allclose(one[t], _rsatoolbox(a[t], b[0], method, sig), rtol=1e-9,
                                   atol=1e-12)


# --------------------------------------------------------------------------- input dtypes, zeros


def test_centred_ranks_are_scipy_ranks_minus_their_mean_in_the_floating_dtype():
    """centred_ranks = rankdata − (k + 1)/2 along the last axis: a 1-d vector, float32 kept,
    integers (with ties: half ranks) in float64, an empty last axis left empty."""
    from brainrdl.rsa.ranks import centred_ranks

    x = np.array([10.0, 30.0, 20.0, 20.0, 5.0, 30.0, 30.0])
    got = centred_ranks(torch.as_tensor(x, dtype=torch.float32))
    assert got.dtype == torch.float32 and got.shape == (7,)
    np.testing.assert_array_equal(got.numpy(), rankdata(x) - 4.0)
    ints = _rng(51).integers(0, 4, size=(3, 9))
    got = centred_ranks(torch.as_tensor(ints))
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), rankdata(ints, axis=-1) - 5.0)
    empty = centred_ranks(torch.zeros(3, 0, dtype=torch.float64))
    assert empty.shape == (3, 0) and empty.dtype == torch.float64
    # and the rank correlations keep a float32 input's dtype
    v = torch.as_tensor(_rng(52).random((2, 10)), dtype=torch.float32)
    for method in ("spearman", "rho-a"):
        assert compare(v, v, method).dtype == torch.float32


@pytest.mark.parametrize("method", ["cosine_cov", "corr_cov"])
def test_zero_rdm_on_either_side_compares_as_zero_like_rsatoolbox(method):
    """An all-zero RDM whitens to the zero vector: its comparisons are 0 (rsatoolbox's _cosine),
    on the left and on the right, and the other cells keep their values."""
    v = _rng(53).random((2, 10))
    zero = np.zeros((1, 10))
    z = np.vstack([zero, v[0]])
    assert (_rsatoolbox(zero, v, method) == 0).all() and (_rsatoolbox(v, zero, method) == 0).all()
    want = _rsatoolbox(v, v[:1], method)
    right, left = compare(v, z, method), compare(z, v, method)
    np.testing.assert_array_equal(right[:, 0], [0.0, 0.0])
    np.testing.assert_array_equal(left[0], [0.0, 0.0])
    np.testing.assert_allclose(right[:, 1:], want, rtol=1e-9)
    np.testing.assert_allclose(left[1:], want.T, rtol=1e-9)


def test_numpy_and_rsatoolbox_inputs_are_compared_in_float64():
    """rsatoolbox RDMs and NumPy arrays give float64 results whatever their own dtype: float32
    inputs give the float64 result of the same numbers; an integer array is read as float64;
    a 1-d array (k,) is one RDM vector."""
    v1, v2 = _rng(54).random((2, 10)), _rng(55).random((3, 10))
    v1_32, v2_32 = v1.astype(np.float32), v2.astype(np.float32)
    for method in ("cosine", "corr_cov"):
        want = compare(v1_32.astype(np.float64), v2_32.astype(np.float64), method)
        for got in (compare(v1_32, v2_32, method),
                    compare(RDMs(v1_32), RDMs(v2_32), method)):
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-13)
        ints = _rng(56).integers(0, 9, size=(2, 10))
        got = compare(ints, v2, method)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, _rsatoolbox(ints.astype(float), v2, method), rtol=1e-9)
        one = compare(v1[0], v2, method)
        assert one.shape == (1, 3)
        np.testing.assert_array_equal(one, compare(v1[:1], v2, method))


def test_sort_rows_of_floats_is_a_stable_argsort_with_its_tie_mask():
    """sort_rows on float rows = np.argsort(kind='stable') (ties in index order) with the mask
    of value changes: negative ties, ±0.0, values closer than the packed key's resolution
    (1 + 2**-45), huge and tiny magnitudes, float32 rows."""
    rows = np.array([
        [-1.0, -1.0, -1.0, 2.0, -3.0, -3.0, 0.0, -0.0],
        [1.0, 1.0 + 2.0**-45, 1.0, 1.0 + 2.0**-44, 1e-300, 2e-300, 1e300, 1e-300],
        [0.5, -0.5, 0.5, -0.5, 1e-20, 3e-20, 2e-20, 0.5],
    ])
    for flat in (rows, rows[2:].astype(np.float32), np.abs(rows[1:2])):
        order, starts = sort_rows(flat)
        want = np.argsort(flat, axis=-1, kind="stable")
        np.testing.assert_array_equal(order, want)
        srt = np.take_along_axis(flat, want, axis=-1)
        mask = np.ones(flat.shape, dtype=bool)
        mask[:, 1:] = srt[:, 1:] != srt[:, :-1]
        assert starts is not None
        np.testing.assert_array_equal(starts, mask)
    # rows without ties: no mask (None), as documented, short rows and long ones alike
    for k in (5, 70):
        flat = _rng(58).random((3, k))
        order, starts = sort_rows(flat)
        np.testing.assert_array_equal(order, np.argsort(flat, axis=-1, kind="stable"))
        assert starts is None
    # distinct values closer than the key's resolution (truncated bits) and no true ties
    merged = np.array([[1.0 + 2.0**-51, 1.0, 0.3, 0.7], [0.2, 0.1, 0.5 + 2.0**-52, 0.5]])
    order, starts = sort_rows(merged)
    np.testing.assert_array_equal(order, np.argsort(merged, axis=-1, kind="stable"))
    np.testing.assert_array_equal(starts, np.ones((2, 4), dtype=bool))
    # no entries: empty order; integers beyond float64's exact range keep their order and ties
    order, _ = sort_rows(np.zeros((2, 0)))
    assert order.shape == (2, 0)
    big = np.array([[2**60 + 1, 2**60, 2**60 + 1, 2**60 + 3]], dtype=np.int64)
    order, starts = sort_rows(big)
    np.testing.assert_array_equal(order, [[1, 0, 2, 3]])
    np.testing.assert_array_equal(starts, [[True, True, False, True]])


def test_centred_ranks_with_nan_are_the_nan_aware_ranks_minus_their_mean():
    """With NaN (ranked as rank_transform does), centred_ranks is rank_transform − (k + 1)/2."""
    from brainrdl.rsa.ranks import centred_ranks

    x = torch.as_tensor(_rng(57).random((3, 8)))
    x[0, 2] = x[2, 5] = float("nan")
    x[1, 3] = x[1, 6]
    want = rank_transform(x) - 4.5
    np.testing.assert_array_equal(centred_ranks(x).numpy(), want.numpy())
    assert not torch.isnan(want[1]).any()  # the NaN-free row is ranked as usual
    np.testing.assert_array_equal(want[1].numpy(), rankdata(x[1].numpy()) - 4.5)


def test_cosine_gradient_at_a_one_hot_rdm_matches_finite_differences():
    """A one-hot RDM vector has norm exactly 1 after scaling by its largest entry: the cosine's
    gradient there (either side) still matches finite differences (the norm is differentiated,
    not taken as a constant)."""
    b = torch.as_tensor(_rng(59).random((2, 10)))
    onehot = torch.zeros(1, 10, dtype=torch.float64)
    onehot[0, 3] = 1.0
    onehot.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: compare(a, b, "cosine"), (onehot,))
    assert torch.autograd.gradcheck(lambda a: compare(b, a, "cosine"), (onehot,))


def test_all_nan_square_is_refused_as_having_no_dissimilarities():
    """A square tensor with no finite entry is a square RDM with every dissimilarity missing:
    refused for having fewer than 2 (read as square or told so), not a crash on its scale."""
    nan = torch.full((4, 4), float("nan"), dtype=torch.float64)
    for square in (None, True):
        with pytest.raises(ValueError, match="at least 2 non-NaN"):
            compare(nan, nan.clone(), "corr", square=square)


def test_errors_about_the_second_rdm_name_rdm2():
    """An asymmetric square or an unreadable object given as rdm2 is reported as rdm2."""
    good = torch.as_tensor(_rng(61).random((2, 6)))
    asym = torch.as_tensor(_square(_rng(62).random((1, 6))))
    asym[0, 1] += 1.0
    with pytest.raises(DegenerateDataError, match="rdm2"):
        compare(good, asym)
    with pytest.raises(TypeError, match="rdm2"):
        compare(good, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="rdm2 as a NumPy array"):
        compare(good.numpy(), np.zeros((2, 3, 6)))
    # a tensor with rsatoolbox RDMs on the right: a tensor on the left tensor's device
    mixed = compare(good, RDMs(good.numpy()[:1]), "corr")
    assert isinstance(mixed, torch.Tensor) and mixed.shape == (2, 1)
    np.testing.assert_allclose(mixed.numpy(), _rsatoolbox(good.numpy(), good.numpy()[:1], "corr"),
                               rtol=1e-12)


def test_integer_tensors_are_read_as_float64_before_promotion():
    """An integer tensor is read as float64 first, so against a float32 tensor the result is
    float64 (the float32 tensor's numbers compared exactly), as for two integer tensors."""
    ints = torch.as_tensor(_rng(63).integers(0, 9, size=(2, 10)))
    f32 = torch.as_tensor(_rng(64).random((3, 10)), dtype=torch.float32)
    got = compare(ints, f32, "corr")
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _rsatoolbox(ints.numpy().astype(float),
                                                        f32.numpy().astype(float), "corr"),
                               rtol=1e-12)


def test_cosine_scales_each_rdm_on_its_own():
    """RDMs at 1e-200 and 1e200 in one stack: each is scaled by its own largest entry, so both
    give the cosine of the unscaled RDM (a common scale would underflow the small one to 0)."""
    v, b = _rng(65).random((1, 10)), _rng(66).random((2, 10))
    stack = torch.as_tensor(np.vstack([v * 1e-200, v * 1e200]))
    got = compare(stack, torch.as_tensor(b), "cosine").numpy()
    want = _rsatoolbox(v, b, "cosine")
    np.testing.assert_allclose(got, np.vstack([want, want]), rtol=1e-12)


def test_compare_vectors_checks_b_by_name_and_promotes_mixed_dtypes():
    """compare_vectors names b in its type error, compares float32 against float64 in float64,
    and lists at most the first 10 positions where the NaN of a and b disagree."""
    a = torch.as_tensor(_rng(67).random((2, 15)))
    with pytest.raises(TypeError, match=r"^b must be a torch\.Tensor"):
        compare_vectors(a, a.numpy())
    got = compare_vectors(a.to(torch.float32), a, "corr")
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _rsatoolbox(a.numpy().astype(np.float32).astype(
        float), a.numpy(), "corr"), rtol=1e-12)
    assert compare_vectors(a, a.to(torch.float32), "corr").dtype == torch.float64
    # a valid mask with batched vectors (B, n, k): each entry compared on the valid positions
    valid = torch.ones(21, dtype=torch.bool)
    valid[[3, 10, 17, 19, 20, 0]] = False
    batched = torch.stack([a, a.flip(-1)])
    got = compare_vectors(batched, a[:1], "corr", valid=valid)
    assert got.shape == (2, 2, 1)
    for t in range(2):
        np.testing.assert_allclose(got[t].numpy(), compare_vectors(batched[t], a[:1], "corr",
                                                                   valid=valid).numpy())
    bad = a.clone()
    bad[:, :12] = float("nan")  # 12 positions NaN in a only
    with pytest.raises(ValueError, match=r"\(positions \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] of"):
        compare_vectors(bad, a)
