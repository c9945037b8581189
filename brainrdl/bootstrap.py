"""Vectorised bootstrap of RDM comparisons over stimuli, subjects or both, on any device.

rsatoolbox draws one resample at a time, subsamples every RDM (duplicating rows and columns, with
the pairs of a stimulus with its own copy set to NaN and dropped) and compares the expanded vectors.
The expanded vector holds each original pair (p, q) exactly ``c_p * c_q`` times, where ``c`` counts
how often each stimulus was drawn, and never a pair of a stimulus with itself. So every statistic of
the expanded vectors is a *weighted* statistic of the original upper-triangle vectors with pair
weights ``w_pq = c_p c_q``: a resample is a weight row, a chunk of resamples is a (B, K) weight
matrix, and the comparison of all layers with all brain RDMs for the whole chunk is one batched
matrix product. Ranks (spearman, rho-a) of the expanded vectors are weighted ranks: one argsort per
vector up front, then a cumulative sum of the sorted weights per resample.

Examples
--------
>>> import torch
>>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]])
>>> w = torch.ones(1, 6, dtype=torch.float64)
>>> round(weighted_compare(x, x, w, "corr").item(), 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from brainrdl._validation import check_choice

#: comparison methods computed here as weighted statistics (others fall back to a loop)
FAST_METHODS = ("cosine", "corr", "spearman", "rho-a")
BOOTSTRAP_KINDS = ("stimuli", "subjects", "both")


def pair_weights(counts: torch.Tensor) -> torch.Tensor:
    """Weights ``c_p c_q`` of the upper-triangle pairs (p < q) for stimulus draw counts ``c``.

    Parameters
    ----------
    counts
        (B, n) number of times each of n stimuli was drawn in each of B resamples.

    Returns
    -------
    torch.Tensor
        (B, n (n - 1) / 2) weights in the row-major upper-triangle order of ``squareform``.

    Examples
    --------
    >>> import torch
    >>> pair_weights(torch.tensor([[2.0, 1.0, 0.0]])).tolist()
    [[2.0, 0.0, 0.0]]
    """
    n = counts.shape[-1]
    iu, ju = torch.triu_indices(n, n, offset=1, device=counts.device)
    return counts[..., iu] * counts[..., ju]


def rank_layout(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-vector sort order, inverse order and tie-group bounds, computed once per bootstrap.

    Returns ``(order, inverse, bounds)``: ``bounds`` (V, 2, K) holds, for each position in sorted
    order, the sorted positions of the first and last entry of its tie group.

    Examples
    --------
    >>> import torch
    >>> order, inverse, bounds = rank_layout(torch.tensor([[2.0, 1.0, 2.0]]))
    >>> bounds[0].tolist()
    [[0, 1, 1], [0, 2, 2]]
    """
    order = torch.argsort(v, dim=-1, stable=True)
    inverse = torch.argsort(order, dim=-1)
    vs = torch.gather(v, -1, order)
    k = v.shape[-1]
    pos = torch.arange(k, device=v.device).expand_as(vs)
    new = torch.ones_like(vs, dtype=torch.bool)
    new[:, 1:] = vs[:, 1:] != vs[:, :-1]  # NaNs (weight 0) each open a group: harmless
    start = torch.where(new, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]
    flipped = torch.where(last, pos, torch.full_like(pos, k)).flip(-1)
    end = flipped.cummin(dim=-1).values.flip(-1)
    return order, inverse, torch.stack([start, end], dim=1)


