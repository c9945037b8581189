"""Layer taps: capture named layers' activations with forward hooks, as (B, D) feature matrices.

Reduction ``"none"`` keeps an activation's own shape (B, ...), e.g. a conv map (B, C, H, W), for
losses that need the layout (:class:`brainrdl.train.losses.KnowledgeProjection`).

Hooks are registered once, at construction, and stay until :meth:`LayerTaps.close` (or the end of a
``with`` block); recording is switched with the :attr:`LayerTaps.capture` flag instead of adding and
removing hooks, so a ``torch.compile``-d model is not re-traced each step. Layers are named by
module path as in ``model.named_modules()`` (``"layer3.1.conv2"``); a ``DistributedDataParallel`` or
``torch.compile`` wrapper is seen through, so the same names work on the wrapped model.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from brainrdl.nets.layers import expand_layers
from brainrdl.validation import check_choice, check_scalar

REDUCTIONS = ("flatten", "avgpool", "random_projection", "none", "cls", "mean")
# reductions of token sequences (B, T, D) from transformer blocks; other shapes are flattened
TOKEN_REDUCTIONS = ("cls", "mean", "flatten")
DEFAULT_PROJECTION_DIM = 1024

# attributes under which common wrappers keep the wrapped model (DDP / DataParallel, torch.compile)
_WRAPPER_ATTRS = ("module", "_orig_mod")
_WRAPPER_TYPES = frozenset({"DistributedDataParallel", "DataParallel", "OptimizedModule"})


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers.

    Examples
    --------
    >>> from torch import nn
    >>> inner = nn.Linear(2, 2)
    >>> unwrap_model(nn.DataParallel(inner)) is inner
    True
    """
    seen = 0
    while seen < 8:  # wrappers can nest (compile of DDP); a bound keeps a cycle from hanging
        wrapped = None
        if type(model).__name__ in _WRAPPER_TYPES:
            for attr in _WRAPPER_ATTRS:
                candidate = getattr(model, attr, None)
                if isinstance(candidate, nn.Module):
                    wrapped = candidate
                    break
        if wrapped is None:
            return model
        model, seen = wrapped, seen + 1
    return model


