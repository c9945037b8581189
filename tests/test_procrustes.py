"""Angular Procrustes distance against a hand computation with scipy's orthogonal_procrustes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from brainrdl.stats.procrustes import partial_whiten, procrustes_distance, procrustes_similarity


def _hand_angular(x: np.ndarray, y: np.ndarray) -> float:
    """Centre, unit-normalise, zero-pad to equal width, rotate y onto x, take the angle."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    r, _ = orthogonal_procrustes(y, x)  # argmin ||y r - x||_F over orthogonal r
    return float(np.arccos(np.clip(np.sum(x * (y @ r)), -1.0, 1.0)))


@pytest.mark.parametrize("shape", [(12, 3, 3), (10, 2, 5), (8, 20, 4)])
def test_procrustes_matches_hand_reference(shape):
    n, p, q = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, p))
    y = rng.standard_normal((n, q)) + 0.5 * np.pad(x, ((0, 0), (0, max(0, q - p))))[:, :q]
    got = float(procrustes_distance(torch.tensor(x), torch.tensor(y)))
    assert got == pytest.approx(_hand_angular(x, y), abs=1e-8)
    # symmetric
    assert float(procrustes_distance(torch.tensor(y), torch.tensor(x))) == pytest.approx(got)


def test_procrustes_invariances_and_triangle():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(15, 4, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    assert float(procrustes_distance(x, 2.5 * x @ q - 3.0)) == pytest.approx(0.0, abs=1e-6)
    y = torch.randn(15, 4, generator=g, dtype=torch.float64)
    z = torch.randn(15, 6, generator=g, dtype=torch.float64)
    dxy, dyz, dxz = (float(procrustes_distance(a, b)) for a, b in ((x, y), (y, z), (x, z)))
    assert 0 < dxy <= math.pi / 2 and dxz <= dxy + dyz + 1e-12


def test_full_whitening_is_mean_canonical_correlation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 3))
    y = x @ rng.standard_normal((3, 3)) + rng.standard_normal((40, 3))
    xc, yc = x - x.mean(0), y - y.mean(0)
    # canonical correlations: singular values of Qx^T Qy (orthonormal bases)
    qx, _ = np.linalg.qr(xc)
    qy, _ = np.linalg.qr(yc)
    cc = np.linalg.svd(qx.T @ qy, compute_uv=False)
    got = float(procrustes_similarity(torch.tensor(x), torch.tensor(y), alpha=0.0))
    assert got == pytest.approx(cc.mean(), abs=1e-6)


def test_wide_patterns_use_gram_factor_same_result():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 50))
    y = rng.standard_normal((6, 70))
    got = float(procrustes_distance(torch.tensor(x), torch.tensor(y)))
    assert got == pytest.approx(_hand_angular(x, y), abs=1e-8)


def test_procrustes_errors():
    with pytest.raises(ValueError, match="stimulus-matched"):
        procrustes_distance(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="alpha"):
        partial_whiten(torch.randn(5, 2), alpha=2.0)
