"""brainrdl.compare against rsatoolbox.rdm.compare, its tensor paths, gradients and errors."""

from __future__ import annotations

import importlib
import warnings
from unittest import mock

import numpy as np
import pytest
import scipy.sparse.linalg
import scipy.stats
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rsatoolbox.rdm import RDMs
from rsatoolbox.rdm import compare as rsa_compare

import brainrdl
from brainrdl.rsa.comparison import DIFFERENTIABLE_METHODS, METHODS, compare, compare_vectors
from brainrdl.rsa.ranks import rank_transform, tau_a_fenwick, tau_a_gemm

COV = ("corr_cov", "cosine_cov")
RTOL, ATOL = 1e-6, 1e-10
# the module (its name is shadowed by the function in rsatoolbox.rdm)
rsa_compare_module = importlib.import_module("rsatoolbox.rdm.compare")


def _exact_cg(a, b, **_):
    """Exact stand-in for the conjugate gradient rsatoolbox runs at rtol=1e-5 (full sigma_k)."""
    return scipy.sparse.linalg.spsolve(a.tocsc(), b), 0


def _fixed_cosine(vector1, vector2):
    """rsatoolbox's ``_cosine`` with its zero-norm branch fixed.

    rsatoolbox 0.3.2 writes the cosines of the non-zero rows back with ``np.putmask``, which
    takes values by flat position, not in order: with a zero-length vector among several the
    other similarities land in the wrong cells (see test_rsatoolbox_zero_norm_bug_not_copied).
    """
    norm_1 = np.sqrt(np.einsum("ij,ij->i", vector1, vector1))
    norm_2 = np.sqrt(np.einsum("ij,ij->i", vector2, vector2))
    cos = np.zeros((vector1.shape[0], vector2.shape[0]))
    sel_1, sel_2 = norm_1 > 0, norm_2 > 0
    cos[np.ix_(sel_1, sel_2)] = (vector1[sel_1] @ vector2[sel_2].T) / np.outer(
        norm_1[sel_1], norm_2[sel_2]
    )
    return cos


def _reference(v1, v2, method, sigma_k=None):
    """rsatoolbox's numbers; for a full sigma_k with its CG solve made exact."""
    with warnings.catch_warnings(), mock.patch.object(rsa_compare_module, "_cosine", _fixed_cosine):
        warnings.simplefilter("ignore")
        if sigma_k is not None and sigma_k.ndim == 2:
            with mock.patch.object(scipy.sparse.linalg, "cg", _exact_cg):
                return rsa_compare(RDMs(v1), RDMs(v2), method, sigma_k=sigma_k)
        return rsa_compare(RDMs(v1), RDMs(v2), method, sigma_k=sigma_k)


def test_rsatoolbox_zero_norm_bug_not_copied():
    # v1 against a constant vector and two others: rsatoolbox 0.3.2 swaps the two cosines
    v1 = np.array([[0.0, 1.0, 1.0, 1.0]])
    v2 = np.array([[1.0, 1.0, 1.0, 1.0], [0.2, 0.9, 0.4, 0.4], [0.1, 0.9, 0.3, 0.05]])
    c1 = v1[0] - v1.mean()
    by_hand = [0.0] + [
        float(c1 @ (v - v.mean())) / np.linalg.norm(c1) / np.linalg.norm(v - v.mean())
        for v in v2[1:]
    ]
    got = compare(v1, v2, "corr")
    np.testing.assert_allclose(got[0], by_hand, rtol=1e-12)
    np.testing.assert_allclose(_reference(v1, v2, "corr")[0], by_hand, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not np.allclose(rsa_compare(v1, v2, "corr")[0], by_hand)  # the upstream bug


@st.composite
def rdm_pairs(draw):
    n_cond = draw(st.integers(3, 9))
    k = n_cond * (n_cond - 1) // 2
    n1, n2 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    v1, v2 = rng.random((n1, k)), rng.random((n2, k))
    if draw(st.booleans()):  # ties, as categorical model RDMs have
        v1 = np.round(v1 * draw(st.integers(1, 4)))
        v2[0] = np.round(v2[0] * 2)
    if draw(st.booleans()) and k > 4:  # NaN entries at shared positions, as rsatoolbox needs
        pos = rng.choice(k, size=draw(st.integers(1, k - 3)), replace=False)
        v1[rng.integers(n1), pos] = np.nan
        v2[rng.integers(n2), pos] = np.nan
    return n_cond, v1, v2, rng


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rdm_pairs(), st.sampled_from(METHODS))
def test_matches_rsatoolbox(case, method):
    _, v1, v2, _ = case
    expected = _reference(v1, v2, method)
    got = compare(RDMs(v1), RDMs(v2), method)
    assert isinstance(got, np.ndarray) and got.shape == (len(v1), len(v2))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    # tensors in, tensors out: the same numbers from square RDMs
    sq1 = RDMs(v1).get_matrices()
    got_t = compare(torch.from_numpy(sq1), torch.from_numpy(v2), method)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float64
    np.testing.assert_allclose(got_t.numpy(), expected, rtol=RTOL, atol=ATOL)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rdm_pairs(), st.sampled_from(COV), st.sampled_from(["diag", "full"]))
