"""Default layers of a network: the block outputs a researcher would compare with brain regions.

:func:`list_layers` picks, from the module tree alone (no forward pass), the outputs of the
network's repeated blocks (residual stages of a ResNet / ConvNeXt, transformer blocks of a ViT,
CLIP or Hugging Face encoder), then its pooled features and its logits when it has them. The rule
is generic: among every group of sibling modules of one class that hold parameters and have
sub-modules of their own (blocks, not single convolutions), the group covering the most
parameters is the backbone's sequence of blocks. ``layers="auto"`` anywhere in brainrdl
(:class:`~brainrdl.nets.taps.LayerTaps`, ``extract_rdms``, ``compare_layers``, ``fit`` through its
taps) means this list.

Transformer blocks output token sequences (B, T, D); tap them with ``reduction="cls"`` (the first,
class token), ``"mean"`` (average over tokens) or ``"flatten"`` (all tokens).

Examples
--------
>>> from brainrdl.nets.models import DigitCNN
>>> list_layers(DigitCNN())
['conv1', 'conv2', 'fc1', 'fc2']
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

# last name components of modules that hold pooled features (torchvision, timm, HF, open_clip)
_POOL_NAMES = ("avgpool", "global_pool", "pooler", "fc_norm", "ln_post", "norm_pre")
# last name components of classifier heads (the logits)
_HEAD_NAMES = ("fc", "head", "classifier", "last_linear")


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / ``torch.compile`` wrappers (as taps.unwrap_model;
    repeated here because taps imports this module)."""
    for _ in range(8):
        inner = getattr(model, "_orig_mod", None) or (
            getattr(model, "module", None)
            if type(model).__name__ in ("DistributedDataParallel", "DataParallel") else None
        )  # fmt: skip
        if not isinstance(inner, nn.Module):
            return model
        model = inner
    return model


def _n_params(module: nn.Module) -> int:
    # a lazy module's parameters have no size until its first forward: count them as one
    return sum(1 if isinstance(p, nn.parameter.UninitializedParameter) else p.numel()
               for p in module.parameters())  # fmt: skip


def _is_block(module: nn.Module) -> bool:
    """A block holds parameters and has sub-modules (a conv or linear alone is not a block)."""
    return any(True for _ in module.children()) and _n_params(module) > 0


def _block_group(model: nn.Module) -> list[str]:
    """Names of the sibling blocks of one class that cover the most parameters.

    Groups within 5 % of the best coverage compete on their number of blocks: a DenseNet's four
    dense blocks rather than the 24 layers of its third block, a ConvNeXt's four stages rather
    than the one ``stages`` container.
    """
    total = max(_n_params(model), 1)
    groups_found: list[tuple[float, int, list[str]]] = []
    for parent_name, parent in model.named_modules():
        groups: dict[type, list[tuple[str, nn.Module]]] = {}
        for child_name, child in parent.named_children():
            if _is_block(child):
                groups.setdefault(type(child), []).append((child_name, child))
        for members in groups.values():
            # a stem or a classifier is not one of the repeated blocks (a ConvNeXt's ``stem`` and
            # ``stages`` are both Sequentials, as are AlexNet's ``features`` and ``classifier``)
            members = [(c, m) for c, m in members if c not in _HEAD_NAMES and c != "stem"]
            if len(members) < 2:
                continue
            coverage = sum(_n_params(m) for _, m in members) / total
            prefix = f"{parent_name}." if parent_name else ""
            groups_found.append((coverage, len(members), [prefix + c for c, _ in members]))
    if not groups_found:
        return []
    best = max(g[0] for g in groups_found)
    close = [g for g in groups_found if g[0] >= best - 0.05]
    return max(close, key=lambda g: g[1])[2]


