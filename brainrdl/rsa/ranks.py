"""Rank statistics on torch tensors: average ranks and Kendall's tau-a, batched and on device.

``rank_transform`` matches ``scipy.stats.rankdata`` (method ``"average"``). Kendall's tau-a is
computed exactly in one of two ways:

- :func:`tau_a_gemm`: the numerator Σ_{i<j} sign(x_i − x_j)·sign(y_i − y_j) of every pair of
  vectors as one matrix product of sign blocks, accumulated block by block (any device; O(k²)
  per pair, so the choice for short vectors or a GPU);
- :func:`tau_a_fenwick`: per pair an O(k log k) count of discordant pairs with a Fenwick tree
  (scipy's compiled ``_kendall_dis``, the kernel rsatoolbox uses), with the sort of each vector
  done once rather than once per pair, and pairs spread over threads (CPU, long vectors).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from brainrdl.errors import InvalidArgumentError, InvalidTypeError
from brainrdl.rsa._rank_kernel import HAS_NAN, LEFT
from brainrdl.rsa._rank_kernel import available as kernel_available
from brainrdl.rsa._rank_kernel import rank_rows as rank_rows_compiled

__all__ = [
    "centred_ranks",
    "centred_ranks_many",
    "rank_transform",
    "sort_rows",
    "tau_a",
    "tau_a_fenwick",
    "tau_a_gemm",
]

# Above this many entries per vector the O(k²) sign product loses to the O(k log k) count on CPU
# (measured on a 2-core machine; see docs/benchmarks-compare.md).
_GEMM_MAX_K_CPU = 300
_BLOCK = 256  # sign blocks of _BLOCK×_BLOCK entries: integer sums stay exact in float32


def rank_transform(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share their mean rank) along the last dimension.

    Same numbers as ``scipy.stats.rankdata(x, axis=-1)``; batched over leading dimensions, on
    ``x``'s device. NaN entries get NaN ranks (and do not displace the others: they sort last).
    Not differentiable (ranks are piecewise constant).

    Parameters
    ----------
    x : torch.Tensor
        Tensor of shape (..., k). Integer tensors are ranked as float64.

    Returns
    -------
    torch.Tensor
        Ranks with the shape of ``x`` and a floating dtype (``x``'s, or float64).

    Examples
    --------
    >>> import torch
    >>> rank_transform(torch.tensor([10.0, 30.0, 20.0, 20.0])).tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise InvalidArgumentError(
            "x must have at least one dimension (ranks are taken along the last)")
    dtype = x.dtype if torch.is_floating_point(x) else torch.float64
    k = x.shape[-1]
    if k == 0:
        return x.to(dtype)
    if x.device.type == "cpu":
        return _rank_numpy(x, dtype)
    values, order = torch.sort(x.detach(), dim=-1)
    pos = torch.arange(k, device=x.device).expand_as(values)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[..., 1:] = values[..., 1:] != values[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    # First and last sorted position of each element's tie group, by running max / min.
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    big = torch.full_like(pos, k)
    last = torch.where(ends, pos, big).flip(-1).cummin(dim=-1).values.flip(-1)
    avg = (first + last).to(dtype) * 0.5 + 1.0
    ranks = torch.empty_like(avg).scatter_(-1, order, avg)
    if torch.is_floating_point(x):
        ranks = ranks.masked_fill(torch.isnan(x), float("nan"))
    return ranks


def centred_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks minus their mean (k + 1)/2 along the last dimension (NaN-free input).

    What the rank correlations (``spearman``, ``rho-a``) need; on CPU the centring is folded
    into the ranking, saving a pass over the data.

    Examples
    --------
    >>> import torch
    >>> centred_ranks(torch.tensor([10.0, 30.0, 20.0, 20.0])).tolist()
    [-1.5, 1.5, 0.0, 0.0]
    """
    return centred_ranks_many([x])[0]


