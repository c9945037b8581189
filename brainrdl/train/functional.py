"""Functional forms of the transfer losses (``torch.nn.functional`` conventions).

Every loss takes mini-batch activations of B items and returns a differentiable tensor on the
input's device. Teacher information is given per item (features) or per pair (a target RDM); items
or pairs without a target are excluded by a mask with ``torch.where`` (never by multiplication), so
NaN placeholders in the target cannot leak into the value or the gradient. RDMs are B×B Gram
products: no (B, B, D) tensor is ever formed.

Losses
------
rdl_loss
    Representational distance learning (McClure & Kriegeskorte 2016) and scale-free variants.
pkt_loss
    Probabilistic knowledge transfer (Passalis & Tefas 2018), as the authors' reference code.
cka_loss
    Linear CKA alignment, log(1 − CKA) (Dapello et al. 2023) or 1 − CKA; teacher as features or RDM.
kd_loss
    Knowledge distillation (Hinton et al. 2015): T²-scaled KL between softened outputs.
knowledge_projection_loss
    L2 loss between student features and projected teacher features (Zhang et al. 2017).

Examples
--------
>>> import torch
>>> from brainrdl.train.functional import rdl_loss
>>> x = torch.randn(8, 32, requires_grad=True)
>>> target = 1 - torch.corrcoef(x.detach())  # correlation-distance RDM of the same items
>>> float(rdl_loss(x, target).detach()) < 1e-6  # default: 1 - Pearson r of the two RDMs
True
>>> paper = torch.cdist(x.detach(), x.detach()) ** 2  # the paper's squared euclidean RDM
>>> float(rdl_loss(x, paper, comparison="paper").detach()) < 1e-10
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brainrdl.errors import DegenerateDataError
from brainrdl.rsa.distances import correlation_rdm, cosine_rdm, euclidean_rdm, upper_tri
from brainrdl.validation import check_choice

__all__ = ["cka_loss", "kd_loss", "knowledge_projection_loss", "pkt_loss", "rdl_loss"]

RDL_DISTANCES = ("euclidean", "correlation", "cosine")
RDL_COMPARISONS = ("paper", "mse", "pearson", "cosine", "corr_cov")
REDUCTIONS = ("mean", "sum", "none")
PAPER_SCALES = ("max", "none")

# Smallest valid pairs for a defined value: correlation-type comparisons need a variance.
_MIN_PAIRS = {"paper": 2, "mse": 3, "pearson": 3, "cosine": 2, "corr_cov": 3}
_TINY = 1e-30  # floor of denominators: only ever hit by degenerate (constant) RDMs
# Scale-free comparisons run on features rescaled to unit size, so these tolerances are relative.
# A student RDM whose spread is below _FLAT_RDM eps (after rescaling) is flat up to rounding: its
# spread is floored there, so identical features give a small, finite gradient instead of
# amplified rounding noise. A pattern whose norm is below _DEAD_ROW of the batch's largest is
# "constant" (e.g. an all-zero row of dead ReLUs): its correlation/cosine distance is undefined.
_FLAT_RDM = 100.0  # in units of the dtype's eps
_DEAD_ROW = 1e-5
DEFAULT_DISTANCE = "correlation"
DEFAULT_COMPARISON = "pearson"


# --------------------------------------------------------------------------- helpers


def _flatten(name: str, x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, D) floating tensor; validates type and batch dimension."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension (B, ...); got a 0-d tensor")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x.reshape(x.shape[0], -1)


def _raise_if_nonfinite(
    name: str,
    features: torch.Tensor,
    value: torch.Tensor,
    target_ok: torch.Tensor | None = None,
    proxy: torch.Tensor | None = None,
    kept_finite: torch.Tensor | None = None,
) -> None:
    """One device sync: check the student features, the loss value (and the kept targets).

    ``proxy`` (the B×B student RDM or Gram) stands in for the (B, D) features: a NaN or inf in
    any feature reaches it, and checking B² entries is cheaper than B·D. The features are only
    scanned to name the bad items once something is wrong.
    """
    checked = features if proxy is None else proxy
    ok = torch.isfinite(checked).all() & torch.isfinite(value).all()
    if target_ok is not None:
        ok = ok & target_ok
    if bool(ok):
        return
    if target_ok is not None and not bool(target_ok):
        # the kept target entries are finite, so it failed the symmetry check; NaN at masked
        # pairs does not matter here
        if kept_finite is not None and bool(kept_finite):
            raise DegenerateDataError(
                f"layer {name!r}: target_rdm is not symmetric; a target RDM must be (make it "
                "symmetric, e.g. (D + D.T) / 2, before passing it)"
            )
        raise ValueError(
            f"layer {name!r}: target_rdm has NaN or infinite entries at pairs that pair_mask "
            "keeps; pass pair_mask=torch.isfinite(target_rdm) (and items without targets "
            "masked out) to exclude them"
        )
    bad_rows = (~torch.isfinite(features)).reshape(features.shape[0], -1).any(dim=1)
    if bool(bad_rows.any()):
        items = torch.nonzero(bad_rows).flatten().tolist()
        shown = items if len(items) <= 10 else [*items[:10], "..."]
        raise ValueError(
            f"layer {name!r}: student features contain NaN or infinite values in batch items "
            f"{shown} ({len(items)} in all); check the learning rate and the inputs"
        )
    raise ValueError(f"layer {name!r}: the loss value is NaN or infinite ({value.detach()})")


def _check_reduction(reduction: str) -> str:
    return check_choice("reduction", reduction, REDUCTIONS)


def _item_mask(name: str, mask: torch.Tensor | None, n: int, device: torch.device):
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.shape != (n,):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape ({n},); got {shape}")
    return mask.to(device=device, dtype=torch.bool)


def _student_rdm(x: torch.Tensor, distance: str, name: str) -> torch.Tensor:
    """Square student RDM from one Gram product (same numbers as distances.pairwise_rdm)."""
    try:
        if distance == "euclidean":
            return euclidean_rdm(x)
        if distance == "correlation":
            return correlation_rdm(x)
        return cosine_rdm(x)
    except ValueError as err:  # zero-norm rows: name the layer so the user knows where
        raise ValueError(f"layer {name!r}: {err}") from err


def _masked_mean(v: torch.Tensor, valid: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, v, 0.0).sum() / n


# --------------------------------------------------------------------------- RDL


def default_distance(distance: str | None, comparison: str) -> str:
    """The student distance ``rdl_loss`` uses: the paper's squared euclidean for ``"paper"``.

    Examples
    --------
    >>> default_distance(None, "paper"), default_distance(None, "pearson")
    ('euclidean', 'correlation')
    """
    if distance is not None:
        return distance
    return "euclidean" if comparison == "paper" else DEFAULT_DISTANCE


def rdl_loss(
    student: torch.Tensor,
    target_rdm: torch.Tensor,
    *,
    distance: str | None = None,
    comparison: str = DEFAULT_COMPARISON,
    pair_mask: torch.Tensor | None = None,
    reduction: str = "mean",
    name: str = "student",
    paper_scale: str = "max",
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Representational distance learning loss between a student layer and a target RDM.

    The student RDM of the B items is computed from ``student`` (flattened to (B, D)) with
    :mod:`brainrdl.rsa.distances` (one Gram product) and compared with ``target_rdm`` on the upper
    triangle (pairs i < j) that ``pair_mask`` keeps.

    **Default** (``distance="correlation"``, ``comparison="pearson"``): one minus the Pearson
    correlation between the student's correlation-distance RDM and the target. It is bounded
    (in [0, 2]) and invariant to the scale and offset of both RDMs, so it cannot push the
    student's scale anywhere. On the 92-image IT data and the demo it stayed bounded under
    Adam for weights 0.1-100 and under SGD (lr 0.01-0.05) for weights up to 10 (lr × weight
    ≲ 0.1; at 100 SGD diverged), where the paper form diverged under Adam at every weight.
    Weights ≥ 1 slow the task on small data sets: choose the weight on validation stimuli
    (see ``docs/losses.md`` and ``docs/benchmarks-real-data.md``).

    ``comparison="paper"`` follows McClure & Kriegeskorte (2016), "Representational Distance
    Learning for Deep Neural Networks", Front. Comput. Neurosci. 10:131 (arXiv 1511.03979):
    RDMs of mini-batch activations with the squared euclidean distance (``distance=
    "euclidean"``), the squared error between student and teacher RDM entries, one weight per
    matched layer (see :class:`brainrdl.train.losses.RDLLoss`), added to the task loss. The
    scaling is taken from the authors' code (github.com/patrick-mcclure/rdl,
    ``MNIST/test_mnist_rdl_max.lua``): the student distance is torch's ``MSECriterion`` between
    two activations, i.e. :math:`\|a_i - a_j\|^2 / D` (rsatoolbox's ``euclidean``), the teacher
    RDM is divided by its maximum and multiplied by the maximum student distance of the
    mini-batch (a constant: no gradient flows through it), so teacher and student (or brain)
    scales need not agree:

    .. math:: L = \frac{1}{|P|}\sum_{(i,j)\in P}\big(d^S_{ij} - \beta\, d^T_{ij}\big)^2,
              \qquad \beta = \frac{\max_P d^S}{\max_P d^T}

    over the valid pairs P (i < j). ``reduction="sum"`` gives :math:`\sum_{i<j}`, the paper's
    sum over pairs (its :math:`\tfrac12\sum_{i,j}`). The paper's text itself could not be
    retrieved while writing this; the code above is the source of the scaling.
    ``paper_scale="none"`` compares raw entries (:math:`\beta = 1`).

    Because :math:`\beta` follows the student's own scale, nothing anchors that scale: with
    adaptive optimisers (Adam) the student's distances and :math:`\beta` can push each other up
    until the loss diverges (seen in ``benchmarks/replicate_distillation.py`` and on the
    92-image IT data, where it blew up in every run); under plain SGD, as the authors trained,
    the drift is slow. Use it to replicate the paper, not to train toward brains.

    Scale-free variants (``comparison``), with :math:`s, t` the valid student / target entries:

    - ``"mse"``: each vector z-scored over the valid pairs (population s.d.), then the mean of
      :math:`(z_s - z_t)^2`; this equals :math:`2(1 - r)`.
    - ``"pearson"``: :math:`1 - r(s, t)`.
    - ``"cosine"``: :math:`1 - s\cdot t / (\|s\|\|t\|)`.
    - ``"corr_cov"``: :math:`1 -` rsatoolbox's ``corr_cov`` similarity (Pearson correlation
      after whitening with the RDM-entry covariance under i.i.d. pattern noise; Diedrichsen et
      al. 2021), computed as rsatoolbox does through double-centred second-moment matrices.

    They are computed scale-free: the student and target RDM entries are divided by their
    largest magnitude (constants, which change none of these values) before they are compared,
    so float32 gives the same value for features scaled by 1e-10 or 1e10. The spread of the
    student RDM is floored at 100 eps of its natural scale (1 for correlation and cosine
    distances, max|x|² for the euclidean one): a flat student RDM (identical features) gives a
    small finite gradient, not amplified rounding noise. With
    ``distance="correlation"`` or ``"cosine"``, a pattern that is constant (e.g. an all-zero row
    of dead ReLUs) has no defined distance: its pairs are left out of the loss, like pairs
    without a target.

    Parameters
    ----------
    student : torch.Tensor
        Student activations (B, ...) for the B items of the batch.
    target_rdm : torch.Tensor
        Square (B, B) target RDM (teacher network or brain) for the same items in the same order.
    distance : str | None
        Student RDM distance: ``"correlation"`` (1 − Pearson r across features, the brain RDMs'
        usual measure), ``"euclidean"`` (squared, per channel as rsatoolbox) or ``"cosine"``.
        None (default): ``"euclidean"`` for ``comparison="paper"`` (the paper's form), else
        ``"correlation"``.
    comparison : str
        ``"pearson"`` (default), ``"mse"``, ``"cosine"``, ``"corr_cov"`` or ``"paper"``.
    pair_mask : torch.Tensor | None
        (B, B) bool, True where the pair has a valid target. Only pairs i < j that are True
        enter the loss; target entries elsewhere may be NaN.
    reduction : str
        ``"mean"``, ``"sum"`` or ``"none"``. For ``"paper"`` and ``"mse"``, ``"none"`` returns
        the per-pair squared errors as an upper-triangle vector (B(B−1)/2,) with 0 at excluded
        pairs. The other comparisons are one value per RDM; all reductions return it.
    name : str
        Layer name used in error messages.
    paper_scale : str
        ``"max"`` (default: teacher rescaled to the student's maximum, as the authors' code)
        or ``"none"``; only used by ``comparison="paper"``.
    check_finite : bool
        Raise a ValueError naming ``name`` for non-finite features or loss (one device sync).

    Returns
    -------
    torch.Tensor
        The loss; 0 (still attached to the graph) when fewer than 2 valid pairs remain (3 for
        ``"mse"``, ``"pearson"`` and ``"corr_cov"``).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(6, 10, requires_grad=True)
    >>> target = torch.rand(6, 6); target = target + target.T
    >>> loss = rdl_loss(x, target)
    >>> loss.backward(); x.grad.shape
    torch.Size([6, 10])
    >>> abs(rdl_loss(x * 1e10, target).item() - loss.item()) < 1e-5  # scale-free
    True
    """
    check_choice("comparison", comparison, RDL_COMPARISONS)
    distance = check_choice("distance", default_distance(distance, comparison), RDL_DISTANCES)
    check_choice("paper_scale", paper_scale, PAPER_SCALES)
    _check_reduction(reduction)
    x = _flatten("student", student)
    b = x.shape[0]
    if not isinstance(target_rdm, torch.Tensor) or target_rdm.shape != (b, b):
        shape = tuple(target_rdm.shape) if isinstance(target_rdm, torch.Tensor) else target_rdm
        raise ValueError(
            f"target_rdm must be a square ({b}, {b}) tensor matching the {b} student items; "
            f"got {shape}"
        )
    target = target_rdm.to(device=x.device, dtype=x.dtype)

    if b < 2:  # no pair at all: nothing to align
        value = x.sum() * 0.0
        if check_finite:
            _raise_if_nonfinite(name, x, value)
        return value

    rows, cols = torch.triu_indices(b, b, offset=1, device=x.device)
    if pair_mask is None:
        valid = torch.ones(rows.shape[0], dtype=torch.bool, device=x.device)
    else:
        if not isinstance(pair_mask, torch.Tensor) or pair_mask.shape != (b, b):
            shape = tuple(pair_mask.shape) if isinstance(pair_mask, torch.Tensor) else pair_mask
            raise ValueError(f"pair_mask must be a bool tensor of shape ({b}, {b}); got {shape}")
        valid = pair_mask.to(device=x.device, dtype=torch.bool)[rows, cols]
    t_raw = target[rows, cols]
    # A NaN target at a pair the caller kept is a caller error, not something to average over;
    # it is checked together with the value below (one sync).
    t_low = target[cols, rows]
    finite_pair = torch.isfinite(t_raw) & torch.isfinite(t_low)
    # a non-symmetric target would be silently read from one triangle: refuse it (same sync)
    tolerance = 1e-5 * torch.where(finite_pair, t_raw.abs(), 0.0).amax().detach() + 1e-12
    symmetric = torch.where(valid & finite_pair, (t_raw - t_low).abs() <= tolerance, True).all()
    kept_finite = torch.where(valid, torch.isfinite(t_raw), True).all()
    target_ok = kept_finite & symmetric
    t = torch.where(valid, t_raw, 0.0)
    scale_free = comparison != "paper"
    if scale_free:
        # Every scale-free value is unchanged by a constant factor on either RDM: the target is
        # made unit-sized here, the student RDM below, so float32 neither under- nor overflows.
        t = t / _max_abs(t)
        target = target / _max_abs(torch.where(torch.isfinite(target), target, 0.0))
        if distance != "euclidean":
            rdm_s, defined = _safe_angular_rdm(x, centre=distance == "correlation")
            valid = valid & defined[rows] & defined[cols]
            t = torch.where(valid, t, 0.0)
            noise_scale = torch.ones((), dtype=x.dtype, device=x.device)  # distances in [0, 2]
        else:
            rdm_s = None
            # euclidean entries are at most 4 max|x|^2; rounding noise is eps times that
            noise_scale = x.detach().abs().amax() ** 2
        # floor of the student RDM's spread: 100 eps of its natural scale, so a flat RDM made
        # of rounding noise (identical features) gives a small finite gradient
        floor_abs = _FLAT_RDM * torch.finfo(x.dtype).eps * noise_scale

    if comparison == "corr_cov":
        if check_finite:  # corr_cov selects items on the host: check the targets first
            _raise_if_nonfinite(name, x, x.new_zeros(()), target_ok, proxy=x.new_zeros(()),
                                kept_finite=kept_finite)
        value = _corr_cov_loss(x, target, valid, rows, cols, distance, name, floor_abs)
        return _checked(name, x, value, check_finite)

    if not scale_free or rdm_s is None:
        rdm_s = _student_rdm(x, distance, name)
    s = torch.where(valid, upper_tri(rdm_s), 0.0)
    n = valid.sum().to(x.dtype)
    enough = n >= _MIN_PAIRS[comparison]
    n_safe = n.clamp_min(1.0)
    if scale_free:
        s_scale = torch.maximum(s.detach().abs().amax(), floor_abs)
        s = s / s_scale
        floor = floor_abs / s_scale

    if comparison == "paper":
        if paper_scale == "max":  # teacher rescaled to the student's range (authors' code)
            t = t * (_masked_max(s, valid).detach() / _masked_max(t, valid))
        per_pair = torch.where(valid, (s - t) ** 2, 0.0)
        value = _reduce_pairs(per_pair, n_safe, reduction)
    elif comparison == "mse":
        zs = _zscore(s, valid, n_safe, floor)
        per_pair = torch.where(valid, (zs - _zscore(t, valid, n_safe)) ** 2, 0.0)
        value = _reduce_pairs(per_pair, n_safe, reduction)
    elif comparison == "pearson":
        sc = torch.where(valid, s - _masked_mean(s, valid, n_safe), 0.0)
        tc = torch.where(valid, t - _masked_mean(t, valid, n_safe), 0.0)
        value = 1.0 - _cos(sc, tc, floor * n_safe.sqrt())
    else:  # cosine
        value = 1.0 - _cos(s, t, floor * n_safe.sqrt())
    value = torch.where(enough, value, torch.zeros_like(value))
    if check_finite:
        _raise_if_nonfinite(name, x, value, target_ok, proxy=rdm_s, kept_finite=kept_finite)
    return value


