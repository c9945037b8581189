"""Tensor RDMs (brainrdl.calc_rdm / pairwise_rdm on tensors): values, properties, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rsatoolbox.data import Dataset
from scipy.spatial.distance import cdist

from brainrdl import calc_rdm
from brainrdl.rsa.crossnobis import cross_fold_rdm, leave_one_out_means
from brainrdl.rsa.distances import pairwise_rdm, square_from_upper_tri, upper_tri

SETTINGS = settings(max_examples=25, deadline=None)
METHODS = ["euclidean", "correlation", "cosine", "mahalanobis", "poisson"]
RSA_METHODS = ["euclidean", "correlation", "mahalanobis", "poisson"]


def _patterns(seed: int, n: int, d: int, *, positive: bool = False, batch=()) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (*batch, n, d)
    if positive:
        return torch.rand(shape, generator=gen, dtype=torch.float64) * 3
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _precision(seed: int, d: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    a = torch.randn(d + 2, d, generator=gen, dtype=torch.float64)
    return torch.linalg.inv(a.T @ a / (d + 2) + 0.5 * torch.eye(d, dtype=torch.float64))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-7,
                 atol: float = 1e-7) -> None:
    # (torch.testing.assert_close costs ~5 s on its first call: it imports torch._dynamo)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    diff = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"max abs difference {diff:.3g}"


def _assert_rel(ours: np.ndarray, theirs: np.ndarray, rtol: float = 1e-6) -> None:
    scale = np.max(np.abs(theirs))
    err = np.abs(ours - theirs) / np.maximum(np.abs(theirs), max(1e-9 * scale, 1e-9))
    assert np.max(err) <= rtol, f"max relative difference {np.max(err):.3g}"


@pytest.mark.parametrize("method", RSA_METHODS)
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 12), d=st.integers(2, 30))
def test_tensor_matches_rsatoolbox(method, seed, n, d):
    x = _patterns(seed, n, d, positive=method == "poisson")
    noise = _precision(seed, d) if method == "mahalanobis" else None
    ours = calc_rdm(x, method, noise=noise, vector=True)
    theirs = rsatoolbox.rdm.calc_rdm(
        Dataset(x.numpy()), method, noise=None if noise is None else noise.numpy()
    ).dissimilarities[0]
    assert ours.dtype == torch.float64
    _assert_rel(ours.numpy(), theirs)


def test_cosine_matches_scipy():
    x = _patterns(0, 7, 9)
    _assert_rel(upper_tri(calc_rdm(x, "cosine")).numpy(),
                upper_tri(torch.from_numpy(cdist(x.numpy(), x.numpy(), "cosine"))).numpy())


def test_diagonal_precision_equals_diagonal_matrix():
    x, diag = _patterns(1, 6, 5), torch.rand(5, dtype=torch.float64) + 0.5
    assert_close(calc_rdm(x, "mahalanobis", noise=diag),
                               calc_rdm(x, "mahalanobis", noise=torch.diag(diag)))


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9), d=st.integers(2, 16))
def test_properties_symmetric_zero_diagonal_nonnegative(method, seed, n, d):
    x = _patterns(seed, n, d, positive=method == "poisson")
    noise = _precision(seed, d) if method == "mahalanobis" else None
    rdm = calc_rdm(x, method, noise=noise)
    assert rdm.shape == (n, n)
    assert_close(rdm, rdm.T, rtol=1e-12, atol=1e-12)
    assert torch.all(torch.diagonal(rdm) == 0)
    assert torch.all(rdm >= -1e-12)
    assert_close(square_from_upper_tri(upper_tri(rdm)), rdm)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100), shift=st.floats(-50, 50))
def test_correlation_invariant_to_affine_scaling_of_patterns(seed, scale, shift):
    x = _patterns(seed, 6, 12)
    gen = torch.Generator().manual_seed(seed)
    # each pattern scaled by its own positive factor and shifted by its own offset
    a = scale * (0.5 + torch.rand(6, 1, generator=gen, dtype=torch.float64))
    b = shift * torch.randn(6, 1, generator=gen, dtype=torch.float64)
    assert_close(calc_rdm(a * x + b, "correlation"), calc_rdm(x, "correlation"),
                               rtol=1e-9, atol=1e-9)


def test_euclidean_invariant_to_common_shift_in_float64():
    x = _patterns(2, 8, 40)
    assert_close(calc_rdm(x + 1e7, "euclidean"), calc_rdm(x, "euclidean"),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_loop_and_vector_form(method):
    x = _patterns(3, 5, 7, positive=method == "poisson", batch=(2, 3))
    noise = _precision(3, 7) if method == "mahalanobis" else None
    batched = calc_rdm(x, method, noise=noise)
    vec = calc_rdm(x, method, noise=noise, vector=True)
    assert batched.shape == (2, 3, 5, 5) and vec.shape == (2, 3, 10)
    for i in range(2):
        for j in range(3):
            single = calc_rdm(x[i, j], method, noise=noise)
            assert_close(batched[i, j], single, rtol=1e-12, atol=1e-12)
            assert_close(vec[i, j], upper_tri(single))


@pytest.mark.parametrize("method", METHODS)
def test_float32_stays_float32_and_close(method):
    x = _patterns(4, 6, 10, positive=method == "poisson")
    noise = _precision(4, 10) if method == "mahalanobis" else None
    r32 = calc_rdm(x.float(), method, noise=None if noise is None else noise.float())
    assert r32.dtype == torch.float32
    assert_close(r32.double(), calc_rdm(x, method, noise=noise),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(method):
    x = _patterns(5, 4, 5, positive=method == "poisson").requires_grad_(True)
    noise = _precision(5, 5) if method == "mahalanobis" else None
    assert torch.autograd.gradcheck(lambda t: calc_rdm(t, method, noise=noise, vector=True), (x,))


def test_gradcheck_mahalanobis_through_precision():
    x = _patterns(6, 4, 3)
    prec = _precision(6, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: calc_rdm(x, "mahalanobis", noise=p), (prec,))


def test_gradcheck_cross_fold_rdm():
    gen = torch.Generator().manual_seed(7)
    left = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    right = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cross_fold_rdm, (left, right))


def test_cross_fold_rdm_equals_explicit_fold_loop():
    gen = torch.Generator().manual_seed(8)
    left = torch.randn(5, 4, 6, generator=gen, dtype=torch.float64)
    right = torch.randn(5, 4, 6, generator=gen, dtype=torch.float64)
    expected = torch.zeros(5, 5, dtype=torch.float64)
    for f in range(4):
        k = left[:, f] @ right[:, f].T
        expected += torch.diag(k)[:, None] + torch.diag(k)[None, :] - k - k.T
    assert_close(cross_fold_rdm(left, right), expected / (4 * 6))


def test_leave_one_out_means_with_unequal_counts():
    sums = torch.tensor([[[2.0], [9.0], [4.0]]])  # counts 2, 3, 1
    train, test = leave_one_out_means(sums, torch.tensor([[2.0, 3.0, 1.0]]))
    assert_close(test[0, :, 0], torch.tensor([1.0, 3.0, 4.0]))
    assert_close(train[0, :, 0], torch.tensor([13 / 4, 6 / 3, 11 / 5]))


def test_device_placement(device):
    x = _patterns(9, 5, 6).to(device)
    out = calc_rdm(x, "correlation")
    assert out.device.type == device.type
    assert_close(out.cpu(), calc_rdm(x.cpu(), "correlation"))


# --------------------------------------------------------------------------- errors


def test_error_wrong_ndim():
    with pytest.raises(ValueError, match=r"data must have shape \(n_conditions, n_channels\)"):
        calc_rdm(torch.zeros(5))


def test_error_fewer_than_two_conditions():
    with pytest.raises(ValueError, match=r"data needs at least 2 conditions"):
        calc_rdm(torch.zeros(1, 5))


def test_error_nan_names_conditions_and_channels():
    x = torch.randn(4, 6)
    x[1, 2] = float("nan")
    x[3, 5] = float("inf")
    with pytest.raises(ValueError, match=r"data contains 2 NaN.*conditions.*\[1, 3\].*\[2, 5\]"):
        calc_rdm(x, "euclidean")


def test_error_constant_pattern_for_correlation():
    x = torch.randn(4, 6)
    x[2] = 3.0
    with pytest.raises(ValueError, match=r"data: correlation.*constant.*\[2\]"):
        calc_rdm(x, "correlation")


def test_error_noise_shape_and_misuse():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"noise must have shape \(D, D\) = \(6, 6\).*\(5, 5\)"):
        calc_rdm(x, "mahalanobis", noise=torch.eye(5))
    with pytest.raises(ValueError, match=r"noise is used by method='mahalanobis' only"):
        calc_rdm(x, "euclidean", noise=torch.eye(6))
    with pytest.raises(ValueError, match=r"descriptor and cv_descriptor apply to rsatoolbox"):
        calc_rdm(x, "euclidean", descriptor="stimulus")


def test_error_unknown_tensor_method():
    with pytest.raises(ValueError, match=r"method='crossnobis' is not supported.*'cosine'"):
        pairwise_rdm(torch.randn(3, 4), "crossnobis")


def test_error_poisson_needs_positive_rates():
    with pytest.raises(ValueError, match=r"data: poisson.*rates > 0"):
        calc_rdm(-torch.ones(3, 4), "poisson")


@pytest.mark.parametrize("method", METHODS)
def test_in_place_path_equals_autograd_path(method):
    # without autograd the RDM is finished in place; both paths must give the same numbers
    x = _patterns(10, 7, 9, positive=method == "poisson", batch=(2,))
    noise = _precision(10, 9) if method == "mahalanobis" else None
    with torch.no_grad():
        fast = calc_rdm(x, method, noise=noise)
    tracked = calc_rdm(x.clone().requires_grad_(True), method, noise=noise)
    assert tracked.requires_grad and not fast.requires_grad
    assert_close(fast, tracked.detach(), rtol=1e-13, atol=1e-13)


def test_cross_fold_rdm_in_place_path_equals_autograd_path():
    gen = torch.Generator().manual_seed(11)
    left = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    right = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    tracked = cross_fold_rdm(left.requires_grad_(True), right)
    with torch.no_grad():
        fast = cross_fold_rdm(left, right)
    assert_close(fast, tracked.detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", [2, 5, 2049])
def test_upper_tri_row_major_like_squareform(n):
    from scipy.spatial.distance import squareform

    a = torch.rand(n, n, dtype=torch.float64)
    sym = a + a.T
    sym.fill_diagonal_(0)
    assert torch.equal(upper_tri(sym), torch.from_numpy(squareform(sym.numpy(), checks=False)))
    batched = torch.stack([sym, 2 * sym])
    assert torch.equal(upper_tri(batched)[1], 2 * upper_tri(sym))


def _reference_rdm(x: torch.Tensor, method: str) -> torch.Tensor:
    # plain autograd formulation (centre the patterns, x @ x.T): the custom Gram backward must agree
    if method == "euclidean":
        xc = x - x.mean(dim=-2, keepdim=True)
        g = xc @ xc.transpose(-1, -2)
        d = torch.diagonal(g, dim1=-2, dim2=-1)
        return (d.unsqueeze(-1) + d.unsqueeze(-2) - 2 * g).clamp_min(0.0) / x.shape[-1]
    xc = x - x.mean(dim=-1, keepdim=True) if method == "correlation" else x
    xn = xc / torch.linalg.vector_norm(xc, dim=-1, keepdim=True)
    return 1.0 - xn @ xn.transpose(-1, -2)


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_symmetric_gram_backward_matches_plain_autograd(method, batch):
    x = (_patterns(12, 6, 11, batch=batch) + 3.0).requires_grad_(True)
    upstream = torch.randn((*batch, 6, 6), generator=torch.Generator().manual_seed(13),
                           dtype=torch.float64)
    off = ~torch.eye(6, dtype=torch.bool)  # the diagonal is zero by definition (no gradient)
    (grad,) = torch.autograd.grad((calc_rdm(x, method) * upstream).sum(), x)
    (ref,) = torch.autograd.grad((_reference_rdm(x, method) * upstream * off).sum(), x)
    assert_close(grad, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_gradgradcheck_tracked_methods(method):
    x = _patterns(14, 4, 5).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: calc_rdm(t, method, vector=True), (x,))


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_no_b_by_b_by_d_tensor_in_forward_or_backward(method):
    # every op result, forward and backward, stays at most (B, D): the Gram route, never (B, B, D)
    from torch.utils._python_dispatch import TorchDispatchMode

    b, d = 48, 300
    largest = []

    class Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    largest.append(t.numel())
            return out

    x = torch.randn(b, d, requires_grad=True)
    with Largest():
        calc_rdm(x, method).sum().backward()
    assert largest and max(largest) <= b * d


@pytest.mark.parametrize("scale", [1e-30, 1e-9, 1e10, 1e20, 1e30])
@pytest.mark.parametrize("method", ["correlation", "cosine"])
def test_scale_free_measures_are_exact_in_float32_at_any_scale(method, scale):
    # squares of 1e20 overflow float32 and those of 1e-30 underflow: rows are scaled first
    x = torch.randn(6, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = pairwise_rdm(x, method)
    got = pairwise_rdm((x * scale).float(), method)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), reference, atol=2e-6, rtol=1e-5)


def test_scale_free_gradient_is_unchanged_by_the_row_scaling():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    pairwise_rdm(x, "correlation").sum().backward()
    g1 = x.grad.clone()
    x2 = x.detach().clone().requires_grad_(True)
    xc = x2 - x2.mean(-1, keepdim=True)
    xn = xc / xc.norm(dim=-1, keepdim=True)
    (1 - xn @ xn.T).sum().backward()
    torch.testing.assert_close(g1, x2.grad)