def centred_ranks_many(xs: list[torch.Tensor], *, with_norms: bool = False) -> list:
    """:func:`centred_ranks` of several tensors, the CPU ones ranked on one pool of threads.

    (One pool for both sides of a comparison: waking threads twice costs more than ranking
    70 RDMs of 92 conditions.) With ``with_norms=True`` each item is a pair (ranks, norms):
    the Euclidean norm of every row of centred ranks, which the CPU ranking gets for free.

    Examples
    --------
    >>> import torch
    >>> a, b = centred_ranks_many([torch.tensor([3.0, 1.0]), torch.tensor([[1.0, 2.0, 3.0]])])
    >>> a.tolist(), b.tolist()
    ([0.5, -0.5], [[-1.0, 0.0, 1.0]])
    >>> (_, norms), = centred_ranks_many([torch.tensor([[1.0, 2.0, 3.0]])], with_norms=True)
    >>> round(norms.item() ** 2, 6)
    2.0
    """
    out: list = [None] * len(xs)
    on_cpu = []
    for i, x in enumerate(xs):
        k = x.shape[-1] if x.ndim else 0  # a 0-d tensor: rank_transform names the error
        if x.device.type == "cpu" and k > 0:
            on_cpu.append(i)
        else:
            ranks = rank_transform(x) - (k + 1) * 0.5
            out[i] = (ranks, torch.linalg.vector_norm(ranks, dim=-1)) if with_norms else ranks
    for i, pair in zip(on_cpu, _rank_numpy_many([xs[i] for i in on_cpu], centred=True)):
        out[i] = pair if with_norms else pair[0]
    return out


def _rank_numpy(x: torch.Tensor, dtype: torch.dtype, centred: bool = False) -> torch.Tensor:
    """CPU ranks of one tensor (see :func:`_rank_numpy_many`)."""
    return _rank_numpy_many([x], centred, dtype)[0][0]


@dataclass
class _RankJob:
    """The rows of one tensor to rank on the CPU, and where their ranks go."""

    flat: np.ndarray  # (m, k) rows; C-contiguous float32/64 for the compiled path
    out: np.ndarray  # (m, k) float64 ranks minus offset
    sumsq: np.ndarray  # (m,) float64 sums of squared (ranks minus offset)
    offset: float
    compiled: bool
    has_nan: bool = False  # set by the workers: the tensor goes to the NaN path instead


