"""Linear CKA (plain and debiased) against a literal NumPy reference (Kornblith et al. 2019)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import brainrdl
from brainrdl.stats.cka import cka, cka_from_grams


# --- the reference: Kornblith's gram-based CKA, written out in NumPy -------------------------
def _center_gram(gram: np.ndarray, unbiased: bool) -> np.ndarray:
    gram = gram.copy()
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def _reference_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    gx = _center_gram(x @ x.T, debiased)
    gy = _center_gram(y @ y.T, debiased)
    return float(gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(30, 5, 7), (12, 200, 40), (50, 3, 300)])
def test_cka_equals_numpy_reference(debiased, shape):
    n, p, q = shape
    rng = np.random.default_rng(n + p + q)
    x = rng.standard_normal((n, p)) + 3.0
    y = x[:, :1] @ rng.standard_normal((1, q)) + rng.standard_normal((n, q))
    ref = _reference_cka(x, y, debiased)
    got = float(cka(torch.tensor(x), torch.tensor(y), debiased=debiased))
    assert got == pytest.approx(ref, abs=1e-6)
    gram = float(cka_from_grams(torch.tensor(x @ x.T), torch.tensor(y @ y.T), debiased))
    assert gram == pytest.approx(ref, abs=1e-6)


def test_cka_batched_and_top_level():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 6, generator=g, dtype=torch.float64)
    y = torch.randn(20, 4, generator=g, dtype=torch.float64)
    out = brainrdl.cka(x, y, debiased=True)
    assert out.shape == (3,)
    for i in range(3):
        ref = _reference_cka(x[i].numpy(), y.numpy(), True)
        assert float(out[i]) == pytest.approx(ref, abs=1e-6)


def test_cka_float32_and_gradient():
    x = torch.randn(25, 6, requires_grad=True)
    y = torch.randn(25, 9)
    out = cka(x, y)
    out.backward()
    assert out.dtype == torch.float32 and x.grad is not None
    assert float(out.detach()) == pytest.approx(_reference_cka(x.detach().double().numpy(),
                                                      y.double().numpy(), False), abs=1e-5)


def test_cka_errors():
    with pytest.raises(ValueError, match="same stimuli"):
        cka(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="at least 4"):
        cka(torch.randn(3, 2), torch.randn(3, 2), debiased=True)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        cka(np.ones((5, 2)), torch.randn(5, 2))