def _max_abs(v: torch.Tensor) -> torch.Tensor:
    """Largest magnitude of ``v`` as a detached divisor (1 for an all-zero tensor)."""
    m = v.detach().abs().amax()
    return torch.where(m > 0, m, torch.ones_like(m))


class _RowGram(torch.autograd.Function):
    """Gram ``Xc Xcᵀ`` of the rows of X (centred across features when ``centre``).

    One GEMM forward and one backward, as :mod:`brainrdl.rsa.distances` does (its helper is
    private to that room): with ``S = dG + dGᵀ``, ``dX = S X`` (rows centred for ``centre``,
    since the centring matrix is symmetric and idempotent). Only X is saved.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, centre: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.centre = centre
        ctx.save_for_backward(x)
        xc = x - x.mean(dim=1, keepdim=True) if centre else x
        return xc @ xc.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        dx = (grad + grad.T) @ x
        if ctx.centre:
            dx = dx - dx.mean(dim=1, keepdim=True)
        return dx, None


def _safe_angular_rdm(x: torch.Tensor, centre: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlation (``centre``) or cosine distance RDM, and which rows are defined.

    A row whose (centred) norm is below ``_DEAD_ROW`` of the batch's largest has no direction
    (e.g. an all-zero row of dead ReLUs): its distances are set to 1 without gradient and it is
    reported undefined, so its pairs can be left out instead of failing the step or dividing
    rounding noise by zero. A NaN feature makes its Gram row NaN, which the caller's check sees.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        gram = _RowGram.apply(x, centre)
    else:
        xc = x - x.mean(dim=1, keepdim=True) if centre else x
        gram = xc @ xc.T
    sq = torch.diagonal(gram)
    ref = sq.detach().amax()
    defined = sq.detach() > ref * _DEAD_ROW**2
    inv = torch.where(defined, torch.rsqrt(torch.where(defined, sq, torch.ones_like(sq))), 0.0)
    rdm = 1.0 - gram * inv[:, None] * inv[None, :]
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return rdm.masked_fill(eye, 0.0), defined


def _checked(name: str, x: torch.Tensor, value: torch.Tensor, check: bool) -> torch.Tensor:
    if check:
        _raise_if_nonfinite(name, x, value)
    return value


def _masked_max(v: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, v, float("-inf")).max().clamp_min(_TINY)


def _zscore(v: torch.Tensor, valid: torch.Tensor, n: torch.Tensor,
            floor: torch.Tensor | float = 0.0) -> torch.Tensor:
    c = torch.where(valid, v - _masked_mean(v, valid, n), 0.0)
    sd = torch.sqrt(((c**2).sum() / n).clamp_min(_TINY))
    return c / torch.maximum(sd, torch.as_tensor(floor, dtype=sd.dtype, device=sd.device))


def _cos(a: torch.Tensor, b: torch.Tensor, floor_a: torch.Tensor) -> torch.Tensor:
    # A zero vector has cosine 0 with anything (rsatoolbox's convention), hence the floors;
    # ``floor_a`` bounds ‖a‖ from below so a flat student RDM gives a finite, small gradient.
    na = torch.sqrt(torch.clamp_min((a * a).sum(), _TINY))
    na = torch.maximum(na, floor_a)
    nb = torch.sqrt(torch.clamp_min((b * b).sum(), _TINY))
    return (a * b).sum() / (na * nb)


def _reduce_pairs(per_pair: torch.Tensor, n: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_pair
    total = per_pair.sum()
    return total if reduction == "sum" else total / n


def _corr_cov_loss(
    x: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    distance: str,
    name: str,
    floor: torch.Tensor | float,
) -> torch.Tensor:
    """1 − rsatoolbox corr_cov. Masked pairs: the items that carry a valid pair are kept.

    ``floor`` is the smallest spread of the student RDM entries (in their own units) that is
    not rounding noise.
    """
    b = x.shape[0]
    if not bool(valid.all()):  # selecting items needs their count on the host: one sync
        pair_sq = torch.zeros(b, b, dtype=torch.bool, device=x.device)
        pair_sq[rows, cols] = valid
        pair_sq = pair_sq | pair_sq.T
        keep = pair_sq.any(dim=1)
        items = torch.nonzero(keep).flatten()
        if items.numel() < 3 or int(valid.sum()) < 3:
            return x.sum() * 0.0
        x = x[items]
        target = target[items][:, items]
        sub = pair_sq[items][:, items]
        m = items.numel()
        r2, c2 = torch.triu_indices(m, m, offset=1, device=x.device)
        valid = sub[r2, c2]
        rows, cols = r2, c2
    s_vec = upper_tri(_student_rdm(x, distance, name))
    # unit-sized student entries (corr_cov is scale-free); the floor in the same units
    s_scale = torch.maximum(s_vec.detach().abs().amax(), torch.as_tensor(floor, dtype=x.dtype,
                                                                         device=x.device))
    s_vec = s_vec / s_scale
    floor = floor / s_scale
    t_vec = target[rows, cols]  # entries of invalid pairs are dropped by t_vec[valid] below
    n = x.shape[0]
    if bool(valid.all()):
        ws = _cov_weighting_full(s_vec, n)
        wt = _cov_weighting_full(t_vec, n)
    else:
        ws = _cov_weighting_missing(s_vec[valid], valid, n)
        wt = _cov_weighting_missing(t_vec[valid], valid, n)
    return 1.0 - _cos(ws, wt, floor * ws.numel() ** 0.5)


def _cov_weighting_full(vec: torch.Tensor, n: int) -> torch.Tensor:
    """rsatoolbox ``_cov_weighting`` without NaNs: the double-centred -½·RDM as a matrix.

    The off-diagonal entries appear twice in a square matrix, which is what rsatoolbox's √2
    weighting of the vector form achieves, so the Frobenius inner product is the same number.
    """
    vec = vec - vec.mean()  # corr_cov subtracts the mean of the RDM vector first
    w = -0.5 * _square(vec, n)
    row = w.mean(dim=1, keepdim=True)
    return w - row - row.T + w.mean()


def _cov_weighting_missing(vec: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """rsatoolbox ``_cov_weighting`` with missing pairs (its least-squares double centring)."""
    vec = vec - vec.mean()
    rows, cols = torch.triu_indices(n, n, offset=1, device=vec.device)
    rows, cols = rows[valid], cols[valid]
    n_dist = rows.shape[0]
    eye = torch.eye(n, dtype=vec.dtype, device=vec.device)
    # indicator of the conditions in each entry: pairs (i, j) then diagonal entries (k, k)
    sum_i = torch.cat([eye[rows] + eye[cols], eye], dim=0)  # diagonal rows halved: 2·I/2
    diag = torch.cat([vec.new_full((n_dist, 1), 0.5), vec.new_ones((n, 1))])
    w = -0.5 * torch.cat([vec, vec.new_zeros(n)])
    # w <- w - w S (Sᵀ Δ S)⁻¹ (Δ S)ᵀ: remove the best (Δ-weighted) fit of row/column effects
    proj = sum_i @ torch.linalg.solve(sum_i.T @ (diag * sum_i), (diag * sum_i).T)
    w = w - w @ proj
    w = torch.cat([w[:n_dist] * 2.0**0.5, w[n_dist:]])
    return w


def _square(vec: torch.Tensor, n: int) -> torch.Tensor:
    rows, cols = torch.triu_indices(n, n, offset=1, device=vec.device)
    sq = vec.new_zeros(n, n)
    sq = sq.index_put((rows, cols), vec).index_put((cols, rows), vec)
    return sq


# --------------------------------------------------------------------------- PKT


def pkt_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    eps: float = 1e-7,
    item_mask: torch.Tensor | None = None,
    name: str = "student",
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as the reference code.

    Rows are L2-normalised (``x / (‖x‖ + eps)``), cosine-similarity kernels are mapped to
    [0, 1] by (s + 1)/2 and each row is normalised to sum 1 (conditional probabilities
    :math:`p_{j|i}`); the loss is :math:`\frac{1}{B^2}\sum_{i,j} t_{j|i}\log\frac{t_{j|i} +
    \epsilon}{s_{j|i} + \epsilon}` (teacher ‖ student), the mean over all B² entries, as in
    the authors' ``cosine_similarity_loss`` (github.com/passalis/probabilistic_kt).

    Parameters
    ----------
    student, teacher : torch.Tensor
        (B, ...) activations; flattened to (B, D_s) and (B, D_t).
    eps : float
        The reference's 1e-7.
    item_mask : torch.Tensor | None
        (B,) bool, True for items with a teacher target; the loss is then the reference loss on
        that sub-batch exactly (teacher rows of other items may be NaN).
    name : str
        Layer name used in error messages.
    check_finite : bool
        Raise a ValueError naming ``name`` for non-finite features or loss.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(5, 8)
    >>> round(float(pkt_loss(x, x)), 6)
    0.0
    """
    s = _flatten("student", student)
    t = _flatten("teacher", teacher).to(device=s.device, dtype=s.dtype)
    if t.shape[0] != s.shape[0]:
        raise ValueError(
            f"teacher must have the same batch size as student ({s.shape[0]}); got {t.shape[0]}"
        )
    mask = _item_mask("item_mask", item_mask, s.shape[0], s.device)
    if mask is not None:
        t = torch.where(mask[:, None], t, 0.0)
    if check_finite:
        # The reference silently zeroes NaN after normalising; a non-finite teacher row is a
        # broken target, not something to train toward.
        _raise_if_teacher_nonfinite(name, t)
    ps = _pkt_probabilities(s, eps, mask)
    pt = _pkt_probabilities(t, eps, mask)
    entries = pt * torch.log((pt + eps) / (ps + eps))
    if mask is None:
        value = entries.mean()
    else:
        pair = mask[:, None] & mask[None, :]
        n = mask.sum().to(s.dtype)
        value = torch.where(pair, entries, 0.0).sum() / (n * n).clamp_min(1.0)
    if check_finite:
        _raise_if_nonfinite(name, s, value)
    return value


