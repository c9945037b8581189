"""One teacher interface for brains and networks: a batch in, named target RDMs out.

A :class:`Teacher` maps a batch (inputs and stimulus ids) to ``{name: Target}``; a :class:`Target`
holds the (B, B) target RDM on the batch's device and a (B, B) boolean ``pair_mask`` (True where
the pair enters the loss). :class:`BrainTeacher` gathers sub-RDMs of measured RDMs;
:class:`NetworkTeacher` computes RDMs of a frozen network's layers. The losses and
:func:`brainrdl.fit` only use this protocol, never the concrete kind.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from brainrdl.nets.taps import LayerTaps
from brainrdl.rsa.distances import TENSOR_METHODS, pairwise_rdm
from brainrdl.validation import check_choice, check_distinct_ids


@dataclass
class Target:
    """A target for one batch: RDM, which pairs count, and (for networks) the teacher's features.

    Attributes
    ----------
    rdm
        (B, B) target dissimilarities; masked pairs hold 0 (never NaN).
    pair_mask
        (B, B) bool, True for pairs that enter the loss (off-diagonal, both stimuli covered,
        target finite).
    features
        (B, D) teacher features (NetworkTeacher only) for feature-based losses (PKT, CKA, KP, KD);
        (B, ...) in the layer's own shape when the teacher's reduction is ``"none"``.
    distance
        Dissimilarity measure of ``rdm`` when it is computed from ``features``, else None.
    covered
        (B,) bool, True for items whose stimulus the target covers (BrainTeacher), else None
        (every item counts).
    maps
        (B, ...) unreduced teacher activations (NetworkTeacher only), e.g. conv maps
        (B, C, H, W) for a :class:`brainrdl.train.losses.KnowledgeProjection`; else None.

    Examples
    --------
    >>> import torch
    >>> t = Target(torch.zeros(2, 2), ~torch.eye(2, dtype=torch.bool))
    >>> int(t.pair_mask.sum())
    2
    """

    rdm: torch.Tensor
    pair_mask: torch.Tensor
    features: torch.Tensor | None = None
    distance: str | None = None
    covered: torch.Tensor | None = None
    maps: torch.Tensor | None = None


@runtime_checkable
class Teacher(Protocol):
    """Anything that maps a batch to named targets.

    ``inputs`` is the batch given to the student (a tensor; used for its device and dtype by
    brain teachers, as input by network teachers); ``stimulus_ids`` names each item (needed by
    brain teachers; may be None for network teachers).
    """

    names: list[str]

    def targets(
        self, inputs: torch.Tensor | None, stimulus_ids: Any = None
    ) -> dict[str, Target]:  # pragma: no cover - protocol
        ...


class BrainTeacher:
    """Targets gathered from measured RDMs (rsatoolbox ``RDMs``) for the batch's stimulus ids.

    Parameters
    ----------
    rdms : Any
        ``rsatoolbox.rdm.RDMs`` (one or several RDMs), a list of them, or a dict
        ``{target_name: RDMs}``. Each RDM is read in its own stimulus order; RDMs may list
        different stimuli (pairs an RDM lacks are NaN for it; averaging skips them, and pairs no
        RDM of a target covers are masked). Every RDM must be symmetric.
    stimulus_ids : Sequence[Hashable] | None
        The id of each RDM condition, in order (ints or strings), shared by every RDM. Default:
        each RDM's own pattern descriptor ``pattern_descriptor`` (``"stimulus"``), else its
        ``"index"``; the teacher's ids are their union, in first-seen order.
    target_names : str | Sequence[str] | None
        How RDMs are named: an rdm-descriptor key (e.g. ``"roi"``), or one name per RDM.
        Default: ``"roi"`` when present, else ``"brain"`` (all RDMs one target). Ignored for a dict.
    subject_descriptor : str | None
        rdm-descriptor key holding the subject, for ``combine="per_subject"``.
    combine : str
        ``"mean"``: RDMs sharing a name (subjects, sessions) are averaged, ignoring NaN;
        ``"per_subject"``: one target per name and subject, named ``"{name}/{subject}"``.
    pattern_descriptor : str
        Pattern descriptor read for the default ``stimulus_ids``.

    Examples
    --------
    >>> import numpy as np, torch, rsatoolbox
    >>> d = rsatoolbox.rdm.RDMs(np.arange(1.0, 7.0)[None], rdm_descriptors={"roi": ["IT"]},
    ...                         pattern_descriptors={"stimulus": [10, 11, 12, 13]})
    >>> teacher = BrainTeacher(d)
    >>> t = teacher.targets(torch.zeros(3, 5), torch.tensor([13, 10, 99]))["IT"]
    >>> t.rdm.tolist(), t.pair_mask[0, 1].item(), t.pair_mask[0, 2].item()
    ([[0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], True, False)
    """

    def __init__(
        self,
        rdms: Any,
        stimulus_ids: Sequence[Hashable] | None = None,
        *,
        target_names: str | Sequence[str] | None = None,
        subject_descriptor: str | None = None,
        combine: str = "mean",
        pattern_descriptor: str = "stimulus",
    ) -> None:
        check_choice("combine", combine, ("mean", "per_subject"))
        if combine == "per_subject" and subject_descriptor is None:
            raise ValueError(
                "combine='per_subject' needs subject_descriptor (an rdm descriptor key)"
            )
        groups = _as_groups(rdms, target_names)
        members = [(name, m) for name, group in groups.items() for m, _ in group]
        if stimulus_ids is not None:
            ids = [_plain(i) for i in stimulus_ids]
            if len(set(ids)) != len(ids):
                raise ValueError("stimulus_ids must be distinct; got repeated ids")
            for name, m in members:
                if int(m.n_cond) != len(ids):
                    raise ValueError(
                        f"stimulus_ids has {len(ids)} ids but the RDMs of target {name!r} cover "
                        f"{m.n_cond} conditions (explicit ids apply to every RDM, in order)"
                    )
            own = [ids] * len(members)
        else:
            has = [pattern_descriptor in m.pattern_descriptors for _, m in members]
            if any(has) and not all(has):
                name = members[has.index(False)][0]
                raise ValueError(
                    f"rdms: target {name!r} has no pattern descriptor {pattern_descriptor!r} "
                    "while other RDMs do, so its stimuli cannot be matched to theirs; give every "
                    "RDM that descriptor or pass stimulus_ids"
                )
            own = [_own_ids(m, name, pattern_descriptor) for name, m in members]
            ids = list(dict.fromkeys(i for row in own for i in row))  # union, first-seen order
        n = len(ids)
        self.stimulus_ids: list[Hashable] = ids
        self._index = {sid: i for i, sid in enumerate(ids)}
        # integer ids get a lookup table, so a batch maps to rows with one gather on device
        self._int_ids = all(isinstance(i, int) and 0 <= i < 10_000_000 for i in ids)
        lut = torch.full((max(ids) + 1 if self._int_ids else 0,), -1, dtype=torch.long)
        if self._int_ids:
            lut[torch.tensor(ids)] = torch.arange(n)
        self._lut = lut

        # every RDM is placed into the teacher's id order once (NaN where it has no stimulus),
        # so RDMs listing stimuli in different orders or sets average pair by pair
        placed: dict[str, list[tuple[np.ndarray, np.ndarray, Any]]] = {}
        for (name, m), row in zip(members, own):
            mat = np.asarray(m.get_matrices(), dtype=np.float64)[0]
            if not np.allclose(mat, mat.T, equal_nan=True):
                raise ValueError(
                    f"rdms: the RDM of target {name!r} is not symmetric; a target RDM must be "
                    "(make it symmetric, e.g. (D + D.T) / 2, before building the teacher)"
                )
            pos = np.array([self._index[i] for i in row], dtype=np.intp)
            full = np.full((n, n), np.nan)
            full[np.ix_(pos, pos)] = mat
            covers = np.zeros(n, dtype=bool)
            covers[pos] = True
            subj = _descriptor(m, subject_descriptor, name)[0] if combine != "mean" else None
            placed.setdefault(name, []).append((full, covers, subj))

        names, mats, cover_rows = [], [], []
        for name, group in placed.items():
            subjects = [None] if combine == "mean" else list(dict.fromkeys(g[2] for g in group))
            for subj in subjects:
                chosen = [g for g in group if combine == "mean" or g[2] == subj]
                names.append(name if combine == "mean" else f"{name}/{subj}")
                mats.append(_nanmean(np.stack([g[0] for g in chosen])))
                cover_rows.append(np.any([g[1] for g in chosen], axis=0))
        for name, mat in zip(names, mats):
            _refuse_degenerate(mat, f"rdms: target {name!r}")
        self.names: list[str] = names
        self.rdms = torch.as_tensor(np.stack(mats), dtype=torch.float64)  # (T, N, N)
        # which stimuli each target covers (T, N): targets may cover different sets
        self.covers = torch.as_tensor(np.stack(cover_rows))
        self._cache: dict[
            tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
        ] = {}

    def indices(self, stimulus_ids: Any, device: torch.device | None = None) -> torch.Tensor:
        """Row of each batch id in the RDMs, -1 where an id is not covered (a LongTensor).

        Examples
        --------
        >>> import numpy as np, rsatoolbox
        >>> d = rsatoolbox.rdm.RDMs(np.array([[1.0, 2.0, 3.0]]),
        ...                         pattern_descriptors={"stimulus": ["a", "b", "c"]})
        >>> BrainTeacher(d).indices(["c", "x"]).tolist()
        [2, -1]
        """
        if isinstance(stimulus_ids, torch.Tensor) and not torch.is_floating_point(stimulus_ids):
            ids = stimulus_ids.reshape(-1)
            if not self._int_ids:
                return torch.tensor(
                    [self._index.get(int(i), -1) for i in ids.tolist()], device=ids.device
                )
            lut = self._lut.to(ids.device)
            inside = (ids >= 0) & (ids < lut.numel())
            return torch.where(inside, lut[ids.clamp(0, max(lut.numel() - 1, 0))], -1)
        if stimulus_ids is None:
            raise ValueError("stimulus_ids are required by a BrainTeacher (one id per item)")
        rows = [self._index.get(_plain(i), -1) for i in stimulus_ids]
        return torch.tensor(rows, dtype=torch.long, device=device)

    def targets(self, inputs: torch.Tensor | None, stimulus_ids: Any = None) -> dict[str, Target]:
        """Sub-RDMs for the batch: ``{name: Target}`` on the batch's device.

        ``inputs`` only sets device and dtype (float32 when None); pairs with an uncovered id or
        a NaN target are masked out.
        """
        device = inputs.device if isinstance(inputs, torch.Tensor) else None
        if device is None and isinstance(stimulus_ids, torch.Tensor):
            device = stimulus_ids.device
        device = device or torch.device("cpu")
        dtype = (
            inputs.dtype
            if isinstance(inputs, torch.Tensor) and torch.is_floating_point(inputs)
            else torch.get_default_dtype()
        )
        idx = self.indices(stimulus_ids, device).to(device)
        b = idx.numel()
        if isinstance(inputs, torch.Tensor) and inputs.ndim > 0 and inputs.shape[0] != b:
            raise ValueError(
                f"stimulus_ids has {b} ids but inputs hold {inputs.shape[0]} items; "
                "give one id per item"
            )
        covered = idx >= 0
        n_covered = int(covered.sum())
        if n_covered < min(2, b):
            raise ValueError(self._uncovered_message(stimulus_ids, covered, n_covered))
        rdms, finite, covers = self._on(device, dtype)
        safe = idx.clamp_min(0)
        sub = rdms[:, safe[:, None], safe[None, :]]  # (T, B, B): one gather, no Python loop
        ok = finite[:, safe[:, None], safe[None, :]]
        pair = covered[:, None] & covered[None, :]
        pair &= ~torch.eye(b, dtype=torch.bool, device=device)
        mask = ok & pair
        sub = sub.masked_fill(~mask, 0.0)
        items = covers[:, safe] & covered  # (T, B): the stimuli each target covers
        return {
            name: Target(sub[k], mask[k], covered=items[k]) for k, name in enumerate(self.names)
        }

    def subset(self, stimulus_ids: Iterable[Hashable]) -> BrainTeacher:
        """A teacher restricted to ``stimulus_ids`` (e.g. the training fold of a split).

        The targets are the sub-RDMs on those stimuli, in the given order; every other id is
        uncovered (masked out of the loss, and refused as a held-out id). Ids are matched as
        :meth:`indices` matches them (``3``, ``np.int64(3)`` and ``tensor(3)`` are one id).

        Parameters
        ----------
        stimulus_ids : Iterable[Hashable]
            Distinct ids the teacher covers; each must be one of ``self.stimulus_ids``.

        Returns
        -------
        BrainTeacher
            A new teacher; this one is unchanged.

        Examples
        --------
        >>> import numpy as np, rsatoolbox
        >>> d = rsatoolbox.rdm.RDMs(np.arange(1.0, 7.0)[None],
        ...                         pattern_descriptors={"stimulus": [10, 11, 12, 13]})
        >>> train = BrainTeacher(d).subset([13, 10, 12])
        >>> train.stimulus_ids, train.indices([10, 11]).tolist()
        ([13, 10, 12], [1, -1])
        """
        import copy

        ids = check_distinct_ids("stimulus_ids", [_plain(i) for i in stimulus_ids])
        missing = [i for i in ids if i not in self._index]
        if missing:
            raise ValueError(
                f"stimulus_ids: {missing[:10]}{' ...' if len(missing) > 10 else ''} are not "
                f"stimuli of this teacher (it has {len(self.stimulus_ids)}, e.g. "
                f"{self.stimulus_ids[:3]})"
            )
        pos = torch.tensor([self._index[i] for i in ids], dtype=torch.long)
        new = copy.copy(self)  # keeps options other code may have added; tensors are replaced
        new.stimulus_ids = ids
        new._index = {sid: i for i, sid in enumerate(ids)}
        new._int_ids = all(isinstance(i, int) and 0 <= i < 10_000_000 for i in ids)
        lut = torch.full((max(ids) + 1 if new._int_ids else 0,), -1, dtype=torch.long)
        if new._int_ids:
            lut[torch.tensor(ids)] = torch.arange(len(ids))
        new._lut = lut
        new.rdms = self.rdms[:, pos][:, :, pos].clone()
        new.covers = self.covers[:, pos].clone()
        new._cache = {}
        return new

    def _uncovered_message(self, stimulus_ids: Any, covered: torch.Tensor, n_covered: int) -> str:
        b = covered.numel()
        first = int((~covered).nonzero()[0, 0])
        example = stimulus_ids[first]
        example = _plain(example.reshape(-1)[0] if isinstance(example, torch.Tensor) else example)
        ours = self.stimulus_ids[0]
        head = (
            f"none of the batch's {b} ids are covered"
            if n_covered == 0
            else f"only {n_covered} of the batch's {b} ids is covered (a pair needs 2)"
        )
        return (
            f"stimulus_ids: {head} by the teacher; e.g. "
            f"{example!r} ({type(example).__name__}) vs teacher ids {ours!r} "
            f"({type(ours).__name__}). Pass the ids the teacher's RDMs list, not positions"
        )

    def _on(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._cache:
            finite = torch.isfinite(self.rdms)
            self._cache[key] = (
                self.rdms.nan_to_num(0.0).to(device=device, dtype=dtype),
                finite.to(device),
                self.covers.to(device),
            )
        return self._cache[key]

    def __repr__(self) -> str:
        return f"BrainTeacher(names={self.names}, n_stimuli={len(self.stimulus_ids)})"


class NetworkTeacher:
    """A frozen network whose tapped layers give target RDMs (and features) for each batch.

    Parameters
    ----------
    model : nn.Module
        The teacher; set to eval mode with gradients off (its parameters are frozen in place).
    layers : Iterable[str]
        Module paths of the layers that serve as targets; the target names are these paths unless
        ``target_names`` maps them to other names.
    distance : str
        RDM measure for the targets (see :func:`brainrdl.pairwise_rdm`).
    reduction, projection_dim, seed
        Passed to :class:`brainrdl.nets.taps.LayerTaps`; they shape ``Target.features``. With
        ``"none"`` the features keep the layer's shape (B, ...) and the RDM is computed from them
        flattened. Either way ``Target.maps`` holds the unreduced activations (B, ...), which
        :func:`brainrdl.fit` gives to a :class:`brainrdl.train.losses.KnowledgeProjection`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> teacher = NetworkTeacher(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), ["1"])
    >>> t = teacher.targets(torch.randn(5, 4))["1"]
    >>> tuple(t.rdm.shape), tuple(t.features.shape), t.rdm.requires_grad
    ((5, 5), (5, 8), False)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str],
        *,
        distance: str = "euclidean",
        target_names: Mapping[str, str] | None = None,
        reduction: str | Mapping[str, str] = "flatten",
        projection_dim: int | None = None,
        seed: int = 0,
    ) -> None:
        self.distance = check_choice("distance", distance, TENSOR_METHODS)
        self.model = model.eval().requires_grad_(False)
        self.taps = LayerTaps(
            model,
            layers,
            reduction=reduction,
            projection_dim=projection_dim,
            seed=seed,
            detach=True,
            keep_raw=True,
        )
        target_names = dict(target_names or {})
        unknown = sorted(set(target_names) - set(self.taps.layers))
        if unknown:
            raise KeyError(f"target_names maps layers that are not tapped: {unknown}")
        self._name_of = {layer: target_names.get(layer, layer) for layer in self.taps.layers}
        self.names: list[str] = list(self._name_of.values())
        self.output: torch.Tensor | None = None
        self._checked = False  # the first batch's RDMs are checked for degenerate layers

    @torch.no_grad()
    def targets(self, inputs: torch.Tensor | None, stimulus_ids: Any = None) -> dict[str, Target]:
        """Run the frozen teacher on ``inputs`` (eval mode, no grad) and return its layer RDMs."""
        if not isinstance(inputs, torch.Tensor):
            raise TypeError("inputs must be a tensor: a NetworkTeacher computes on the batch")
        if self.model.training:  # fit() may have called .train() on a shared parent module
            self.model.eval()
        param = next(self.model.parameters(), None)
        x = inputs if param is None else inputs.to(param.device)
        feats = self.taps.extract(x)
        raw = dict(self.taps.raw)
        self.output = self.taps.output
        b = inputs.shape[0]
        mask = ~torch.eye(b, dtype=torch.bool, device=inputs.device)
        out = {}
        for layer, name in self._name_of.items():
            f = feats[layer].to(inputs.device)
            rdm = pairwise_rdm(f.reshape(b, -1), self.distance)
            maps = raw[layer].to(inputs.device)
            out[name] = Target(rdm, mask, f, self.distance, maps=maps)
            if not self._checked and b >= 3:  # once, on the first batch that has 3 pairs
                _refuse_degenerate(rdm.double().cpu().numpy(), f"NetworkTeacher layer {layer!r}")
        self._checked = self._checked or b >= 3
        return out

    def close(self) -> None:
        """Remove the teacher's hooks."""
        self.taps.close()

    def __repr__(self) -> str:
        return f"NetworkTeacher(layers={self.taps.layers}, distance={self.distance!r})"


