"""Threaded row sorts of the rank transforms give the same numbers as scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from brainrdl.rsa.ranks import centred_ranks, rank_transform, tau_a_fenwick


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_threaded_ranks_equal_scipy(two_threads):
    rng = np.random.default_rng(0)
    x = rng.random((8, 60_000))  # 480,000 entries: 2 threads
    x[3, :5000] = 0.5  # ties in one block
    got = rank_transform(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, rankdata(x, axis=-1))
    np.testing.assert_allclose(centred_ranks(torch.tensor(x)).numpy(),
                               rankdata(x, axis=-1) - (x.shape[1] + 1) / 2)


def test_threaded_tau_prep_equals_unthreaded(two_threads):
    rng = np.random.default_rng(1)
    # 9 x 50,000 entries: the preparation (sorts) runs on 2 threads
    a = torch.tensor(rng.integers(0, 50, (9, 50_000)).astype(float))  # many ties
    b = torch.tensor(rng.random((2, 50_000)))
    threaded = tau_a_fenwick(a, b, n_threads=2)
    single = tau_a_fenwick(a, b, n_threads=1)
    np.testing.assert_array_equal(threaded.numpy(), single.numpy())


def test_threaded_ranks_of_short_rdm_vectors_equal_scipy(two_threads):
    rng = np.random.default_rng(2)
    x = rng.random((70, 92 * 91 // 2))  # 70 RDMs of 92 conditions: 2 threads
    x[5, :100] = 0.25
    np.testing.assert_array_equal(rank_transform(torch.tensor(x)).numpy(),
                                  rankdata(x, axis=-1))


@pytest.mark.parametrize("shape", [(20, 5000), (20, 3750), (1, 200_000), (100_000, 2)])
def test_threaded_ranks_of_tie_free_rows_in_any_block_layout_equal_scipy(two_threads, shape):
    """Rows without ties, split over two threads however the work falls: 100,000 entries in
    20 rows (two blocks), 75,000 (1.5 threads' worth: one block), one long row (one block:
    a row is never split), many short rows (two blocks). Each equals scipy's ranks."""
    x = np.random.default_rng(3).random(shape)
    got = rank_transform(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, rankdata(x, axis=-1))
    np.testing.assert_array_equal(centred_ranks(torch.tensor(x)).numpy(),
                                  rankdata(x, axis=-1) - (shape[1] + 1) / 2)


def test_threaded_ranks_of_many_short_rows_on_three_threads_equal_scipy():
    """200,000 rows of 2 entries on three threads (four threads' worth of work: capped at 3)."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        x = np.random.default_rng(4).random((200_000, 2))
        np.testing.assert_array_equal(rank_transform(torch.tensor(x)).numpy(),
                                      rankdata(x, axis=-1))
    finally:
        torch.set_num_threads(before)