def _raise_if_teacher_nonfinite(name: str, teacher: torch.Tensor) -> None:
    bad = ~torch.isfinite(teacher).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"layer {name!r}: teacher features are NaN or infinite for items {rows[:10]}"
            f"{' ...' if len(rows) > 10 else ''}; mask those items out (item_mask) or fix the "
            "teacher"
        )


def _pkt_probabilities(x: torch.Tensor, eps: float, mask: torch.Tensor | None) -> torch.Tensor:
    sq = (x**2).sum(dim=1, keepdim=True)
    # sqrt has an infinite derivative at 0: an all-zero row (dead ReLUs) would turn the
    # gradient into NaN although its value (0 / eps) is fine; route zero rows around the sqrt
    norm = torch.where(sq > 0, torch.sqrt(torch.where(sq > 0, sq, 1.0)), 0.0)
    x = x / (norm + eps)
    x = torch.where(torch.isnan(x), 0.0, x)  # the reference zeroes NaNs after normalising
    sim = (x @ x.T + 1.0) / 2.0
    if mask is not None:  # only items with a target are neighbours
        sim = torch.where(mask[None, :], sim, 0.0)
    return sim / sim.sum(dim=1, keepdim=True).clamp_min(_TINY)


# --------------------------------------------------------------------------- CKA


