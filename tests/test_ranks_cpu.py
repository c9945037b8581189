"""CPU ranks: the compiled bucket sort (numba), its NumPy fallback and the thread pool agree with
scipy.stats.rankdata on every kind of row, whichever path a row takes."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
import scipy.stats
import torch

from brainrdl.rsa import _rank_kernel, ranks
from brainrdl.rsa._rank_kernel import HAS_NAN, LEFT, RANKED, rank_rows
from brainrdl.rsa.comparison import compare
from brainrdl.rsa.ranks import centred_ranks_many, rank_transform

needs_numba = pytest.mark.skipif(_rank_kernel._kernel() is None, reason="numba not installed")


def _rows(kind: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Four rows of one kind of data (each kind exercises one branch of the bucket sort)."""
    shape = (4, k)
    if kind == "uniform":
        return rng.random(shape)
    if kind == "ties":  # 20 distinct values: long tie groups in shared buckets
        return np.round(rng.random(shape) * 20)
    if kind == "binary":  # a categorical model RDM: two values
        return (rng.random(shape) > 0.7).astype(float)
    if kind == "constant":  # every entry tied (zero span)
        return np.full(shape, 3.5)
    if kind == "heavy_tail":  # crowds most entries into the first buckets: the fallback
        return np.exp(6 * rng.standard_normal(shape))
    if kind == "outlier":  # one huge value: the others share a bucket
        x = rng.random(shape)
        x[:, k // 2] = 1e300
        return x
    if kind == "signed_zeros":  # −0.0 and +0.0 tie; negative values
        x = rng.standard_normal(shape)
        x[:, ::7] = 0.0
        x[:, 1::7] = -0.0
        return x
    if kind == "subnormal_span":  # a span so small that the bucket scale overflows
        return 5e-324 * rng.integers(0, 3, shape).astype(float)
    if kind == "infinite_range":  # −1e308 and 1e308: the span overflows
        x = rng.standard_normal(shape)
        x[:, 0], x[:, -1] = -1e308, 1e308
        return x
    if kind == "with_inf":
        x = rng.random(shape)
        x[:, 0], x[:, -1] = np.inf, -np.inf
        return x
    if kind == "near_ties":  # distinct values closer than a bucket
        return 1.0 + rng.integers(0, 50, shape) * 2.0**-50
    raise ValueError(kind)


KINDS = [
    "uniform", "ties", "binary", "constant", "heavy_tail", "outlier", "signed_zeros",
    "subnormal_span", "infinite_range", "with_inf", "near_ties",
]  # fmt: skip


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Run a test with the numba kernel and again with the NumPy path alone."""
    if request.param == "compiled":
        if _rank_kernel._kernel() is None:
            pytest.skip("numba not installed")
    else:
        monkeypatch.setattr(_rank_kernel, "_kernel", lambda: None)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [2, 57, 4186, 40_000])  # 40,000: the two-level bucket sort
def test_ranks_equal_scipy_on_every_kind_of_row(path, kind, k):
    x = _rows(kind, k, np.random.default_rng(k))
    got = rank_transform(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, scipy.stats.rankdata(x, axis=-1))


@pytest.mark.parametrize("kind", ["uniform", "ties", "heavy_tail", "constant"])
def test_centred_ranks_and_their_norms(path, kind):
    """Centred ranks are rankdata − (k+1)/2; the norms are their row norms (ties included)."""
    x = _rows(kind, 4186, np.random.default_rng(1))
    for dtype in (torch.float64, torch.float32):
        (got, norms), = centred_ranks_many([torch.from_numpy(x).to(dtype)], with_norms=True)
        as_numpy = np.float32 if dtype == torch.float32 else np.float64
        want = scipy.stats.rankdata(x.astype(as_numpy), axis=-1) - (4186 + 1) / 2
        assert got.dtype == dtype and norms.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), want)
        np.testing.assert_allclose(norms.numpy(), np.linalg.norm(want, axis=-1), rtol=1e-6)


def test_centred_ranks_many_keeps_shapes_and_handles_nan_per_tensor(path):
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.random((2, 3, 45)))
    b = torch.from_numpy(rng.random(45))
    b[7] = float("nan")
    (ra, na), (rb, nb) = centred_ranks_many([a, b], with_norms=True)
    assert ra.shape == a.shape and na.shape == (2, 3) and rb.shape == b.shape and nb.shape == ()
    np.testing.assert_array_equal(ra.numpy(), scipy.stats.rankdata(a.numpy(), axis=-1) - 23)
    want_b = rank_transform(b) - 23  # NaN entries: NaN ranks, the others ranked without them
    np.testing.assert_array_equal(rb.numpy(), want_b.numpy())
    assert torch.isnan(nb)


@needs_numba
def test_kernel_status_says_which_rows_it_left():
    """Skewed and infinite-range rows are LEFT to the NumPy path, NaN rows marked HAS_NAN; the
    other rows are ranked in the same call."""
    rng = np.random.default_rng(3)
    x = np.stack([
        rng.random(5000),
        np.exp(8 * rng.standard_normal(5000)),  # heavy tail: over the insertion budget
        np.r_[-1e308, 1e308, rng.random(4998)],  # span overflows
        np.r_[np.nan, rng.random(4999)],
        5e-324 * rng.integers(0, 3, 5000),  # bucket scale overflows
    ])  # fmt: skip
    out = np.full_like(x, -1.0)
    sumsq = np.zeros(5)
    status = rank_rows(x, out, 2500.5, sumsq=sumsq)
    assert status.tolist() == [RANKED, LEFT, LEFT, HAS_NAN, LEFT]
    want = scipy.stats.rankdata(x[0]) - 2500.5
    np.testing.assert_array_equal(out[0], want)
    assert sumsq[0] == pytest.approx(np.sum(want**2), rel=1e-12)


@needs_numba
def test_kernel_writes_nothing_without_rows_or_entries():
    assert rank_rows(np.zeros((0, 5)), np.zeros((0, 5))).shape == (0,)
    assert rank_rows(np.zeros((3, 0)), np.zeros((3, 0))).tolist() == [RANKED] * 3


def test_rows_are_shared_out_to_threads_exactly_once():
    """_threaded_jobs: every row of every job is handed out once, whatever the thread count."""
    jobs = [("a", 5, 40_000), ("b", 1, 90_000), ("c", 7, 10_000), ("d", 0, 10)]
    for n_threads in (1, 2, 3, 8):
        seen: list[tuple] = []
        ranks._threaded_jobs(lambda job, lo, hi, seen=seen: seen.append((job, lo, hi)), jobs,
                             n_threads, min_entries=1)  # fmt: skip
        covered = {(job, row) for job, lo, hi in seen for row in range(lo, hi)}
        assert len(covered) == sum(hi - lo for _, lo, hi in seen) == 13
        assert covered == {(job, row) for job, m, _ in jobs for row in range(m)}


def test_a_failing_worker_raises_in_the_caller():
    def fail(job, lo, hi):
        if job == "bad":
            raise ValueError("worker failed")

    with pytest.raises(ValueError, match="worker failed"):
        ranks._threaded_jobs(fail, [("ok", 4, 100), ("bad", 4, 100)], 2, min_entries=1)


def _rank_in_child(queue) -> None:
    x = torch.from_numpy(np.random.default_rng(4).random((64, 4186)))
    queue.put(rank_transform(x).numpy()[:, :5].tolist())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_thread_pool_works_again_in_a_forked_child():
    """A forked child inherits the pool object but not its threads: it must make its own
    (else the ranks of a child, e.g. a DataLoader worker, would wait forever)."""
    x = torch.from_numpy(np.random.default_rng(4).random((64, 4186)))
    want = rank_transform(x).numpy()[:, :5].tolist()  # starts the parent's pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_rank_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, "the forked child did not finish ranking"
    assert queue.get(timeout=5) == want


@pytest.mark.parametrize("method", ["spearman", "rho-a"])
def test_rank_comparisons_agree_on_both_paths_with_ties_and_skew(method, monkeypatch):
    """compare() gives the same numbers through the kernel and through the NumPy path."""
    rng = np.random.default_rng(5)
    a = torch.from_numpy(np.concatenate([_rows("ties", 4186, rng), _rows("heavy_tail", 4186, rng)]))
    b = torch.from_numpy(np.concatenate([_rows("uniform", 4186, rng), _rows("binary", 4186, rng)]))
    first = compare(a, b, method)
    monkeypatch.setattr(_rank_kernel, "_kernel", lambda: None)
    np.testing.assert_allclose(compare(a, b, method).numpy(), first.numpy(), rtol=1e-12,
                               atol=1e-15)  # fmt: skip


def _break_kernel(monkeypatch, error: Exception) -> None:
    """Make every call of the compiled kernel raise ``error``."""

    def broken(*args):
        raise error

    monkeypatch.setattr(_rank_kernel, "_KERNEL", broken)
    monkeypatch.setattr(_rank_kernel, "_TRIED", True)


@needs_numba
def test_a_kernel_numba_cannot_compile_leaves_the_numpy_path_with_a_warning(monkeypatch):
    """A numba release that cannot compile the kernel: one RuntimeWarning, NumPy ranks."""
    from numba.core.errors import TypingError

    _break_kernel(monkeypatch, TypingError("cannot type this"))
    x = np.random.default_rng(6).random((3, 50))
    with pytest.warns(RuntimeWarning, match="could not compile its rank kernel"):
        got = rank_transform(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, scipy.stats.rankdata(x, axis=-1))
    assert _rank_kernel._kernel() is None  # NumPy from now on, without a second warning


@needs_numba
def test_other_errors_of_the_kernel_are_not_hidden(monkeypatch):
    _break_kernel(monkeypatch, MemoryError("out of memory"))
    with pytest.raises(MemoryError):
        rank_rows(np.ones((2, 5)), np.empty((2, 5)))


@needs_numba
def test_after_giving_up_the_kernel_nan_still_takes_the_nan_path(monkeypatch):
    from numba.core.errors import TypingError

    _break_kernel(monkeypatch, TypingError("cannot type this"))
    x = torch.tensor([[3.0, float("nan"), 1.0, 2.0]])
    with pytest.warns(RuntimeWarning, match="could not compile"):
        got = rank_transform(x)
    np.testing.assert_array_equal(got.numpy(), [[3.0, np.nan, 1.0, 2.0]])


def test_a_0d_tensor_gets_the_named_error():
    from brainrdl.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="at least one dimension"):
        centred_ranks_many([torch.tensor(1.0)])


@pytest.mark.parametrize("method", ["spearman", "rho-a"])
def test_an_all_tied_rdm_correlates_zero_with_every_other(path, method):
    """A constant RDM (every rank tied, norm 0) gives 0 against every RDM, as the cosine of a
    zero vector does in rsatoolbox; the other rows are untouched."""
    rng = np.random.default_rng(7)
    a = torch.from_numpy(np.vstack([np.full(4186, 0.5), rng.random((3, 4186))]))
    b = torch.from_numpy(rng.random((4, 4186)))
    got = compare(a, b, method).numpy()
    np.testing.assert_array_equal(got[0], np.zeros(4))
    want = compare(a[1:], b, method).numpy()
    np.testing.assert_allclose(got[1:], want, rtol=1e-12)
    if method == "spearman":
        ref = np.array([[scipy.stats.spearmanr(x, y)[0] for y in b.numpy()] for x in a[1:].numpy()])
        np.testing.assert_allclose(got[1:], ref, rtol=1e-10)
