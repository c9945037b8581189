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
from scipy.stats import rankdata

from brainrdl.errors import DegenerateDataError
from brainrdl.rsa import comparison
from brainrdl.rsa.comparison import compare, compare_vectors
from brainrdl.rsa.ranks import sort_rows


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
