"""Thin ``nn.Module`` wrappers of :mod:`brainrdl.train.functional` (torch.nn conventions).

The modules hold only what they must: options, per-layer weights, the learned projection of
:class:`KnowledgeProjection`, and (for logging) the last per-layer RDL values, detached.

Examples
--------
>>> import torch
>>> from brainrdl.train.losses import RDLLoss
>>> feats = {"conv1": torch.randn(8, 4, 5, 5), "fc": torch.randn(8, 16)}
>>> targets = {k: 1 - torch.corrcoef(v.flatten(1)) for k, v in feats.items()}
>>> float(RDLLoss()(feats, targets)) < 1e-5  # 1 - Pearson r of correlation-distance RDMs
True
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from brainrdl.train import functional as BF
from brainrdl.validation import check_choice, check_scalar

Tensors = Mapping[str, torch.Tensor] | torch.Tensor


class RDLLoss(nn.Module):
    """Representational distance learning loss summed over matched layers with one weight each.

    ``forward(student_features, target_rdms, pair_masks=None)`` computes
    :func:`brainrdl.train.functional.rdl_loss` for every target name (the keys of ``target_rdms``;
    ``student_features`` must hold the same keys) and returns ``Σ_layer weight · loss``, the RDL
    term of McClure & Kriegeskorte (2016) to add to the task loss. Plain tensors are one layer
    named ``"student"``.

    The default, ``RDLLoss()``, is ``distance="correlation", comparison="pearson"``: one minus
    the Pearson correlation of the student's correlation-distance RDM with the target. It is
    bounded and scale-free; on the embedded demo and the 92-image IT data it stayed stable
    under Adam for weights 0.1–100 and under SGD while lr × weight ≲ 0.1 (``docs/losses.md``).
    The paper's form (McClure &
    Kriegeskorte 2016: squared euclidean RDMs, squared error, teacher rescaled to the student's
    maximum) is ``RDLLoss(comparison="paper")`` (its distance defaults to the paper's squared
    euclidean); it diverged under Adam
    on the IT data in every run, so use it to replicate the paper, not as a default.

    Parameters
    ----------
    distance, comparison, reduction
        As in :func:`brainrdl.train.functional.rdl_loss` (``reduction="none"`` only for one layer);
        ``distance=None`` is ``"euclidean"`` for ``comparison="paper"``, else ``"correlation"``.
    weights : Mapping[str, float] | None
        Mapping layer name -> weight (missing names weigh 1), or None for all 1.
    **options
        Further keyword options of ``rdl_loss`` (``paper_scale``, ``check_finite``).

    Attributes
    ----------
    per_layer : dict[str, torch.Tensor]
        The last unweighted per-layer values, detached (for logging).

    Examples
    --------
    >>> import torch
    >>> loss_fn = RDLLoss(comparison="pearson", weights={"fc": 0.5})
    >>> x = torch.randn(6, 10, requires_grad=True)
    >>> a = torch.rand(6, 6)
    >>> loss = loss_fn({"fc": x}, {"fc": a + a.T})
    >>> sorted(loss_fn.per_layer)
    ['fc']
    """

    consumes = "rdm"  # how fit calls it: see brainrdl.train.registry.CONVENTIONS

    def __init__(
        self,
        distance: str | None = None,
        comparison: str = BF.DEFAULT_COMPARISON,
        weights: Mapping[str, float] | None = None,
        reduction: str = "mean",
        **options,
    ) -> None:
        super().__init__()
        self.comparison = check_choice("comparison", comparison, BF.RDL_COMPARISONS)
        self.distance = check_choice("distance", BF.default_distance(distance, comparison),
                                     BF.RDL_DISTANCES)
        self.reduction = check_choice("reduction", reduction, BF.REDUCTIONS)
        self.weights = {key: _non_negative_weight(key, w) for key, w in (weights or {}).items()}
        unknown = set(options) - {"paper_scale", "check_finite"}
        if unknown:
            raise TypeError(f"RDLLoss got unexpected options {sorted(unknown)}")
        self.options = options
        self.per_layer: dict[str, torch.Tensor] = {}

    def forward(
        self,
        student_features: Tensors,
        target_rdms: Tensors,
        pair_masks: Mapping[str, torch.Tensor | None] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        feats, targets, masks = _as_layers(student_features, target_rdms, pair_masks)
        if self.reduction == "none" and len(targets) > 1:
            raise ValueError("reduction='none' needs a single layer; got "
                             f"{len(targets)} ({sorted(targets)})")
        total: torch.Tensor | None = None
        per_layer = {}
        for name, target in targets.items():
            value = BF.rdl_loss(
                feats[name], target, distance=self.distance, comparison=self.comparison,
                pair_mask=masks.get(name), reduction=self.reduction, name=name, **self.options,
            )
            per_layer[name] = value.detach()
            term = value * float(self.weights.get(name, 1.0))
            total = term if total is None else total + term
        self.per_layer = per_layer
        return total

    def extra_repr(self) -> str:
        return (f"distance={self.distance!r}, comparison={self.comparison!r}, "
                f"weights={self.weights}, reduction={self.reduction!r}")


def _as_layers(student_features, target_rdms, pair_masks):
    if isinstance(target_rdms, torch.Tensor):
        if not isinstance(student_features, torch.Tensor):
            raise TypeError("target_rdms is a tensor, so student_features must be one too; got "
                            f"{type(student_features).__name__}")
        masks = {} if pair_masks is None else {"student": pair_masks}
        return {"student": student_features}, {"student": target_rdms}, masks
    if not isinstance(target_rdms, Mapping) or not target_rdms:
        raise TypeError("target_rdms must be a tensor or a non-empty mapping name -> (B, B) RDM")
    if not isinstance(student_features, Mapping):
        raise TypeError("target_rdms is a mapping, so student_features must map the same names "
                        f"to tensors; got {type(student_features).__name__}")
    missing = [k for k in target_rdms if k not in student_features]
    if missing:
        raise KeyError(f"student_features lacks layers {missing} named in target_rdms; it has "
                       f"{sorted(student_features)}")
    if pair_masks is None:
        masks = {}
    elif isinstance(pair_masks, Mapping):
        masks = dict(pair_masks)
    else:
        raise TypeError("with several layers, pair_masks must be a mapping name -> (B, B) mask")
    return student_features, target_rdms, masks


class PKTLoss(nn.Module):
    """Probabilistic knowledge transfer (Passalis & Tefas 2018); see
    :func:`brainrdl.train.functional.pkt_loss`.

    ``PKTLoss()(student (B, D_s), teacher (B, D_t))`` equals the authors' reference
    ``cosine_similarity_loss``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(5, 8)
    >>> round(float(PKTLoss()(x, x)), 6)
    0.0
    """

    consumes = "features"

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                item_mask: torch.Tensor | None = None, name: str = "student") -> torch.Tensor:
        return BF.pkt_loss(student, teacher, eps=self.eps, item_mask=item_mask, name=name)


class CKALoss(nn.Module):
    """Linear CKA alignment, log(1 − CKA) (Dapello et al. 2023) or 1 − CKA; see
    :func:`brainrdl.train.functional.cka_loss`.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(10, 4)
    >>> abs(float(CKALoss(log=False)(x, 3 * x))) < 1e-6
    True
    """

    consumes = "features_or_rdm"

    def __init__(self, log: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        self.log = log
        self.eps = eps

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None, *,
                target_rdm: torch.Tensor | None = None, item_mask: torch.Tensor | None = None,
                name: str = "student") -> torch.Tensor:
        return BF.cka_loss(student, teacher, target_rdm=target_rdm, log=self.log,
                           item_mask=item_mask, eps=self.eps, name=name)


class KDLoss(nn.Module):
    """Hinton distillation: T² · KL(softmax(t/T) ‖ softmax(s/T)); see
    :func:`brainrdl.train.functional.kd_loss`.

    Examples
    --------
    >>> import torch
    >>> z = torch.randn(3, 5)
    >>> round(float(KDLoss(2.0)(z, z)), 6)
    0.0
    """

    consumes = "logits"

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                item_mask: torch.Tensor | None = None) -> torch.Tensor:
        return BF.kd_loss(student_logits, teacher_logits, temperature=self.temperature,
                          item_mask=item_mask)


class KnowledgeProjection(nn.Module):
    """Knowledge projection (Zhang, Ning & He 2017, arXiv 1710.09505).

    A learned projection maps a teacher layer into the student layer's space — a 1×1
    convolution for feature maps (B, C, *spatial), a linear map for vectors (B, C) — and is
    trained jointly with the student; ``forward(student_feat, teacher_feat)`` returns the L2
    (mean squared error) loss between the student features and the projected teacher features.
    Both 1×1 conv and linear use one weight (student_channels × teacher_channels), so the same
    module serves either layout. When spatial sizes differ, the projected teacher map is
    resized to the student's: adaptive average pooling to shrink, (bi/tri)linear interpolation
    to grow. The teacher features are detached: only the projection and the student learn.

    Choosing the layer pair: the paper selects the teacher layer and the student injection
    layer adaptively, by evaluating the joint loss for candidate pairs in an iterative manner.
    :meth:`candidate_pairs` lists the compatible pairs for such a search;
    :meth:`pick_pair` is the documented default without a search (see there).

    Parameters
    ----------
    teacher_channels, student_channels : int
        Channel (feature) counts of the teacher and student layers (dim 1).
    kind : str
        ``"auto"`` (accept both layouts), ``"conv"`` (feature maps only) or ``"linear"``
        (vectors only).
    bias : bool
        Learn a bias (default True).

    Examples
    --------
    >>> import torch
    >>> kp = KnowledgeProjection(teacher_channels=16, student_channels=8)
    >>> loss = kp(torch.randn(4, 8, 7, 7), torch.randn(4, 16, 14, 14))
    >>> loss.ndim
    0
    """

    consumes = "maps"

    def __init__(self, teacher_channels: int, student_channels: int, *, kind: str = "auto",
                 bias: bool = True) -> None:
        super().__init__()
        for arg, value in (("teacher_channels", teacher_channels),
                           ("student_channels", student_channels)):
            check_scalar(arg, value, int, min_val=1)
        self.kind = check_choice("kind", kind, ("auto", "conv", "linear"))
        self.teacher_channels = teacher_channels
        self.student_channels = student_channels
        self.proj = nn.Linear(teacher_channels, student_channels, bias=bias)

    def project(self, teacher_feat: torch.Tensor,
                spatial: tuple[int, ...] | None = None) -> torch.Tensor:
        """Project teacher features (B, C_t[, *spatial]) into the student space."""
        t = teacher_feat.detach().to(dtype=self.proj.weight.dtype)
        if t.ndim < 2 or t.shape[1] != self.teacher_channels:
            raise ValueError(f"teacher_feat must have shape (B, {self.teacher_channels}, ...); "
                             f"got {tuple(teacher_feat.shape)}")
        if t.ndim == 2:
            if self.kind == "conv":
                raise ValueError("kind='conv' expects feature maps (B, C, H, W); got (B, C)")
            return self.proj(t)
        if self.kind == "linear":
            raise ValueError(f"kind='linear' expects (B, C) vectors; got {tuple(t.shape)}")
        # 1x1 convolution = the linear map applied at every position (channels last and back)
        out = self.proj(t.movedim(1, -1)).movedim(-1, 1)
        if spatial is not None and tuple(out.shape[2:]) != tuple(spatial):
            out = _resize(out, tuple(spatial))
        return out

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor,
                item_mask: torch.Tensor | None = None, name: str = "student") -> torch.Tensor:
        if student_feat.ndim < 2 or student_feat.shape[1] != self.student_channels:
            raise ValueError(f"student_feat must have shape (B, {self.student_channels}, ...); "
                             f"got {tuple(student_feat.shape)}")
        if student_feat.ndim != teacher_feat.ndim:
            raise ValueError(f"student_feat {tuple(student_feat.shape)} and teacher_feat "
                             f"{tuple(teacher_feat.shape)} must have the same number of dims")
        if item_mask is not None:
            keep = item_mask.to(device=teacher_feat.device, dtype=torch.bool)
            teacher_feat = torch.where(
                keep.reshape(-1, *([1] * (teacher_feat.ndim - 1))), teacher_feat, 0.0
            )
        BF._raise_if_teacher_nonfinite(name, teacher_feat.flatten(1))
        projected = self.project(teacher_feat, tuple(student_feat.shape[2:]))
        return BF.knowledge_projection_loss(student_feat, projected, item_mask=item_mask,
                                            name=name)

    @classmethod
    def from_shapes(cls, teacher_shape, student_shape, **kwargs) -> KnowledgeProjection:
        """Build the projection for a teacher and a student activation shape (B, C, ...).

        Examples
        --------
        >>> KnowledgeProjection.from_shapes((2, 32, 8, 8), (2, 8, 8, 8)).proj.weight.shape
        torch.Size([8, 32])
        """
        return cls(int(teacher_shape[1]), int(student_shape[1]), **kwargs)

    @staticmethod
    def candidate_pairs(teacher_shapes: Mapping[str, tuple[int, ...]],
                        student_shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, str]]:
        """All (teacher layer, student layer) pairs with the same layout (2-D or N-D), best first.

        Order: by spatial mismatch (|log size ratio|, summed over axes), then deeper student
        layers, then deeper teacher layers. The mappings must list layers shallow to deep.

        Examples
        --------
        >>> t = {"t1": (1, 8, 16, 16), "t2": (1, 16, 8, 8)}
        >>> s = {"s1": (1, 4, 16, 16), "s2": (1, 8, 8, 8)}
        >>> KnowledgeProjection.candidate_pairs(t, s)[:2]
        [('t2', 's2'), ('t1', 's1')]
        """
        import math

        t_names, s_names = list(teacher_shapes), list(student_shapes)
        scored = []
        for si, s in enumerate(s_names):
            s_shape = tuple(student_shapes[s])
            for ti, t in enumerate(t_names):
                t_shape = tuple(teacher_shapes[t])
                if len(t_shape) != len(s_shape) or len(s_shape) < 2:
                    continue
                mismatch = sum(abs(math.log(a / b)) for a, b in zip(t_shape[2:], s_shape[2:]))
                scored.append((mismatch, -si, -ti, t, s))
        scored.sort()
        return [(t, s) for *_, t, s in scored]

    @classmethod
    def pick_pair(cls, teacher_shapes: Mapping[str, tuple[int, ...]],
                  student_shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, str]:
        """Default pair without the paper's iterative search.

        The student injection layer is the middle one of the candidate student layers (the
        paper injects into an intermediate layer: deep enough to spare the student's early
        layers, early enough to leave it layers to adapt); the teacher layer is the one whose
        spatial size matches that layer best, the deepest such layer on ties (most abstract
        knowledge at that resolution).

        Examples
        --------
        >>> t = {"t1": (1, 8, 16, 16), "t2": (1, 16, 8, 8), "t3": (1, 32, 4, 4)}
        >>> s = {"s1": (1, 4, 16, 16), "s2": (1, 8, 8, 8), "s3": (1, 8, 4, 4)}
        >>> KnowledgeProjection.pick_pair(t, s)
        ('t2', 's2')
        """
        pairs = cls.candidate_pairs(teacher_shapes, student_shapes)
        if not pairs:
            raise ValueError("no compatible (teacher, student) layer pair: shapes must both be "
                             "(B, C) or both (B, C, *spatial) with the same number of dims")
        students = [s for s in student_shapes if any(p[1] == s for p in pairs)]
        middle = students[(len(students) - 1) // 2]  # the shallower of two middles
        return next(p for p in pairs if p[1] == middle)


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if all(a >= b for a, b in zip(x.shape[2:], size)):
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
        return pool[len(size)](x, size)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def _non_negative_weight(key: str, weight: object) -> float:
    """``float(weight)`` for any real number (NumPy scalars, 0-d tensors too), else a ValueError."""
    try:
        value = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"weights[{key!r}] must be a finite non-negative number; got {weight!r}")
    return value