def resolve_layers(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """Map each layer name to its module; an unknown name raises a KeyError listing close names.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> list(resolve_layers(net, ["0"]))
    ['0']
    """
    inner = unwrap_model(model)
    modules = dict(inner.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"layers must be module-path strings; got {name!r}")
        # accept names written for the wrapper too ("module.layer1" on a DDP model)
        key = name
        for attr in _WRAPPER_ATTRS:
            if key not in modules and key.startswith(attr + "."):
                key = key[len(attr) + 1 :]
        if key not in modules or key == "":
            valid = [n for n in modules if n]
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
            hint = f"did you mean {close}? " if close else ""
            shown = valid if len(valid) <= 30 else [*valid[:30], f"... ({len(valid)} in all)"]
            raise KeyError(
                f"layers: no module named {name!r} in {type(inner).__name__}; {hint}"
                f"valid names: {shown}"
            )
        resolved[name] = modules[key]
    if not resolved:
        raise ValueError("layers must name at least one module; got an empty list")
    return resolved


class LayerTaps:
    """Record the activations of named layers on each forward pass, reduced to (B, D) matrices.

    Parameters
    ----------
    model : nn.Module
        Any ``torch.nn.Module``; may be wrapped in DDP / DataParallel / ``torch.compile``.
    layers : Iterable[str]
        Module paths as in ``model.named_modules()``, e.g. ``["layer2", "layer3.1.conv2"]``, or
        ``"auto"``: the block outputs, pooled features and logits of
        :func:`brainrdl.nets.layers.list_layers`.
    reduction : str | Mapping[str, str]
        ``"flatten"`` (default): all non-batch dims flattened; ``"avgpool"``: global average over
        spatial dims (dims ≥ 2), giving (B, C); ``"random_projection"``: flatten, then multiply by
        a fixed Gaussian matrix (D, k) / √k, seeded, for layers too large for a Gram product;
        ``"none"``: the activation unchanged, (B, ...) (a 1-D output becomes (B, 1)), e.g. a conv
        map (B, C, H, W) for a :class:`brainrdl.train.losses.KnowledgeProjection`. For token
        sequences (B, T, D) of transformer blocks: ``"cls"`` keeps the first (class) token,
        ``"mean"`` averages over tokens (outputs of other shapes are flattened by both). A dict
        maps layer name to reduction (layers not in it use ``"flatten"``).
    projection_dim : int | None
        k for ``"random_projection"`` (default 1024).
    seed : int
        Seed of the projection matrices (layer i uses ``seed + i``): the same on every process.
    detach : bool
        Store detached activations (no autograd graph): for frozen teachers and analysis. Keep
        False for a student whose alignment loss must backpropagate.
    keep_raw : bool
        Also store each layer's unreduced activation (B, ...) in :attr:`raw` (a teacher whose
        conv maps feed a :class:`brainrdl.train.losses.KnowledgeProjection`).

    Attributes
    ----------
    activations : dict[str, torch.Tensor]
        Layer name -> (B, D) tensor from the most recent forward pass with ``capture`` on
        ((B, ...) for reduction ``"none"``).
    raw : dict[str, torch.Tensor]
        Layer name -> unreduced (B, ...) activation of that pass; filled only with ``keep_raw``.
    capture : bool
        While False the hooks return at once and record nothing.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    >>> with LayerTaps(net, ["1"], reduction="avgpool") as taps:
    ...     _ = net(torch.randn(5, 1, 8, 8))
    ...     tuple(taps.activations["1"].shape)
    (5, 4)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str],
        *,
        reduction: str | Mapping[str, str] = "flatten",
        projection_dim: int | None = None,
        seed: int = 0,
        detach: bool = False,
        keep_raw: bool = False,
    ) -> None:
        layers = expand_layers(unwrap_model(model), layers)  # "auto" -> list_layers(model)
        self.model = model
        self._modules = resolve_layers(model, list(layers))
        self.layers: list[str] = list(self._modules)
        self.reductions = self._check_reductions(reduction)
        check_scalar("projection_dim", projection_dim, int, min_val=1, allow_none=True)
        self.projection_dim = projection_dim or DEFAULT_PROJECTION_DIM
        self.seed = int(seed)
        self.detach = bool(detach)
        self.keep_raw = bool(keep_raw)
        self.capture = True
        self.activations: dict[str, torch.Tensor] = {}
        self.raw: dict[str, torch.Tensor] = {}
        self.output: Any = None
        self._projections: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._make_hook(name))
            for name, module in self._modules.items()
        ]

    def _check_reductions(self, reduction: str | Mapping[str, str]) -> dict[str, str]:
        if isinstance(reduction, str):
            check_choice("reduction", reduction, REDUCTIONS)
            return dict.fromkeys(self.layers, reduction)
        unknown = sorted(set(reduction) - set(self.layers))
        if unknown:
            raise KeyError(f"reduction names layers that are not tapped: {unknown}")
        out = {}
        for name in self.layers:
            out[name] = check_choice(
                f"reduction[{name!r}]", reduction.get(name, "flatten"), REDUCTIONS
            )
        return out

    def _make_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self.capture:
                return
            out = _first_tensor(output, name)
            if self.detach:
                out = out.detach()
            if self.keep_raw:
                self.raw[name] = out if out.ndim > 1 else out.unsqueeze(1)
            self.activations[name] = self.reduce(name, out)

        return hook

    def reduce(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Apply layer ``name``'s reduction to a raw activation ``x`` of shape (B, ...)."""
        how = self.reductions[name]
        if x.ndim == 1:
            x = x.unsqueeze(1)
        if how == "none":
            return x
        if how in ("cls", "mean") and x.ndim == 3:  # (B, T, D) tokens of a transformer block
            return x[:, 0] if how == "cls" else x.mean(dim=1)
        if how == "avgpool" and x.ndim > 2:
            return x.mean(dim=tuple(range(2, x.ndim)))
        flat = x.reshape(x.shape[0], -1)
        if how == "random_projection":
            return flat @ self._projection(name, flat)
        return flat

    def _projection(self, name: str, flat: torch.Tensor) -> torch.Tensor:
        key = (name, flat.device, flat.dtype)
        proj = self._projections.get(key)
        if proj is None or proj.shape[0] != flat.shape[1]:
            # drawn on CPU from a seeded generator: the same matrix on every device and process
            gen = torch.Generator().manual_seed(self.seed + self.layers.index(name))
            k = self.projection_dim
            proj = torch.randn(flat.shape[1], k, generator=gen, dtype=torch.float64)
            proj = (proj / math.sqrt(k)).to(device=flat.device, dtype=flat.dtype)
            self._projections[key] = proj
        return proj

    def extract(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Run the model on the inputs and return the captured activations (a new dict).

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        >>> sorted(LayerTaps(net, ["0", "1"], detach=True).extract(torch.randn(2, 3)))
        ['0', '1']
        """
        previous, self.capture = self.capture, True
        try:
            self.activations, self.raw = {}, {}
            self.output = self.model(*args, **kwargs)
        finally:
            self.capture = previous
        missing = [n for n in self.layers if n not in self.activations]
        if missing:
            raise RuntimeError(f"layers {missing} were not called during the forward pass")
        return dict(self.activations)

    def clear(self) -> None:
        """Drop the stored activations (and their graphs)."""
        self.activations, self.raw = {}, {}

    def close(self) -> None:
        """Remove the hooks; the taps record nothing afterwards."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has removed the hooks."""
        return not self._handles

    def __enter__(self) -> LayerTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LayerTaps(layers={self.layers}, reductions={self.reductions}, detach={self.detach})"
        )


def _first_tensor(output: Any, name: str) -> torch.Tensor:
    """The tensor a layer returned (first tensor of a tuple/list output, e.g. an LSTM)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"layer {name!r} returned {type(output).__name__}, not a tensor to tap")
