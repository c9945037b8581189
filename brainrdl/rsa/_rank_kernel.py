"""Compiled average ranks of rows: a bucket sort (numba), for Spearman and rho-a on the CPU.

Why a bucket sort: ranks need each row's order, and a comparison sort (NumPy's SIMD sort,
argsort) costs O(k log k) with memory passes that dominate on RDM vectors (k = n(n−1)/2 is
4,186 at 92 conditions and 499,500 at 1,000). Dissimilarities are spread over a bounded range,
so linear buckets between a row's minimum and maximum (2k of them) hold about half an entry
each: one counting pass, one scatter of (value, position) into bucket order and one insertion
sort that only moves entries inside a bucket give the exact order in O(k) — 3× faster than the
bare ``np.sort`` of the same rows (docs/benchmarks-compare.md).

Exactness: ``floor((x − min)·scale)`` is non-decreasing in x (correctly rounded operations are
monotone), so buckets never invert the order of two values, equal values share a bucket, and
the insertion sort compares the values themselves. Ties get their average rank.

Skewed rows (a heavy tail that crowds most entries into a few buckets, so the insertion sort
would go quadratic) stop once the sort has moved more than ``_SHIFT_BUDGET`` × k entries, as
do rows with an infinite range; such rows are reported back and ranked by the NumPy path of
:mod:`brainrdl.rsa.ranks` (same numbers, its own speed).

numba is optional at run time: without it :func:`rank_rows` returns None and the caller uses
the NumPy path. The first call in a process costs ~0.5 s (numba's import and its on-disk cache
next to this file), ~2 s per dtype where the cache cannot be written (compiled in memory).

Examples
--------
>>> import numpy as np
>>> x = np.array([[10.0, 30.0, 20.0, 20.0]])
>>> out = np.empty_like(x)
>>> status = rank_rows(x, out)
>>> status is None or (not status.any() and out.tolist() == [[1.0, 4.0, 2.5, 2.5]])
True
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["HAS_NAN", "LEFT", "RANKED", "available", "rank_rows"]

#: row status: ranked here, left to the NumPy path, or holding NaN (the caller's NaN path)
RANKED, LEFT, HAS_NAN = 0, 1, 2
#: give a row up (to the NumPy path) once its insertion sort moved more than this many entries
#: per entry: uniform-like rows move ~0.25 per entry, a heavy tail moves O(k) per entry
_SHIFT_BUDGET = 8
#: buckets per entry: ~half an entry per bucket (2 and 3 tie for speed at k = 4,186)
_BUCKETS_PER_ENTRY = 2
#: fine buckets per coarse bucket (a power of two): long rows are first split into coarse
#: buckets of ~2,000 entries, so that the fine scatter stays inside the CPU's caches
_FINE_PER_COARSE = 4096
#: up to this many fine buckets one level is faster (its scratch stays in the L2 cache)
_ONE_LEVEL_MAX = 65_536

_KERNEL: object | None = None
_TRIED = False
_fill_buckets = None  # the compiled _fill_buckets_py, set by _kernel()


def _fill_buckets_py(keys, vals, index, base, n, first, count, values, order, budget):
    """Scatter entries ``keys/vals/index[0:n]`` (fine bucket ``keys − first``) into bucket
    order at ``values/order[base:base+n]``, each insertion-sorted into its bucket as it lands.

    Unfilled slots hold −inf, and slots before ``base`` hold smaller values (earlier buckets),
    so "the slot before holds a larger value" means "same bucket, larger value". Returns the
    shift budget left (negative: gave up).
    """  # pragma: no cover - compiled by numba
    n_buckets = count.shape[0]
    count[:] = 0
    for j in range(n):
        count[keys[j] - first] += 1
    total = base
    for b in range(n_buckets):  # bucket starts
        c = count[b]
        count[b] = total
        total += c
    values[base : base + n] = -np.inf
    for j in range(n):
        b = keys[j] - first
        p = count[b]
        count[b] = p + 1
        v = vals[j]
        while p > 0 and values[p - 1] > v:
            values[p] = values[p - 1]
            order[p] = order[p - 1]
            p -= 1
            budget -= 1
        values[p] = v
        order[p] = index[j]
        if budget < 0:
            return budget
    return budget


def _rank_rows_py(x, out, sumsq, offset, status):  # pragma: no cover - compiled by numba
    """Average ranks minus ``offset`` of every row of ``x`` into ``out``, their sums of squares
    into ``sumsq``; ``status`` says per row: RANKED, LEFT (infinite range, or a skewed row
    over the insertion budget) or HAS_NAN."""
    m, k = x.shape
    nb = _BUCKETS_PER_ENTRY * k
    shift = 0  # coarse bucket = fine bucket >> shift (one coarse bucket for short rows)
    if nb > _ONE_LEVEL_MAX:
        while (1 << shift) < _FINE_PER_COARSE:
            shift += 1
    n_coarse = ((nb - 1) >> shift) + 1 if shift else 1
    fine = np.empty(1 << shift if shift else nb, dtype=np.int32)  # int32: half intp's traffic
    coarse = np.empty(n_coarse, dtype=np.int32)
    bucket = np.empty(k, dtype=np.int32)
    order = np.empty(k, dtype=np.int32)
    values = np.empty(k, dtype=x.dtype)
    identity = np.arange(k, dtype=np.int32)
    if n_coarse > 1:  # entries in coarse order: fine bucket, value, position
        bucket2 = np.empty(k, dtype=np.int32)
        values2 = np.empty(k, dtype=x.dtype)
        index2 = np.empty(k, dtype=np.int32)
    for r in range(m):
        status[r] = RANKED
        row = x[r]
        ranks = out[r]
        lo = row[0]
        hi = row[0]
        nan = False
        for i in range(k):  # this pass also brings the row into the cache for the next
            v = row[i]
            nan |= v != v
            lo = min(lo, v)
            hi = max(hi, v)
        if nan:
            status[r] = HAS_NAN
            continue
        span = hi - lo
        if span == 0.0:  # one value: all tied
            for i in range(k):
                ranks[i] = (k + 1) * 0.5 - offset
            sumsq[r] = k * ((k + 1) * 0.5 - offset) ** 2
            continue
        scale = nb / span
        if not (span < np.inf and scale < np.inf):  # infinite range, or a subnormal span
            status[r] = LEFT
            continue
        for i in range(k):
            bucket[i] = min(int((row[i] - lo) * scale), nb - 1)
        budget = _SHIFT_BUDGET * k
        if n_coarse == 1:
            budget = _fill_buckets(bucket, row, identity, 0, k, 0, fine, values, order, budget)
        else:
            coarse[:] = 0
            for i in range(k):
                coarse[bucket[i] >> shift] += 1
            total = 0
            for c in range(n_coarse):
                size = coarse[c]
                coarse[c] = total
                total += size
            for i in range(k):  # one write stream per coarse bucket: cache-friendly
                c = bucket[i] >> shift
                p = coarse[c]
                coarse[c] = p + 1
                bucket2[p] = bucket[i]
                values2[p] = row[i]
                index2[p] = i
            start = 0
            for c in range(n_coarse):  # coarse[c] is now the end of coarse bucket c
                end = coarse[c]
                if end > start:
                    budget = _fill_buckets(
                        bucket2[start:end], values2[start:end], index2[start:end], start,
                        end - start, c << shift, fine, values, order, budget,
                    )
                    if budget < 0:
                        break
                start = end
        if budget < 0:
            status[r] = LEFT
            continue
        squares = 0.0  # exact while below 2**53 (half-integer ranks: quarter-integer squares)
        for p in range(k):
            rank = p + 1.0 - offset
            ranks[order[p]] = rank
            squares += rank * rank
        tied = False
        for p in range(1, k):
            tied |= values[p] == values[p - 1]
        if tied:  # overwrite each tie group with its average rank
            p = 0
            while p < k:
                q = p + 1
                while q < k and values[q] == values[p]:
                    q += 1
                if q - p > 1:
                    avg = (p + q + 1) * 0.5 - offset
                    for t in range(p, q):
                        ranks[order[t]] = avg
                        squares += avg * avg - (t + 1.0 - offset) ** 2
                p = q
        sumsq[r] = squares


def _kernel():
    """The compiled kernel, or None without numba (compiled once, cached on disk if possible)."""
    global _KERNEL, _TRIED, _fill_buckets
    if not _TRIED:
        _TRIED = True
        try:
            import numba
        except ImportError:  # optional: the NumPy path gives the same numbers
            return None
        try:
            _fill_buckets = numba.njit(nogil=True, cache=True, inline="always")(_fill_buckets_py)
            _KERNEL = numba.njit(nogil=True, cache=True)(_rank_rows_py)
        except RuntimeError:  # no writable cache directory: compile per process
            _fill_buckets = numba.njit(nogil=True, inline="always")(_fill_buckets_py)
            _KERNEL = numba.njit(nogil=True)(_rank_rows_py)
    return _KERNEL


def available() -> bool:
    """Whether the compiled kernel can run in this process (numba importable, not given up).

    Examples
    --------
    >>> isinstance(available(), bool)
    True
    """
    return _kernel() is not None


def rank_rows(
    x: np.ndarray, out: np.ndarray, offset: float = 0.0, *, sumsq: np.ndarray | None = None
) -> np.ndarray | None:
    """Average ranks (1-based) minus ``offset`` of each row of ``x`` (m, k), written to ``out``.

    Parameters
    ----------
    x : np.ndarray
        C-contiguous float32 or float64 rows.
    out : np.ndarray
        C-contiguous float64 (m, k), written for every row ranked.
    offset : float
        Subtracted from every rank ((k + 1)/2 gives centred ranks).
    sumsq : np.ndarray, optional
        Float64 (m,) that receives each ranked row's sum of squared (offset) ranks.

    Returns
    -------
    np.ndarray or None
        int8 (m,) status per row: ``RANKED``, ``LEFT`` (infinite range, or too skewed for the
        bucket sort: rank it another way) or ``HAS_NAN``; None when numba is not available
        (nothing was written).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.5, -1.0, 0.5]])
    >>> out = np.empty_like(x)
    >>> status = rank_rows(x, out, offset=2.0)
    >>> status is None or out.tolist() == [[0.5, -1.0, 0.5]]
    True
    """
    kernel = _kernel()
    if kernel is None:
        return None
    m, k = x.shape
    status = np.full(m, RANKED, dtype=np.int8)
    if k * _BUCKETS_PER_ENTRY >= 2**31:  # past int32 scratch: the NumPy path
        status[:] = LEFT
    elif m and k:
        try:
            kernel(x, out, np.empty(m) if sumsq is None else sumsq, float(offset), status)
        except Exception as error:  # a numba release that cannot compile it: NumPy from now on
            if type(error).__module__.split(".")[0] != "numba":
                raise
            _give_up(error)
            return None
    return status


def _give_up(error: Exception) -> None:
    """Use the NumPy path for the rest of the process, and say why once."""
    global _KERNEL
    _KERNEL = None
    warnings.warn(
        f"brainrdl could not compile its rank kernel with numba ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}); ranks use the NumPy path (same "
        "numbers, slower)",
        RuntimeWarning,
        stacklevel=3,
    )