def test_cov_methods_with_sigma_k_match_rsatoolbox(case, method, kind):
    n_cond, v1, v2, rng = case
    if kind == "diag":
        sigma_k = rng.random(n_cond) + 0.2
    else:
        x = rng.standard_normal((n_cond, 3 * n_cond))
        sigma_k = x @ x.T / (3 * n_cond) + 0.1 * np.eye(n_cond)
    expected = _reference(v1, v2, method, sigma_k)
    got = compare(RDMs(v1), RDMs(v2), method, sigma_k=sigma_k)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_full_sigma_k_close_to_rsatoolbox_unpatched():
    # rsatoolbox's own CG stops at a relative residual of 1e-5: close, not equal
    rng = np.random.default_rng(3)
    n = 8
    v1, v2 = rng.random((2, 28)), rng.random((3, 28))
    x = rng.standard_normal((n, 20))
    sigma_k = x @ x.T / 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = rsa_compare(RDMs(v1), RDMs(v2), "cosine_cov", sigma_k=sigma_k)
    got = compare(RDMs(v1), RDMs(v2), "cosine_cov", sigma_k)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_known_values_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    # cosine: 13 / 14; corr: 0.5; tau-a: (2 − 1) / 3; rho-a = spearman = 0.5 (no ties)
    assert compare(a, b, "cosine").item() == pytest.approx(13 / 14, rel=1e-12)
    assert compare(a, b, "corr").item() == pytest.approx(0.5, rel=1e-12)
    assert compare(a, b, "tau-a").item() == pytest.approx(1 / 3, rel=1e-12)
    assert compare(a, b, "rho-a").item() == pytest.approx(0.5, rel=1e-12)
    # tau-a with ties: pairs tied in either vector count as neither
    x = torch.tensor([0.0, 0.0, 1.0])
    y = torch.tensor([0.0, 1.0, 1.0])
    assert compare(x, y, "tau-a").item() == pytest.approx(1 / 3, rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_self_similarity_and_symmetry(method):
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((4, 36)))
    b = torch.from_numpy(rng.random((3, 36)))
    ab, ba = compare(a, b, method), compare(b, a, method)
    torch.testing.assert_close(ab, ba.T, rtol=1e-12, atol=1e-12)
    if method in ("cosine", "corr", "spearman", "tau-a", "cosine_cov", "corr_cov"):
        torch.testing.assert_close(
            torch.diagonal(compare(a, a, method)), torch.ones(4, dtype=torch.float64)
        )


def test_zero_and_constant_vectors_give_zero_like_rsatoolbox():
    v1 = np.vstack([np.zeros(10), np.full(10, 2.0), np.arange(10.0)])
    v2 = np.random.default_rng(1).random((2, 10))
    for method in ("cosine", "corr", "spearman", "rho-a", "tau-a"):
        np.testing.assert_allclose(
            compare(v1, v2, method), _reference(v1, v2, method), rtol=RTOL, atol=ATOL
        )


def test_float32_and_square_detection():
    rng = np.random.default_rng(2)
    sq = RDMs(rng.random((3, 15))).get_matrices()
    expected = _reference(RDMs(sq).get_vectors(), RDMs(sq).get_vectors(), "corr")
    sq32 = torch.tensor(sq, dtype=torch.float32)
    out = compare(sq32[0], sq32, "corr")
    assert out.dtype == torch.float32 and out.shape == (1, 3)
    np.testing.assert_allclose(out.numpy(), expected[:1], rtol=1e-5)
    # a 2-d tensor that is not a symmetric zero-diagonal square is a stack of vectors
    vecs = torch.from_numpy(rng.random((15, 15)))
    assert compare(vecs, vecs, "cosine").shape == (15, 15)
    assert compare(vecs, vecs[0], "cosine", square=False).shape == (15, 1)
    # rsatoolbox RDMs mixed with a tensor: tensor out
    mixed = compare(RDMs(vecs.numpy()), vecs, "corr")
    assert isinstance(mixed, torch.Tensor)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(METHODS))