def _refuse_degenerate(rdm: np.ndarray, where: str) -> None:
    """Refuse a target RDM with no finite off-diagonal entry, or with all of them equal.

    Such a target carries no geometry: every alignment term against it is 0 or undefined.

    Examples
    --------
    >>> _refuse_degenerate(np.ones((3, 3)) - np.eye(3), "rdms")
    Traceback (most recent call last):
    ...
    ValueError: rdms: the target RDM is constant (every dissimilarity 1); ...
    """
    off = rdm[~np.eye(len(rdm), dtype=bool)]
    finite = off[np.isfinite(off)]
    if finite.size == 0:
        raise ValueError(
            f"{where}: the target RDM has no finite dissimilarity (all NaN or infinite); "
            "it cannot guide training: check the RDMs (or the teacher layer) it was built from"
        )
    if float(finite.max() - finite.min()) <= 1e-12 * max(1.0, float(np.abs(finite).max())):
        raise ValueError(
            f"{where}: the target RDM is constant (every dissimilarity {float(finite[0]):.6g}); "
            "a constant target carries no geometry to align to (a dead or saturated layer?)"
        )


def _as_groups(rdms: Any, target_names: str | Sequence[str] | None) -> dict[str, list]:
    """{target name: [(single-RDM RDMs object, position)]} from the accepted ``rdms`` forms."""
    if isinstance(rdms, Mapping):
        groups = {str(k): [(r, i) for i, r in enumerate(_split(v))] for k, v in rdms.items()}
    else:
        objs = list(rdms) if isinstance(rdms, (list, tuple)) else [rdms]
        singles = [s for o in objs for s in _split(o)]
        if target_names is None:
            has_roi = all("roi" in s.rdm_descriptors for s in singles)
            names = [str(s.rdm_descriptors["roi"][0]) if has_roi else "brain" for s in singles]
        elif isinstance(target_names, str):
            names = [str(_descriptor(s, target_names, "rdms")[0]) for s in singles]
        else:
            names = [str(n) for n in target_names]
            if len(names) != len(singles):
                raise ValueError(
                    f"target_names has {len(names)} names but rdms hold {len(singles)} RDMs"
                )
        groups = {}
        for i, (name, s) in enumerate(zip(names, singles)):
            groups.setdefault(name, []).append((s, i))
    if not groups:
        raise ValueError("rdms must hold at least one RDM")
    return groups


