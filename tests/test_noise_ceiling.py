"""Noise ceilings equal rsatoolbox's boot_noise_ceiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs

from brainrdl.stats.ceilings import noise_ceiling, pool_vectors


def _brain(seed=0, n_rdm=6, k=66):
    rng = np.random.default_rng(seed)
    truth = rng.random(k)
    vectors = truth + rng.normal(0, 0.4, (n_rdm, k))
    subjects = np.repeat(["s1", "s2", "s3"], n_rdm // 3)
    return RDMs(vectors, rdm_descriptors={"subject": list(subjects)})


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a", "corr_cov"])
@pytest.mark.parametrize("descriptor", ["subject", "index"])
def test_equals_rsatoolbox(method, descriptor):
    rdms = _brain()
    expected = boot_noise_ceiling(rdms, method=method, rdm_descriptor=descriptor)
    got = noise_ceiling(rdms, method, descriptor)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nan_pairs_are_dropped_like_rsatoolbox():
    rdms = _brain(1)
    vectors = rdms.get_vectors()
    vectors[:, [3, 10]] = np.nan
    rdms = RDMs(vectors, rdm_descriptors=rdms.rdm_descriptors)
    for method in ("corr", "spearman"):
        expected = boot_noise_ceiling(rdms, method=method, rdm_descriptor="subject")
        np.testing.assert_allclose(noise_ceiling(rdms, method, "subject"), expected, rtol=1e-6)


def test_arrays_and_groups_and_single_group():
    rdms = _brain(2)
    groups = rdms.rdm_descriptors["subject"]
    expected = boot_noise_ceiling(rdms, method="corr", rdm_descriptor="subject")
    square = torch.as_tensor(rdms.get_matrices())
    np.testing.assert_allclose(noise_ceiling(square, "corr", groups=groups), expected, rtol=1e-6)
    one = RDMs(rdms.get_vectors(), rdm_descriptors={"g": [0] * 6})
    low, high = noise_ceiling(one, "corr", "g")
    np.testing.assert_allclose((low, high), boot_noise_ceiling(one, "corr", "g"), rtol=1e-6)
    assert low == high


def test_hand_computed_case():
    # three rank vectors; leave-one-out pools: [1.5, 2, 2.5] vs r1 -> 1, [1.5, 1.5, 3] vs r2 -> 0,
    # [1, 2.5, 2.5] vs r3 -> 0, so lower = 1/3; the pool of all ranks [1, 2, 3] gives 1, 1/2, 1/2
    v = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]])
    low, high = noise_ceiling(v, "spearman")
    assert low == pytest.approx(1 / 3)
    assert high == pytest.approx(2 / 3)


def test_pool_matches_rsatoolbox_pool_rdm():
    from rsatoolbox.util.inference_util import pool_rdm

    rdms = _brain(3)
    for method in ("cosine", "corr", "spearman"):
        expected = pool_rdm(rdms, method).get_vectors()
        got = pool_vectors(torch.as_tensor(rdms.get_vectors()), method).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_bad_input():
    rdms = _brain()
    with pytest.raises(KeyError, match="rdm_descriptor"):
        noise_ceiling(rdms, "corr", "session")
    with pytest.raises(ValueError, match="method"):
        noise_ceiling(rdms, "euclidean-ish")
    with pytest.raises(TypeError, match="rdms"):
        noise_ceiling("not rdms", "corr")