def test_compare_vectors_batches_like_a_loop(seed, method):
    rng = np.random.default_rng(seed)
    a = torch.from_numpy(np.round(rng.random((5, 2, 21)) * 6))  # 5 bootstrap samples, ties
    b = torch.from_numpy(rng.random((1, 3, 21)))
    out = compare_vectors(a, b, method)
    assert out.shape == (5, 2, 3)
    for i in range(5):
        np.testing.assert_allclose(
            out[i].numpy(), _reference(a[i].numpy(), b[0].numpy(), method), rtol=RTOL, atol=ATOL
        )


def test_compare_vectors_valid_mask_equals_nan_path():
    rng = np.random.default_rng(4)
    v1, v2 = rng.random((2, 21)), rng.random((3, 21))
    nan_pos = [1, 7, 8]
    v1[0, nan_pos] = np.nan
    v2[2, nan_pos] = np.nan
    valid = np.ones(21, bool)
    valid[nan_pos] = False
    for method in METHODS:
        expected = _reference(v1, v2, method)
        got = compare_vectors(
            torch.from_numpy(v1[:, valid]),
            torch.from_numpy(v2[:, valid]),
            method,
            n_conditions=7,
            valid=torch.from_numpy(valid),
        )
        np.testing.assert_allclose(got.numpy(), expected, rtol=RTOL, atol=ATOL)


def test_rank_transform_matches_scipy():
    rng = np.random.default_rng(5)
    x = np.round(rng.random((3, 4, 50)) * 10)
    expected = scipy.stats.rankdata(x, axis=-1)
    np.testing.assert_array_equal(rank_transform(torch.from_numpy(x)).numpy(), expected)
    assert brainrdl.rsa.comparison.rank_transform is rank_transform
    with_nan = rank_transform(torch.tensor([3.0, float("nan"), 1.0]))
    assert with_nan[0].item() == 2.0 and with_nan[2].item() == 1.0 and torch.isnan(with_nan[1])