def _split(obj: Any) -> list:
    if not hasattr(obj, "get_matrices") or not hasattr(obj, "n_rdm"):
        raise TypeError(f"rdms must be rsatoolbox RDMs (or a list/dict of them); got {type(obj)}")
    return [obj[i] for i in range(obj.n_rdm)]


def _descriptor(rdm_obj: Any, key: str, where: str) -> list:
    if key not in rdm_obj.rdm_descriptors:
        raise KeyError(
            f"rdm descriptor {key!r} not found in {where}; available: "
            f"{sorted(rdm_obj.rdm_descriptors)}"
        )
    return list(rdm_obj.rdm_descriptors[key])


def _own_ids(rdm_obj: Any, name: str, pattern_descriptor: str) -> list[Hashable]:
    """The stimulus id of each condition of one RDM, checked: one per condition, distinct."""
    n_cond = int(rdm_obj.n_cond)
    pd_ = rdm_obj.pattern_descriptors
    raw = pd_.get(pattern_descriptor, pd_.get("index", list(range(n_cond))))
    ids = [_plain(i) for i in raw]
    if len(ids) != n_cond:
        raise ValueError(
            f"rdms: target {name!r} lists {len(ids)} stimulus ids for {n_cond} conditions"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"rdms: target {name!r} lists repeated stimulus ids; ids must be distinct")
    return ids


def _nanmean(stack: np.ndarray) -> np.ndarray:
    """Mean over the first axis ignoring NaN; all-NaN entries stay NaN (masked later)."""
    count = np.isfinite(stack).sum(axis=0)
    total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _plain(value: Any) -> Hashable:
    """NumPy / torch scalars -> Python scalars, so 3, np.int64(3) and tensor(3) are one id."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value