def _rank_numpy_many(
    xs: list[torch.Tensor], centred: bool = False, dtype: torch.dtype | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """CPU (ranks, row norms of the ranks) of each tensor: a compiled bucket sort per row
    (numba), else one SIMD sort of packed (value, position) keys and one scatter; rows the
    bucket sort gives up on take the latter, tensors holding NaN :func:`_rank_numpy_nan`. The
    rows of all tensors share one pool of threads.
    """
    compiled = kernel_available()
    jobs = []
    for x in xs:
        arr = x.detach().numpy()
        k = arr.shape[-1]
        flat = arr.reshape(-1, k)
        use_kernel = compiled and flat.dtype in (np.float32, np.float64)
        if use_kernel:
            flat = np.ascontiguousarray(flat)
        offset = (k + 1) * 0.5 if centred else 0.0
        job = _RankJob(flat, np.empty(flat.shape), np.empty(flat.shape[0]), offset, use_kernel)
        # without the kernel, one reduction finds NaN (it propagates)
        if not use_kernel and flat.dtype.kind == "f":
            with np.errstate(invalid="ignore"):  # inf − inf is NaN too: the NaN path ranks it
                job.has_nan = bool(np.isnan(flat.sum()))
        jobs.append(job)

    def rank_rows(job: _RankJob, lo: int, hi: int) -> None:
        rows = np.arange(lo, hi)
        if job.compiled:
            status = rank_rows_compiled(
                job.flat[lo:hi], job.out[lo:hi], job.offset, sumsq=job.sumsq[lo:hi])
            if status is None:  # the kernel gave up (numba could not compile it): NaN check
                with np.errstate(invalid="ignore"):
                    status = np.where(np.isnan(job.flat[lo:hi].sum(axis=1)), HAS_NAN, LEFT)
            if (status == HAS_NAN).any():
                job.has_nan = True
                return
            rows = lo + np.flatnonzero(status == LEFT)
        if len(rows):
            ranks = _rank_rows_sorted(job.flat[rows], np.empty((len(rows), job.flat.shape[1])),
                                      job.offset)  # fmt: skip
            job.out[rows] = ranks
            job.sumsq[rows] = np.einsum("ij,ij->i", ranks, ranks)

    _threaded_jobs(
        rank_rows,
        [(job, *job.flat.shape) for job in jobs if not job.has_nan],
        min_entries=_MIN_THREAD_ENTRIES_COMPILED if compiled else _MIN_THREAD_ENTRIES,
    )
    results = []
    for x, job in zip(xs, jobs):
        to = dtype or (x.dtype if torch.is_floating_point(x) else torch.float64)
        if job.has_nan:
            ranks = _rank_numpy_nan(x, to) - job.offset
            results.append((ranks, torch.linalg.vector_norm(ranks, dim=-1)))
            continue
        ranks = torch.from_numpy(job.out.reshape(x.shape)).to(to)
        norms = torch.from_numpy(np.sqrt(job.sumsq).reshape(x.shape[:-1])).to(to)
        results.append((ranks, norms))
    return results


def _rank_rows_sorted(flat: np.ndarray, out: np.ndarray, offset: float) -> np.ndarray:
    """Average ranks minus ``offset`` of NaN-free rows into ``out`` by :func:`sort_rows`."""
    order, starts = sort_rows(flat)
    avg = _average_ranks(starts, flat.shape)
    _scatter_rows(out, order, avg - offset if offset else avg)
    return out


#: below this many entries per thread, thread start-up (~0.1 ms) costs more than it saves
#: (50,000 entries rank in ~0.3 ms: 70 RDMs of 92 conditions already run on 2 threads)
_MIN_THREAD_ENTRIES = 50_000
#: the same for the compiled ranks (~7 ns per entry; waking a pool thread costs ~0.1 ms):
#: compare() of 50 × 20 RDMs of 92 conditions (293k entries to rank) took 4.0 ms with one
#: ranking thread and 3.3 ms with two (alternating runs in one process, after gc.collect)
_MIN_THREAD_ENTRIES_COMPILED = 100_000


def _threaded_rows(fn, m: int, k: int, n_threads: int | None = None) -> None:
    """Run ``fn(lo, hi)`` over row blocks on ``n_threads`` threads (default: torch's count).

    NumPy's sort, take and fancy assignment release the GIL, so row blocks sort in parallel.
    """
    _threaded_jobs(lambda _, lo, hi: fn(lo, hi), [(None, m, k)], n_threads)


def _threaded_jobs(
    fn, jobs: list[tuple], n_threads: int | None = None, min_entries: int = _MIN_THREAD_ENTRIES
) -> None:
    """Run ``fn(job, lo, hi)`` over the rows of every ``(job, m, k)``, shared out to threads.

    The rows of all jobs are cut into ``n_threads`` runs of about equal entries; the calling
    thread takes the first run, a lasting pool (:func:`_worker_pool`) the others.
    """
    total = sum(m * k for _, m, k in jobs)
    if total == 0:
        return
    n_threads = n_threads or torch.get_num_threads()
    n_threads = max(1, min(n_threads, sum(m for _, m, _ in jobs), total // min_entries))
    share = total / n_threads
    runs: list[list[tuple]] = [[] for _ in range(n_threads)]
    done = 0
    for job, m, k in jobs:  # each row goes to the run its middle entry falls in
        owner = np.minimum((done + np.arange(m) * k + k / 2) // share, n_threads - 1)
        for run in np.unique(owner).astype(int):
            rows = np.flatnonzero(owner == run)
            runs[run].append((job, int(rows[0]), int(rows[-1]) + 1))
        done += m * k
    helpers = [run for run in runs[1:] if run]
    futures = [_worker_pool(n_threads - 1).submit(_run_pieces, fn, run) for run in helpers]
    errors = []
    try:
        _run_pieces(fn, runs[0])
    except BaseException as error:  # wait for the workers (they write into shared outputs)
        errors.append(error)
    for future in futures:
        error = future.exception()
        if error is not None:
            errors.append(error)
    if errors:
        raise errors[0]


def _run_pieces(fn, pieces: list[tuple]) -> None:
    for piece in pieces:
        fn(*piece)


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _worker_pool(size: int) -> ThreadPoolExecutor:
    """A lasting pool of at least ``size`` worker threads for this process.

    Kept between calls: starting a thread costs ~1 ms on a busy 2-core machine (the starter
    waits until the new thread runs), as long as ranking 70 RDMs of 92 conditions. Made anew
    after a fork (a forked child inherits the pool's state but not its threads).
    """
    global _POOL
    pid = os.getpid()
    if _POOL is None or _POOL[0] != pid or _POOL[1] < size:
        if _POOL is not None and _POOL[0] == pid:
            _POOL[2].shutdown(wait=False)
        _POOL = (pid, size, ThreadPoolExecutor(size, thread_name_prefix="brainrdl-ranks"))
    return _POOL[2]


def _rank_numpy_nan(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Ranks of inputs holding NaN (they sort last and get NaN ranks): argsort, run lengths."""
    arr = x.detach().numpy()
    order = np.argsort(arr, axis=-1)
    values = np.take_along_axis(arr, order, axis=-1)
    k = arr.shape[-1]
    pos = np.broadcast_to(np.arange(k), arr.shape)
    starts = np.ones(arr.shape, dtype=bool)
    starts[..., 1:] = values[..., 1:] != values[..., :-1]
    if starts.all():  # no ties (or NaN): the rank is the inverse permutation
        avg = (pos + 1).astype(np.float64)
    else:
        ends = np.ones_like(starts)
        ends[..., :-1] = starts[..., 1:]
        first = np.maximum.accumulate(np.where(starts, pos, 0), axis=-1)
        last = np.minimum.accumulate(np.where(ends, pos, k)[..., ::-1], axis=-1)[..., ::-1]
        avg = (first + last) * 0.5 + 1.0
    ranks = np.empty(arr.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, avg, axis=-1)
    out = torch.from_numpy(ranks).to(dtype)
    return out.masked_fill(torch.isnan(x.detach()), float("nan"))


def _argsort_rows(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(flat, axis=-1, kind="stable")
    values = np.take_along_axis(flat, order, axis=-1)
    starts = np.ones(flat.shape, dtype=bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    return order, starts


def sort_rows(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Ascending order of every row of a NaN-free (m, k) array, and where ties start.

    Returns ``order`` (m, k) intp (ties in index order) and ``starts`` (m, k) bool, True where
    the sorted value differs from the one before (and at 0), or None when no row has ties.

    How: the float64 bit pattern of each value (−0.0 made +0.0) with its lowest bits replaced
    by its position is one sort key; one SIMD ``np.sort`` of these keys gives the order
    (several times faster than ``argsort``). Non-negative finite values (dissimilarities) are
    sorted as float64 keys (the fastest SIMD sort here), others through the sign-flipped int64
    bit pattern. Keys that agree but for the truncated bits are ties or values within
    2**-(52 - log2 k) relative of each other: the values decide, and rows where truncation
    merged distinct values fall back to a stable argsort. float32 input converts exactly (its
    low mantissa bits are zero), so nothing is lost there. Integer input uses argsort.

    Examples
    --------
    >>> import numpy as np
    >>> order, starts = sort_rows(np.array([[0.5, -1.0, 0.5]]))
    >>> order.tolist(), starts.tolist()
    ([[1, 0, 2]], [[True, True, False]])
    """
    m, k = flat.shape
    if flat.dtype.kind != "f" or k == 0 or k > 2**31:
        return _argsort_rows(flat)
    nbits = max(1, int(k - 1).bit_length())
    low = (1 << nbits) - 1
    values = flat if flat.dtype == np.float64 else flat.astype(np.float64)
    keys = np.add(values, 0.0).view(np.int64)  # a fresh array; −0.0 → +0.0
    positive = bool(values.min() >= 0) and bool(np.isfinite(values.max()))
    if not positive:  # sign-flip: int64 order = float order
        keys ^= (keys >> 63) & 0x7FFFFFFFFFFFFFFF
    keys &= ~low
    keys |= np.arange(k, dtype=np.int64)
    # positive finite keys stay positive finite floats, ordered as their bit patterns
    (keys.view(np.float64) if positive else keys).sort(axis=-1)
    order = keys & low
    keys >>= nbits
    same = keys[:, 1:] == keys[:, :-1]
    if not same.any():
        return order, None
    starts = np.ones((m, k), dtype=bool)
    np.logical_not(same, out=starts[:, 1:])
    if flat.dtype.itemsize <= 4 and nbits <= 29:  # float32/16: the truncated bits were zero
        return order, starts
    rows, cols = np.nonzero(same)
    left = values[rows, order[rows, cols]]
    right = values[rows, order[rows, cols + 1]]
    if bool((left == right).all()):  # all true ties
        return order, starts
    _resolve_merged(values, order, starts, same)
    return order, starts


def _resolve_merged(
    values: np.ndarray, order: np.ndarray, starts: np.ndarray, same: np.ndarray
) -> None:
    """Sort, in place, the runs of equal truncated keys that hold distinct values.

    Such runs (values within 2**-(52 - log2 k) relative) are few and short: their entries
    are sorted by (run, value, position) with one lexsort and written back, and their tie
    starts recomputed from the values.
    """
    m, k = order.shape
    member = np.zeros((m, k), dtype=bool)
    member[:, 1:] |= same
    member[:, :-1] |= same
    rows, cols = np.nonzero(member)  # row-major: the entries of a run are consecutive
    run = np.cumsum(starts[rows, cols])
    pos = order[rows, cols]
    vals = values[rows, pos]
    # keep only runs that hold distinct values (pure tie runs are already right)
    differs = np.zeros(run[-1] + 1, dtype=bool)
    step = (run[1:] == run[:-1]) & (vals[1:] != vals[:-1])
    differs[run[1:][step]] = True
    keep = differs[run]
    rows, cols, run, pos, vals = rows[keep], cols[keep], run[keep], pos[keep], vals[keep]
    perm = np.lexsort((pos, vals, run))
    order[rows, cols] = pos[perm]
    sorted_vals = vals[perm]
    new = np.ones(len(perm), dtype=bool)
    new[1:] = (run[1:] != run[:-1]) | (sorted_vals[1:] != sorted_vals[:-1])
    starts[rows, cols] = new


def _average_ranks(starts: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """1-based average ranks in sorted order from the tie-start mask (m, k) (None: no ties)."""
    m, k = shape
    if starts is None or starts.all():
        return np.broadcast_to(np.arange(1.0, k + 1.0), (m, k))
    begin = np.flatnonzero(starts.ravel())
    length = np.diff(np.append(begin, m * k))
    avg = (begin % k) + (length - 1) * 0.5 + 1.0
    return np.repeat(avg, length).reshape(m, k)


def _scatter_rows(out: np.ndarray, order: np.ndarray, values: np.ndarray) -> None:
    """out[r, order[r, p]] = values[r, p] for every row (row by row: cache-friendly)."""
    for r in range(order.shape[0]):
        out[r, order[r]] = values[r]


def tau_a(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-a of every row of ``a`` (..., n1, k) with every row of ``b`` (..., n2, k).

    tau-a = (concordant − discordant) / (k(k−1)/2), ties counting as neither (as rsatoolbox's
    ``tau-a``). Picks :func:`tau_a_gemm` on CUDA or for short vectors, :func:`tau_a_fenwick`
    otherwise. Inputs must be NaN-free.

    Examples
    --------
    >>> import torch
    >>> round(tau_a(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 3.0, 2.0]])).item(), 6)
    0.333333
    """
    if a.device.type != "cpu" or a.shape[-1] <= _GEMM_MAX_K_CPU:
        return tau_a_gemm(a, b)
    return tau_a_fenwick(a, b)


def _pair_count(k: int) -> int:
    return k * (k - 1) // 2


def tau_a_gemm(a: torch.Tensor, b: torch.Tensor, block: int = _BLOCK) -> torch.Tensor:
    """Kendall's tau-a as a sum of sign-block matrix products (exact; any device).

    For entry blocks I ≤ J the signs sign(x_i − x_j), i ∈ I, j ∈ J, of all n1 + n2 vectors are
    formed once (±1/0 in float32, so each product is an exact integer sum) and one GEMM adds
    their inner products to the (n1, n2) numerator, kept in float64. Memory is
    O((n1 + n2)·block²); time O(n1·n2·k²/2). Vectors of fewer than 2 entries have no pairs:
    NaN, as in :func:`tau_a_fenwick`.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 2.0]])
    >>> round(tau_a_gemm(x, x).item(), 6)  # one tie among 6 pairs: 5/6
    0.833333
    """
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = a.detach().expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:])
    b = b.detach().expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:])
    k = a.shape[-1]
    num = torch.zeros(a.shape[0], a.shape[1], b.shape[1], dtype=torch.float64, device=a.device)
    starts = range(0, k, block)
    for i0 in starts:
        ai, bi = a[..., i0 : i0 + block, None], b[..., i0 : i0 + block, None]
        for j0 in starts:
            if j0 < i0:
                continue
            sa = torch.sign(ai - a[..., None, j0 : j0 + block]).flatten(-2).to(torch.float32)
            sb = torch.sign(bi - b[..., None, j0 : j0 + block]).flatten(-2).to(torch.float32)
            part = (sa @ sb.transpose(-1, -2)).to(torch.float64)
            # A diagonal block holds each unordered pair twice (signs are antisymmetric).
            num += part * 0.5 if j0 == i0 else part
    # exact integer counts with |num| <= pairs: no clamp needed; no pairs (k < 2) give 0/0 = NaN,
    # as in tau_a_fenwick and scipy.stats.kendalltau
    out = num / _pair_count(k)
    return out.reshape(*batch, a.shape[1], b.shape[1]).to(_float_dtype(a, b))


def _float_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype.is_floating_point else torch.float64


def _tie_prep(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: sort order (int32), dense ranks sorted (intp) and in place (int32), tied pairs."""
    m, k = flat.shape
    order, starts = sort_rows(flat)
    if starts is None:
        dense_sorted = np.tile(np.arange(1, k + 1, dtype=np.intp), (m, 1))  # writable
        dense = np.empty((m, k), dtype=np.int32)
        _scatter_rows(dense, order, dense_sorted)
        return order.astype(np.int32), dense_sorted, dense, np.zeros(m, dtype=np.int64)
    dense_sorted = np.cumsum(starts, axis=-1, dtype=np.intp)
    dense = np.empty((m, k), dtype=np.int32)
    _scatter_rows(dense, order, dense_sorted)
    begin = np.flatnonzero(starts.ravel())
    length = np.diff(np.append(begin, m * k)).astype(np.int64)
    ties = np.zeros(m, dtype=np.int64)
    np.add.at(ties, begin // k, length * (length - 1) // 2)
    return order.astype(np.int32), dense_sorted, dense, ties


def _tie_prep_threaded(flat: np.ndarray, n_threads: int | None) -> tuple:
    """:func:`_tie_prep` over row blocks on threads (the sorts release the GIL)."""
    m, k = flat.shape
    parts: dict[int, tuple] = {}

    def run(lo: int, hi: int) -> None:
        parts[lo] = _tie_prep(flat[lo:hi])

    _threaded_rows(run, m, k, n_threads)
    blocks = [parts[lo] for lo in sorted(parts)]
    if len(blocks) == 1:
        return blocks[0]
    return tuple(np.concatenate([b[i] for b in blocks]) for i in range(4))


def tau_a_fenwick(a: torch.Tensor, b: torch.Tensor, n_threads: int | None = None) -> torch.Tensor:
    """Kendall's tau-a by O(k log k) discordant-pair counts (exact; computed on the CPU).

    Each vector is sorted and densely ranked once (one packed-key sort for all of them). For
    every vector x of the smaller side, the dense ranks of all vectors y of the other side are
    laid out in x's order by one gather, and scipy's compiled Fenwick-tree kernel (the one
    rsatoolbox's tau-a uses) counts the discordant pairs of each (x, y); tie groups of x are
    handled as blocks by the kernel, ties of y are not counted as discordant. Joint ties,
    needed only when both vectors have ties, are counted by one unique pass. Vectors x run on
    ``n_threads`` threads (default: ``torch.get_num_threads()``); the kernel releases the GIL.
    The result returns to the inputs' device.

    Examples
    --------
    >>> import torch
    >>> round(tau_a_fenwick(torch.tensor([[1.0, 2.0, 3.0, 4.0]]),
    ...                     torch.tensor([[1.0, 2.0, 4.0, 3.0]])).item(), 6)
    0.666667
    """
    from scipy.stats._stats import _kendall_dis  # the kernel rsatoolbox's tau-a uses

    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    n1, n2, k = a.shape[-2], b.shape[-2], a.shape[-1]
    a_np = a.detach().cpu().double().numpy()
    b_np = b.detach().cpu().double().numpy()
    a_np = np.broadcast_to(a_np, (*batch, n1, k)).reshape(-1, n1, k)
    b_np = np.broadcast_to(b_np, (*batch, n2, k)).reshape(-1, n2, k)
    n_batch = a_np.shape[0]
    swap = n2 < n1  # loop over the side with fewer vectors; gather the other
    x_np, y_np = (b_np, a_np) if swap else (a_np, b_np)
    nx, ny = x_np.shape[1], y_np.shape[1]
    tot = _pair_count(k)
    out = np.empty((n_batch, nx, ny), dtype=np.float64)
    preps: dict[tuple[int, int], tuple] = {}

    def prep(side: np.ndarray, t: int, which: int) -> tuple:
        # broadcast batches repeat the same memory: prepare each distinct block once
        key = (which, side[t].__array_interface__["data"][0])
        if key not in preps:
            preps[key] = _tie_prep_threaded(np.ascontiguousarray(side[t]), n_threads)
        return preps[key]

    blocks = [(prep(x_np, t, 0), prep(y_np, t, 1)) for t in range(n_batch)]

    def run(t: int, i: int) -> None:
        (order_x, sorted_x, _, ties_x), (_, _, dense_y, ties_y) = blocks[t]
        first = sorted_x[i]
        second = np.take(dense_y, order_x[i], axis=1).astype(np.intp)
        for j in range(ny):
            dis = int(_kendall_dis(first, second[j]))
            joint = 0
            if ties_x[i] and ties_y[j]:
                _, counts = np.unique(first * (k + 1) + second[j], return_counts=True)
                joint = int((counts * (counts - 1) // 2).sum())
            num = tot - int(ties_x[i]) - int(ties_y[j]) + joint - 2 * dis
            out[t, i, j] = num / tot if tot else float("nan")

    jobs = [(t, i) for t in range(n_batch) for i in range(nx)]
    workers = max(1, min(n_threads or torch.get_num_threads(), len(jobs)))
    if workers == 1 or nx * ny < 4:
        for job in jobs:
            run(*job)
    else:
        list(_worker_pool(workers).map(lambda job: run(*job), jobs))  # the lasting pool
    res = torch.from_numpy(out)  # exact counts, |num| <= tot: within [-1, 1] as computed
    if swap:
        res = res.transpose(-1, -2)
    res = res.reshape(*batch, n1, n2)
    return res.to(device=a.device, dtype=_float_dtype(a, b))
