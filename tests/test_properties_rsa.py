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