@pytest.mark.parametrize("ties", [False, True])
def test_tau_a_algorithms_agree_with_rsatoolbox(ties):
    rng = np.random.default_rng(6)
    k = 2_346  # 69 conditions: the Fenwick path for compare(), both checked here
    a, b = rng.random((3, k)), rng.random((2, k))
    if ties:
        a = np.round(a * 5)
        b[1] = np.round(b[1] * 3)
    expected = _reference(a, b, "tau-a")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(tau_a_gemm(ta, tb).numpy(), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(tau_a_fenwick(ta, tb).numpy(), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(compare(a, b, "tau-a"), expected, rtol=RTOL, atol=ATOL)


GRAD_CASES = [(m, None) for m in DIFFERENTIABLE_METHODS] + [
    (m, s) for m in COV for s in ("diag", "full")
]


@pytest.mark.parametrize(("method", "sigma"), GRAD_CASES)
def test_gradcheck(method, sigma):
    gen = torch.Generator().manual_seed(0)
    n = 4
    a = torch.rand(1, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.rand(2, n, n, dtype=torch.float64, generator=gen)
    b = (b + b.transpose(-1, -2)).requires_grad_(True)
    sigma_k = None
    if sigma == "diag":
        sigma_k = torch.rand(n, dtype=torch.float64, generator=gen) + 0.5
    elif sigma == "full":
        x = torch.randn(n, 12, dtype=torch.float64, generator=gen)
        sigma_k = x @ x.T / 12
    assert torch.autograd.gradcheck(lambda x, y: compare(x, y, method, sigma_k), (a, b))


def test_gradcheck_with_nan_positions():
    a = torch.rand(2, 10, dtype=torch.float64)
    a[0, 3] = float("nan")
    a.requires_grad_(True)
    b = torch.rand(2, 10, dtype=torch.float64)
    b[1, 3] = float("nan")
    for method in DIFFERENTIABLE_METHODS:
        out = compare(a, b, method)
        assert torch.isfinite(out).all()
        grad = torch.autograd.grad(out.sum(), a)[0]
        assert grad[0, 3] == 0 and torch.isfinite(grad).all()
    valid = torch.ones(10, dtype=torch.bool)
    valid[3] = False
    a_ok, b_ok = a.detach()[:, valid].requires_grad_(True), b[:, valid]
    assert torch.autograd.gradcheck(
        lambda x: compare_vectors(x, b_ok, "corr_cov", valid=valid), (a_ok,)
    )


def test_errors_name_the_argument():
    a, b = np.random.default_rng(0).random((2, 10)), np.random.default_rng(1).random((2, 15))
    with pytest.raises(ValueError, match=r"method='kendall'.*'tau-a'"):
        compare(a, a, "kendall")
    with pytest.raises(ValueError, match="rdm1 and rdm2 must have the same number of conditions"):
        compare(RDMs(a), RDMs(b))
    with pytest.raises(ValueError, match=r"rdm1 .*4-d"):
        compare(torch.zeros(1, 2, 5, 5), torch.zeros(5, 5))
    with pytest.raises(ValueError, match="rdm2 as a 3-d tensor must be square"):
        compare(torch.zeros(2, 10), torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"sigma_k must have shape \(5,\) or \(5, 5\)"):
        compare(RDMs(a), RDMs(a), "cosine_cov", sigma_k=np.ones(4))
    with pytest.raises(ValueError, match="sigma_k as variances"):
        compare(RDMs(a), RDMs(a), "corr_cov", sigma_k=-np.ones(5))
    c = a.copy()
    c[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN at different dissimilarities"):
        compare(RDMs(c), RDMs(a))
    with pytest.raises(TypeError, match="rdm1 must be rsatoolbox RDMs"):
        compare([1.0, 2.0], a)
    with pytest.raises(ValueError, match="a must have shape"):
        compare_vectors(torch.zeros(10), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="n_conditions=4 needs 6"):
        compare_vectors(torch.rand(1, 10), torch.rand(1, 10), "corr", n_conditions=4)
    with pytest.raises(ValueError, match="not n\\(n-1\\)/2"):
        compare_vectors(torch.rand(1, 11), torch.rand(1, 11), "cosine_cov")
    with pytest.raises(ValueError, match="valid must be"):
        compare_vectors(torch.rand(1, 9), torch.rand(1, 9), valid=torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError, match="do not broadcast"):
        compare_vectors(torch.rand(2, 1, 10), torch.rand(3, 1, 10))


def test_public_name_and_cuda(device):
    assert brainrdl.compare is compare
    a = torch.rand(4, 6, 6, dtype=torch.float64, device=device)
    a = a + a.transpose(-1, -2)
    b = torch.rand(3, 15, dtype=torch.float64, device=device)
    for method in METHODS:
        out = compare(a, b, method)
        assert out.device.type == device.type
        expected = _reference(compare_vectors_input(a), b.cpu().numpy(), method)
        np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=RTOL, atol=ATOL)


def compare_vectors_input(squares: torch.Tensor) -> np.ndarray:
    return brainrdl.upper_tri(squares).cpu().numpy()


# ------------------------------------------- fast paths (packed-key sort, closed forms)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sort_rows_and_ranks_with_merged_keys_ties_signs_and_zeros(dtype):
    from brainrdl.rsa.ranks import sort_rows

    rng = np.random.default_rng(7)
    # values 2**-45 apart share their truncated float64 keys (distinct values merged), plus
    # exact ties, negative values and both zeros (-0.0 == 0.0 must tie)
    near = 1.0 + rng.integers(0, 40, (3, 500)) * 2.0**-45
    signed = np.where(rng.random((3, 500)) < 0.2, -0.0, rng.standard_normal((3, 500)))
    signed[:, ::7] = 0.0
    tied = np.round(rng.random((3, 500)) * 4)
    for x in (near, signed, tied, rng.random((3, 500))):
        x = x.astype(dtype)
        order, starts = sort_rows(x)
        np.testing.assert_array_equal(np.take_along_axis(x, order, -1), np.sort(x, -1))
        ref_starts = np.ones(x.shape, bool)
        srt = np.sort(x, -1)
        ref_starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
        np.testing.assert_array_equal(ref_starts if starts is None else starts, ref_starts)
        np.testing.assert_array_equal(
            rank_transform(torch.from_numpy(x)).numpy(), scipy.stats.rankdata(x, axis=-1)
        )


def test_rank_methods_long_vectors_match_rsatoolbox():
    # 200 conditions: long vectors, where float64 key truncation merges some distinct values
    rng = np.random.default_rng(8)
    k = 200 * 199 // 2
    v1, v2 = rng.random((3, k)), rng.random((2, k))
    v1[1] = np.round(v1[1] * 7)  # a categorical model RDM
    for method in ("spearman", "rho-a", "tau-a"):
        np.testing.assert_allclose(
            compare(RDMs(v1), RDMs(v2), method), _reference(v1, v2, method), rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("method", COV)
def test_cov_closed_form_equals_whitened_vectors(method):
    from brainrdl.rsa.comparison import _cosine, _whiten

    rng = np.random.default_rng(9)
    n = 30
    k = n * (n - 1) // 2
    a = torch.from_numpy(rng.random((4, k)) * 3 + 5)  # a large mean: no cancellation
    b = torch.from_numpy(rng.random((3, k)))
    a[0] = 2.0  # a constant RDM: its whitened vector is ½·c·H, not zero
    expected = _reference(a.numpy(), b.numpy(), method)
    got = compare_vectors(a, b, method)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    if method == "cosine_cov":
        slow = _cosine(_whiten(a, None, n, None), _whiten(b, None, n, None))
        np.testing.assert_allclose(got.numpy(), slow.numpy(), rtol=1e-9, atol=1e-12)
    # float32 stays close too
    got32 = compare_vectors(a.float(), b.float(), method)
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_full_sigma_zero_vector_gives_nan_like_rsatoolbox():
    # rsatoolbox divides by the V-norm without a zero check: 0/0
    v1 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    v2 = np.array([[1.0, 1.0, 1.0]])
    sigma_k = np.eye(3) + 0.1
    expected = _reference(v1, v2, "corr_cov", sigma_k)
    got = compare(RDMs(v1), RDMs(v2), "corr_cov", sigma_k=sigma_k)
    assert np.isnan(expected).all() and np.isnan(got).all()


def test_tau_a_fenwick_batched_and_swapped_sides():
    rng = np.random.default_rng(10)
    k = 400
    a = torch.from_numpy(np.round(rng.random((2, 4, k)) * 9))  # ties on both sides
    b = torch.from_numpy(rng.random((1, 2, k)))
    b[0, 1] = torch.from_numpy(np.round(rng.random(k) * 3))
    for x, y in ((a, b), (b, a[:1])):  # more rows left, then more rows right
        out = tau_a_fenwick(x, y)
        gemm = tau_a_gemm(x, y)
        torch.testing.assert_close(out, gemm, rtol=1e-12, atol=1e-12)
        for t in range(out.shape[0]):
            xt = x[min(t, x.shape[0] - 1)].numpy()
            yt = y[min(t, y.shape[0] - 1)].numpy()
            np.testing.assert_allclose(
                out[t].numpy(), _reference(xt, yt, "tau-a"), rtol=RTOL, atol=ATOL
            )


def test_rank_methods_warn_when_a_gradient_is_expected():
    a = torch.rand(2, 10, dtype=torch.float64, requires_grad=True)
    b = torch.rand(3, 10, dtype=torch.float64)
    with pytest.warns(UserWarning, match="not differentiable"):
        out = compare(a, b, "spearman")
    assert not out.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # differentiable methods stay silent and keep the graph
        assert compare(a, b, "corr").requires_grad
        with torch.no_grad():
            compare(a, b, "tau-a")


def test_square_rdms_with_rounding_on_the_diagonal_are_read_as_squares():
    # 1 - corrcoef leaves ~1e-7 on the diagonal in float32: still one square RDM each, not a
    # stack of row vectors (which gave an (n, n) table before)
    g = torch.Generator().manual_seed(0)
    a = 1 - torch.corrcoef(torch.randn(7, 30, generator=g)).float()
    b = 1 - torch.corrcoef(torch.randn(7, 30, generator=g)).float()
    torch.diagonal(a).fill_(1e-7)
    torch.diagonal(b).fill_(-2e-7)
    out = compare(a, b, method="corr")
    assert out.shape == (1, 1)
    iu = torch.triu_indices(7, 7, 1)
    expected = np.corrcoef(a[iu[0], iu[1]].double(), b[iu[0], iu[1]].double())[0, 1]
    assert out.item() == pytest.approx(expected, rel=1e-5)