def _last_named(model: nn.Module, names: Iterable[str], after: list[str],
                kind: type | tuple[type, ...] | None = None) -> str | None:  # fmt: skip
    """The last module (in registration order) whose final name part is in ``names``.

    Modules inside the blocks ``after`` are skipped: a block's own ``fc`` or ``norm`` is not
    the network's pooled output or head.
    """
    names = tuple(names)
    found = None
    for name, module in model.named_modules():
        if not name or any(name == b or name.startswith(b + ".") for b in after):
            continue
        if name.rsplit(".", 1)[-1] in names and (kind is None or isinstance(module, kind)):
            found = name
    return found


def list_layers(model: nn.Module) -> list[str]:
    """The layers ``layers="auto"`` taps: block outputs, pooled features and logits, in order.

    Parameters
    ----------
    model : nn.Module
        Any ``torch.nn.Module`` (wrappers such as DDP or ``torch.compile`` are seen through).

    Returns
    -------
    list of str
        Module paths as in ``model.named_modules()``: the repeated blocks (e.g. ``layer1`` …
        ``layer4`` of a ResNet, ``blocks.0`` … ``blocks.11`` of a ViT), then the pooled features
        (``avgpool``, ``global_pool``, ``pooler``, ``fc_norm``, ``ln_post``) and the classifier
        (``fc``, ``head``, ``classifier``) when present. A model without repeated blocks gives
        its top-level children that hold parameters.

    Raises
    ------
    ValueError
        When the model has no sub-module to tap.

    Examples
    --------
    >>> import torchvision
    >>> list_layers(torchvision.models.resnet18())
    ['layer1', 'layer2', 'layer3', 'layer4', 'avgpool', 'fc']
    """
    inner = _unwrap(model)
    blocks = _block_group(inner)
    if not blocks:  # no repeated blocks: the top-level children that compute something
        blocks = []
        for name, child in inner.named_children():
            if _n_params(child) == 0:
                continue
            # a flat Sequential of convs and pools (AlexNet, VGG ``features``): its pool outputs
            pools = [f"{name}.{c}" for c, m in child.named_children()
                     if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]  # fmt: skip
            blocks.extend(pools if pools and name not in _HEAD_NAMES else [name])
        if not blocks:
            raise ValueError(
                f"list_layers: {type(inner).__name__} has no sub-modules with parameters to tap; "
                "name the layers yourself (module paths as in model.named_modules())"
            )
    out = list(blocks)
    pool = _last_named(inner, _POOL_NAMES, out)
    head = _last_named(inner, _HEAD_NAMES, out, nn.Linear)
    if head is None:  # the last Linear outside the blocks (``fc2`` of a small CNN)
        linears = [n for n, m in inner.named_modules() if isinstance(m, nn.Linear)
                   and not any(n == b or n.startswith(b + ".") for b in out)]  # fmt: skip
        last = list(dict(inner.named_modules()))[-1]
        head = linears[-1] if linears and linears[-1] == last else None
    if head is None:  # a head container (timm's ``head`` module, a Sequential classifier)
        head = _last_named(inner, _HEAD_NAMES, out)
        if head is not None and _n_params(dict(inner.named_modules())[head]) == 0:
            head = None
    for name in (pool, head):
        if name is not None and name not in out and not any(
            name.startswith(b + ".") or b.startswith(name + ".") for b in out
        ):
            out.append(name)
    order = {name: i for i, (name, _) in enumerate(inner.named_modules())}
    return sorted(out, key=order.__getitem__)  # the order of registration (≈ of the forward)


def expand_layers(model: nn.Module, layers: str | Iterable[str]) -> list[str]:
    """Layer names with ``"auto"`` replaced by :func:`list_layers` (one name may be a str).

    Examples
    --------
    >>> from brainrdl.nets.models import DigitCNN
    >>> expand_layers(DigitCNN(), "auto")[:2], expand_layers(DigitCNN(), "fc1")
    (['conv1', 'conv2'], ['fc1'])
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if layers == ["auto"]:
        if "auto" not in dict(_unwrap(model).named_modules()):  # a module really named so
            return list_layers(model)
    return layers