def weighted_ranks(
    v: torch.Tensor,
    w: torch.Tensor,
    layout: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Average ranks each entry of ``v`` would get in the vector expanded by integer weights ``w``.

    Parameters
    ----------
    v
        (V, K) vectors (NaN allowed where ``w`` is 0).
    w
        (B, K) weights (repeat counts); entries with weight 0 are absent from the expanded vector.
    layout
        Optional precomputed :func:`rank_layout` of ``v`` (reused across chunks of resamples).

    Returns
    -------
    torch.Tensor
        (B, V, K) ranks (tie-averaged, as ``scipy.stats.rankdata``); meaningless where ``w == 0``.

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    >>> weighted_ranks(v, torch.tensor([[1.0, 2.0, 1.0]], dtype=torch.float64)).tolist()
    [[[4.0, 1.5, 3.0]]]
    """
    zero = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return _centred_ranks(v, w, layout, shift=zero)


def _centred_ranks(v, w, layout, shift: torch.Tensor) -> torch.Tensor:
    """Weighted ranks minus ``shift`` (B,), with as few passes over (B, V, K) as possible."""
    order, inverse, bounds = layout if layout is not None else rank_layout(v)
    out_dtype = w.dtype
    if float(w.sum(-1).max()) < 2**22 and bool((w == w.round()).all()):
        # integer weights: ranks are half-integers below 2**23, exact in float32 at half the
        # memory traffic of float64 (the passes over (B, V, K) dominate the rank methods)
        w, shift = w.float(), shift.float()
    ws = w[:, order]  # (B, V, K): weights in each vector's sorted order
    cum = torch.cumsum(ws, dim=-1)
    ties = (bounds[:, 0] != bounds[:, 1]).any(-1)  # (V,) vectors that have tied entries
    tied = None
    if bool(ties.any()):
        t = torch.nonzero(ties).flatten()
        b = bounds[t].expand(w.shape[0], -1, -1, -1)  # (B, T, 2, K)
        c, wt = cum[:, t], ws[:, t]
        # average rank of a tie group = (weight before the group + weight through its end + 1) / 2
        before = torch.gather(c, -1, b[:, :, 0]) - torch.gather(wt, -1, b[:, :, 0])
        tied = (t, (before + torch.gather(c, -1, b[:, :, 1]) + 1.0) / 2.0)
    # no ties: rank = weight before + (own weight + 1) / 2 = cum - w / 2 + 1 / 2 (in place)
    ranks = cum.add_(ws, alpha=-0.5)
    del ws
    if tied is not None:
        ranks[:, tied[0]] = tied[1]
    ranks.add_((0.5 - shift)[:, None, None] if tied is None else -shift[:, None, None])
    if tied is not None:
        ranks[:, ~ties] += 0.5
    return torch.gather(ranks, -1, inverse.expand(w.shape[0], -1, -1)).to(out_dtype)


class _Kernel:
    """Comparison of fixed x (L, K) and y (S, K) under many weight rows, with setup done once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, method: str, memory_budget: float = 2e8):
        check_choice("method", method, FAST_METHODS)
        self.method = method
        x = torch.nan_to_num(x, nan=0.0)
        y = torch.nan_to_num(y, nan=0.0)
        if method in ("cosine", "corr"):
            if method == "corr":
                # shift-invariant: centring by the unweighted mean avoids cancellation later
                x = x - x.mean(-1, keepdim=True)
                y = y - y.mean(-1, keepdim=True)
            self.x, self.y = x, y
            # Σ_k w_k x_lk y_sk for all (l, s) is w @ (x_l * y_s)ᵀ: one GEMM per chunk
            n_l = max(1, int(memory_budget // (8 * y.shape[0] * x.shape[1])))
            self.products = [
                (x[i : i + n_l, None, :] * y[None]).reshape(-1, x.shape[1])
                for i in range(0, x.shape[0], n_l)
            ]
            self.x2, self.y2 = x * x, y * y
        else:
            self.x, self.y = x, y
            self.layout = rank_layout(torch.cat([x, y]))
            bounds = self.layout[2]
            self.ties = (bounds[:, 0] != bounds[:, 1]).any(-1)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        n_l, n_s = self.x.shape[0], self.y.shape[0]
        total = w.sum(-1)  # (B,) length of the expanded vectors
        if self.method in ("cosine", "corr"):
            sxy = torch.cat([w @ p.T for p in self.products], dim=1).reshape(-1, n_l, n_s)
            sxx = w @ self.x2.T  # (B, L)
            syy = w @ self.y2.T  # (B, S)
            if self.method == "corr":
                mx = (w @ self.x.T) / total[:, None]
                my = (w @ self.y.T) / total[:, None]
                sxy = sxy - total[:, None, None] * mx[:, :, None] * my[:, None, :]
                sxx = sxx - total[:, None] * mx * mx
                syy = syy - total[:, None] * my * my
            return sxy / torch.sqrt(sxx[:, :, None] * syy[:, None, :])
        # rank methods: ranks once per resample and vector, then a weighted Pearson / rho-a
        v = torch.cat([self.x, self.y])
        ranks = _centred_ranks(v, w, self.layout, shift=(total + 1.0) / 2.0)  # mean rank (N+1)/2
        rx, ry = ranks[:, :n_l], ranks[:, n_l:]
        wx = rx * w[:, None, :]
        sxy = torch.bmm(wx, ry.transpose(1, 2))  # (B, L, S)
        if self.method == "rho-a":
            return sxy * 12.0 / (total**3 - total)[:, None, None]
        # Σ w (r - m)² over the expanded vector: for a vector without ties only the duplicates tie,
        # so it is (N³ - N) / 12 - Σ_k (w_k³ - w_k) / 12 (the tie-corrected rank variance)
        ss = ((total**3 - total) - (w**3 - w).sum(-1)) / 12.0  # (B,)
        var = ss[:, None].expand(-1, v.shape[0]).clone()
        if bool(self.ties.any()):
            t = torch.nonzero(self.ties).flatten()
            var[:, t] = torch.einsum("btk,bk,btk->bt", ranks[:, t], w, ranks[:, t])
        sxx, syy = var[:, :n_l], var[:, n_l:]
        return sxy / torch.sqrt(sxx[:, :, None] * syy[:, None, :])


def weighted_compare(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, method: str = "corr"):
    """Compare every row of ``x`` with every row of ``y`` under each row of pair weights ``w``.

    With integer weights this equals ``rsatoolbox.rdm.compare`` on the vectors expanded by the
    weights (each entry repeated ``w`` times, weight-0 entries dropped).

    Parameters
    ----------
    x, y
        (L, K) and (S, K) RDM vectors; NaN allowed only where every weight is 0.
    w
        (B, K) non-negative pair weights (one resample per row).
    method
        One of ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``.

    Returns
    -------
    torch.Tensor
        (B, L, S) similarities.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    >>> y = torch.tensor([[1.0, 3.0, 2.0]], dtype=torch.float64)
    >>> w = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    >>> round(weighted_compare(x, y, w, "spearman").item(), 6)
    0.5
    """
    return _Kernel(x, y, method)(w)


@dataclass
class BootstrapResult:
    """Bootstrap distribution of the similarities.

    Attributes
    ----------
    samples
        (n_bootstrap, L, S) similarity of each layer row with each brain RDM per resample (NaN
        for resamples with fewer than 3 distinct stimuli, as rsatoolbox does).
    rdm_weights
        (n_bootstrap, S) how often each brain RDM is in each resample (1 when subjects are not
        resampled); the resampled mean similarity is the weighted mean over S.
    """

    samples: torch.Tensor
    rdm_weights: torch.Tensor

    def mean_over_rdms(self) -> torch.Tensor:
        """(n_bootstrap, L) weighted mean over the brain RDMs, as rsatoolbox's evaluation."""
        w = self.rdm_weights[:, None, :]
        return (self.samples * w).sum(-1) / w.sum(-1)


def bootstrap_compare(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    method: str = "corr",
    n_bootstrap: int = 1000,
    bootstrap: str = "stimuli",
    rdm_groups: np.ndarray | list | None = None,
    pattern_groups: np.ndarray | list | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    memory_budget: float = 2e8,
    pattern_counts: torch.Tensor | None = None,
    group_counts: torch.Tensor | None = None,
) -> BootstrapResult:
    """Bootstrap the comparison of layer RDM vectors ``x`` with brain RDM vectors ``y``.

    Parameters
    ----------
    x
        (L, K) model (layer) RDM vectors, upper triangle of n conditions (K = n (n - 1) / 2).
    y
        (S, K) brain RDM vectors.
    method
        Any ``brainrdl.compare`` method; ``cosine``, ``corr``, ``spearman`` and ``rho-a`` are
        vectorised, the others loop over resamples through ``rsatoolbox.rdm.compare``.
    n_bootstrap
        Number of resamples.
    bootstrap
        ``"stimuli"`` (rsatoolbox's ``bootstrap_sample_pattern``), ``"subjects"``
        (``bootstrap_sample_rdm``) or ``"both"`` (``bootstrap_sample``).
    rdm_groups
        (S,) label per brain RDM: subjects are resampled as whole groups (all sessions of a subject
        together). Default: each RDM its own group.
    pattern_groups
        (n,) label per stimulus, resampled as whole groups. Default: each stimulus alone.
    seed
        Seed of the torch generator (on ``device``).
    device
        Where to compute; default: the device of ``x`` if a tensor, else CPU.
    chunk_size
        Resamples per batched comparison; default from ``memory_budget`` (bytes).
    pattern_counts, group_counts
        Explicit draw counts (n_bootstrap, n_pattern_groups) / (n_bootstrap, n_rdm_groups)
        instead of random draws: to replay rsatoolbox's resamples in tests.

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 45, dtype=torch.float64)
    >>> y = torch.rand(3, 45, dtype=torch.float64)
    >>> res = bootstrap_compare(x, y, n_bootstrap=16, seed=0)
    >>> tuple(res.mean_over_rdms().shape)
    (16, 2)
    """
    check_choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive int; got {n_bootstrap!r}")
    if device is None:
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    x = torch.as_tensor(x, dtype=torch.float64, device=device)
    y = torch.as_tensor(y, dtype=torch.float64, device=device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (L, K) and (S, K) RDM vectors of equal K; got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    n_cond = _n_from_length(x.shape[1])
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))

    p_index, n_pgroups = _group_index(pattern_groups, n_cond, "pattern_groups", device)
    r_index, n_rgroups = _group_index(rdm_groups, y.shape[0], "rdm_groups", device)
    resample_stimuli = bootstrap in ("stimuli", "both")
    resample_rdms = bootstrap in ("subjects", "both")

    if resample_rdms:
        if group_counts is None:
            draws = torch.randint(n_rgroups, (n_bootstrap, n_rgroups), generator=gen, device=device)
            group_counts = _counts(draws, n_rgroups)
        rdm_weights = group_counts.to(device, torch.float64)[:, r_index]
    else:
        rdm_weights = torch.ones(n_bootstrap, y.shape[0], dtype=torch.float64, device=device)

    if not resample_stimuli:
        sims = _full_compare(x, y, method)
        samples = sims.expand(n_bootstrap, -1, -1).clone()
        return BootstrapResult(samples, rdm_weights)

    if pattern_counts is None:
        draws = torch.randint(n_pgroups, (n_bootstrap, n_pgroups), generator=gen, device=device)
        pattern_counts = _counts(draws, n_pgroups)
    pattern_counts = pattern_counts.to(device, torch.float64)
    # rsatoolbox marks a resample with fewer than 3 distinct pattern groups as NaN
    too_few = (pattern_counts > 0).sum(-1) < 3
    stim_counts = pattern_counts[:, p_index]  # (B, n)

    if chunk_size is None:
        # bytes per resample: the weight row (and, for ranks, 4 (L + S, K) work arrays)
        rows = 4 * (x.shape[0] + y.shape[0]) if method in ("spearman", "rho-a") else 2
        per_sample = rows * x.shape[1] * 8
        chunk_size = int(max(1, min(n_bootstrap, memory_budget // max(per_sample, 1))))
    kernel = _Kernel(x, y, method, memory_budget) if method in FAST_METHODS else None
    out = []
    for start in range(0, n_bootstrap, chunk_size):
        w = pair_weights(stim_counts[start : start + chunk_size])
        if kernel is not None:
            out.append(kernel(w))
        else:
            out.append(_loop_compare(x, y, w, method))
    samples = torch.cat(out)
    samples[too_few] = float("nan")
    return BootstrapResult(samples, rdm_weights)


def percentile_ci(samples: torch.Tensor | np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, ...]:
    """Percentile interval over the first axis, ignoring NaN resamples.

    Examples
    --------
    >>> import numpy as np
    >>> low, high = percentile_ci(np.arange(101.0)[:, None], ci=0.9)
    >>> float(low[0]), float(high[0])
    (5.0, 95.0)
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    arr = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
    alpha = (1.0 - ci) / 2.0
    return np.nanquantile(arr, alpha, axis=0), np.nanquantile(arr, 1.0 - alpha, axis=0)


def _full_compare(x: torch.Tensor, y: torch.Tensor, method: str) -> torch.Tensor:
    """(1, L, S) comparison on all pairs that are finite in every vector."""
    valid = torch.isfinite(x).all(0) & torch.isfinite(y).all(0)
    w = valid.to(torch.float64)[None]
    if method in FAST_METHODS:
        return weighted_compare(x, y, w, method)
    return _loop_compare(x, y, w, method)


def _loop_compare(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, method: str) -> torch.Tensor:
    """Fallback for methods without a weighted form (tau-a, *_cov): expand each resample, compare.

    Uses ``brainrdl.comparison.compare_vectors`` (on the device); rsatoolbox for the rest.
    """
    from brainrdl.comparison import METHODS as TENSOR_METHODS
    from brainrdl.comparison import compare_vectors

    out = torch.empty(w.shape[0], x.shape[0], y.shape[0], dtype=torch.float64, device=x.device)
    for b, wb in enumerate(w.round().long()):
        rep = torch.repeat_interleave(torch.arange(wb.numel(), device=x.device), wb)
        if method in TENSOR_METHODS:
            out[b] = compare_vectors(x[:, rep], y[:, rep], method)
        else:
            from rsatoolbox.rdm import compare as rsa_compare

            sim = rsa_compare(x[:, rep].cpu().numpy(), y[:, rep].cpu().numpy(), method=method)
            out[b] = torch.as_tensor(sim, device=x.device)
    return out


def _counts(draws: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.zeros(draws.shape[0], n, dtype=torch.float64, device=draws.device)
    return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def _group_index(
    groups: np.ndarray | list | None, n: int, name: str, device: torch.device | str
) -> tuple[torch.Tensor, int]:
    if groups is None:
        return torch.arange(n, device=device), n
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"{name} must have one label per item ({n}); got shape {groups.shape}")
    # np.unique sorts the labels, as rsatoolbox does for its descriptor values
    _, index = np.unique(groups, return_inverse=True)
    return torch.as_tensor(index.reshape(-1), device=device), int(index.max()) + 1


def _n_from_length(k: int) -> int:
    n = round((1 + np.sqrt(1 + 8 * k)) / 2)
    if n * (n - 1) // 2 != k:
        raise ValueError(f"RDM vectors of length {k} are not the upper triangle of a square matrix")
    return n