def cka_loss(
    student: torch.Tensor,
    teacher: torch.Tensor | None = None,
    *,
    target_rdm: torch.Tensor | None = None,
    log: bool = True,
    item_mask: torch.Tensor | None = None,
    eps: float = 1e-8,
    name: str = "student",
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Linear CKA alignment loss: :math:`\log(1 - \mathrm{CKA})` or :math:`1 - \mathrm{CKA}`.

    :math:`\mathrm{CKA}(K, L) = \langle K, L\rangle_F / (\|K\|_F \|L\|_F)` with centred Gram
    matrices :math:`K = HXX^\top H` (Kornblith et al. 2019). ``log=True`` is the form Dapello et
    al. (2023) used to align a network with IT recordings; :math:`1-\mathrm{CKA}` is floored at
    ``eps`` before the log, so a perfect match gives :math:`\log(\epsilon)`, not −inf.

    The teacher is either features (B, ...) or a target RDM (B, B). For squared euclidean
    distances :math:`D_{ij} = \|y_i - y_j\|^2`, :math:`-\tfrac12 HDH = HYY^\top H` exactly: the
    RDM route gives the same CKA as the feature route, so brain RDMs (rsatoolbox ``euclidean``,
    any positive scaling) can be used without features. For other dissimilarities
    :math:`-\tfrac12 HDH` is the classical-MDS Gram matrix (an approximation when not PSD).

    Parameters
    ----------
    student : torch.Tensor
        (B, ...) activations.
    teacher : torch.Tensor | None
        (B, ...) teacher activations, or None when ``target_rdm`` is given.
    target_rdm : torch.Tensor | None
        (B, B) squared-distance RDM of the teacher, or None.
    log : bool
        Return log(1 − CKA) (default) or 1 − CKA.
    item_mask : torch.Tensor | None
        (B,) bool, True for items with a target: centring and CKA use those items only (equal
        to the loss on the sub-batch); teacher rows/RDM entries of other items may be NaN.
    eps : float
        Floor of 1 − CKA inside the log.
    name : str
        Layer name used in error messages.
    check_finite : bool
        Raise a ValueError naming ``name`` for non-finite features or loss.

    Returns
    -------
    torch.Tensor
        Scalar loss; 0 (attached to the graph) with fewer than 3 valid items.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(10, 4)
    >>> abs(float(cka_loss(x, 2 * x, log=False))) < 1e-6
    True
    """
    if (teacher is None) == (target_rdm is None):
        raise ValueError("cka_loss needs exactly one of teacher (features) or target_rdm")
    x = _flatten("student", student)
    b = x.shape[0]
    mask = _item_mask("item_mask", item_mask, b, x.device)
    w = torch.ones(b, dtype=torch.bool, device=x.device) if mask is None else mask
    n = w.sum().to(x.dtype)
    n_safe = n.clamp_min(1.0)
    k = _centred_gram_features(x, w, n_safe)
    if teacher is not None:
        y = _flatten("teacher", teacher).to(device=x.device, dtype=x.dtype)
        if y.shape[0] != b:
            raise ValueError(f"teacher must have the same batch size as student ({b}); "
                             f"got {y.shape[0]}")
        y = torch.where(w[:, None], y, 0.0)
        if check_finite and not bool(torch.isfinite(y).all()):
            raise ValueError(f"layer {name!r}: teacher features of kept items are not finite")
        gram_t = _centred_gram_features(y, w, n_safe)
    else:
        if not isinstance(target_rdm, torch.Tensor) or target_rdm.shape != (b, b):
            raise ValueError(f"target_rdm must be a square ({b}, {b}) tensor; got "
                             f"{getattr(target_rdm, 'shape', target_rdm)}")
        d = target_rdm.to(device=x.device, dtype=x.dtype)
        pair = w[:, None] & w[None, :]
        d = torch.where(pair, d, 0.0)
        if check_finite and not bool(torch.isfinite(d).all()):
            raise ValueError(f"layer {name!r}: target_rdm has NaN or infinite entries between "
                             "kept items; mask those items with item_mask")
        gram_t = _centred_gram_from_rdm(d, w, n_safe)
    cka = (k * gram_t).sum() / torch.sqrt(
        ((k * k).sum() * (gram_t * gram_t).sum()).clamp_min(_TINY)
    )
    value = torch.log((1.0 - cka).clamp_min(eps)) if log else 1.0 - cka
    value = torch.where(n >= 3, value, value * 0.0)
    if check_finite:
        _raise_if_nonfinite(name, x, value)
    return value


def _centred_gram_features(x: torch.Tensor, w: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    mean = torch.where(w[:, None], x, 0.0).sum(dim=0, keepdim=True) / n
    xc = torch.where(w[:, None], x - mean, 0.0)
    return xc @ xc.T


def _centred_gram_from_rdm(d: torch.Tensor, w: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    # -1/2 H D H over the kept items: subtract row and column means, add the grand mean.
    row = d.sum(dim=1, keepdim=True) / n
    grand = d.sum() / (n * n)
    g = -0.5 * (d - row - row.T + grand)
    pair = w[:, None] & w[None, :]
    return torch.where(pair, g, 0.0)


# --------------------------------------------------------------------------- KD and projection


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 4.0,
    item_mask: torch.Tensor | None = None,
    name: str = "logits",
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Knowledge distillation (Hinton, Vinyals & Dean 2015): :math:`T^2\,\mathrm{KL}(p_T\|p_S)`.

    :math:`p = \mathrm{softmax}(z / T)`; the KL divergence is summed over classes and averaged
    over the (kept) items, then multiplied by :math:`T^2` so its gradient scale does not depend
    on T.

    Examples
    --------
    >>> import torch
    >>> z = torch.randn(4, 10)
    >>> round(float(kd_loss(z, z)), 6)
    0.0
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    s = _flatten("student_logits", student_logits)
    t = _flatten("teacher_logits", teacher_logits).to(device=s.device, dtype=s.dtype)
    if s.shape != t.shape:
        raise ValueError(f"teacher_logits must have the student's shape {tuple(s.shape)}; "
                         f"got {tuple(t.shape)}")
    log_ps = F.log_softmax(s / temperature, dim=1)
    mask = _item_mask("item_mask", item_mask, s.shape[0], s.device)
    if mask is not None:
        t = torch.where(mask[:, None], t, 0.0)
    log_pt = F.log_softmax(t / temperature, dim=1)
    per_item = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    if mask is None:
        value = per_item.mean()
    else:
        value = torch.where(mask, per_item, 0.0).sum() / mask.sum().clamp_min(1)
    value = value * temperature**2
    if check_finite:
        _raise_if_nonfinite(name, s, value)
    return value


def knowledge_projection_loss(
    student_features: torch.Tensor,
    projected_teacher: torch.Tensor,
    *,
    item_mask: torch.Tensor | None = None,
    name: str = "student",
    check_finite: bool = True,
) -> torch.Tensor:
    """L2 loss (mean squared error) between student features and projected teacher features.

    The projection itself is learned by :class:`brainrdl.train.losses.KnowledgeProjection` (Zhang,
    Ning & He 2017, arXiv 1710.09505). With ``item_mask`` only the kept items are averaged.

    Examples
    --------
    >>> import torch
    >>> float(knowledge_projection_loss(torch.ones(2, 3), torch.zeros(2, 3)))
    1.0
    """
    s = _flatten("student_features", student_features)
    p = _flatten("projected_teacher", projected_teacher).to(device=s.device, dtype=s.dtype)
    if s.shape != p.shape:
        raise ValueError(
            f"projected_teacher must have the student's shape {tuple(student_features.shape)}; "
            f"got {tuple(projected_teacher.shape)}"
        )
    mask = _item_mask("item_mask", item_mask, s.shape[0], s.device)
    if mask is None:
        value = F.mse_loss(s, p)
    else:
        sq = torch.where(mask[:, None], (s - torch.where(mask[:, None], p, 0.0)) ** 2, 0.0)
        value = sq.sum() / (mask.sum() * s.shape[1]).clamp_min(1)
    if check_finite:
        _raise_if_nonfinite(name, s, value)
    return value
