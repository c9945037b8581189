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

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["rank_transform", "tau_a", "tau_a_fenwick", "tau_a_gemm"]

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
    x
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
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (ranks are taken along the last)")
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


def _rank_numpy(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """CPU ranks via NumPy's vectorised sort (several times faster than torch.sort on CPU)."""
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
    if torch.is_floating_point(x):
        out = out.masked_fill(torch.isnan(x.detach()), float("nan"))
    return out


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
    O((n1 + n2)·block²); time O(n1·n2·k²/2).

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
    out = (num / max(_pair_count(k), 1)).clamp(-1.0, 1.0)
    return out.reshape(*batch, a.shape[1], b.shape[1]).to(_float_dtype(a, b))


def _float_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype.is_floating_point else torch.float64


def _dense_ranks(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Stable sort order, 1-based dense ranks (intp) and the number of tied pairs of a vector."""
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    new = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    dense_sorted = np.cumsum(new, dtype=np.intp)
    ranks = np.empty_like(dense_sorted)
    ranks[order] = dense_sorted
    counts = np.bincount(dense_sorted).astype(np.int64)
    ties = int((counts * (counts - 1) // 2).sum())
    return order, ranks, ties


def tau_a_fenwick(
    a: torch.Tensor, b: torch.Tensor, n_threads: int | None = None
) -> torch.Tensor:
    """Kendall's tau-a by O(k log k) discordant-pair counts (exact; computed on the CPU).

    Each vector is sorted and ranked once. For a pair, the entries are laid out in the order of
    whichever vector has fewer ties, and scipy's compiled Fenwick-tree kernel counts discordant
    pairs (tie groups of the ordering vector are handled as blocks, so no per-pair sort is
    needed). Joint ties, needed only when both vectors have ties, are counted by one unique
    pass. Pairs run on ``n_threads`` threads (default: ``torch.get_num_threads()``); the
    kernel releases the GIL. The result returns to the inputs' device.

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
    a_np = a.detach().expand(*batch, n1, k).reshape(-1, n1, k).cpu().double().numpy()
    b_np = b.detach().expand(*batch, n2, k).reshape(-1, n2, k).cpu().double().numpy()
    n_batch = a_np.shape[0]
    # Sort and rank every distinct vector once (batch broadcasting may repeat them).
    prep_a = [[_dense_ranks(a_np[t, i]) for i in range(n1)] for t in range(n_batch)]
    prep_b = [[_dense_ranks(b_np[t, j]) for j in range(n2)] for t in range(n_batch)]
    tot = _pair_count(k)

    def one(t: int, i: int, j: int) -> float:
        order_x, rank_x, tie_x = prep_a[t][i]
        order_y, rank_y, tie_y = prep_b[t][j]
        # Lay the entries out along the vector with fewer ties (the Fenwick kernel needs its
        # first argument sorted; tie groups there are processed as blocks).
        if tie_y <= tie_x:
            first, second = rank_y[order_y], rank_x[order_y]
        else:
            first, second = rank_x[order_x], rank_y[order_x]
        dis = int(_kendall_dis(first, second))
        joint = 0
        if tie_x and tie_y:
            _, counts = np.unique(first.astype(np.int64) * (k + 1) + second, return_counts=True)
            joint = int((counts * (counts - 1) // 2).sum())
        return (tot - tie_x - tie_y + joint - 2 * dis) / tot if tot else float("nan")

    jobs = [(t, i, j) for t in range(n_batch) for i in range(n1) for j in range(n2)]
    workers = max(1, n_threads or torch.get_num_threads())
    if workers == 1 or len(jobs) < 4:
        values = [one(*job) for job in jobs]
    else:
        with ThreadPoolExecutor(workers) as pool:
            values = list(pool.map(lambda job: one(*job), jobs))
    out = torch.tensor(values, dtype=torch.float64).clamp(-1.0, 1.0)
    return out.reshape(*batch, n1, n2).to(device=a.device, dtype=_float_dtype(a, b))

