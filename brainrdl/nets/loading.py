"""Load a published network by name, with its preprocessing and its default layers.

``load_model("torchvision:resnet50")`` returns ``(model, transform, layers)``: the model in eval
mode, an :class:`ImageTransform` (resize, centre crop, normalisation, and the number of input
channels the model expects) and :func:`brainrdl.nets.layers.list_layers` of the model. Specs:

=============================  ==========================================================
``torchvision:NAME``           ``torchvision.models.get_model(NAME)`` (a dependency)
``timm:NAME``                  ``timm.create_model(NAME)`` (extra ``brainrdl[models]``)
``open_clip:NAME``             the image tower of ``open_clip.create_model(NAME)`` (extra)
``hf:REPO`` or ``hf:FOLDER``   ``transformers.AutoModel`` (base model, no head) of a vision model
``module:PKG.MOD:FUNCTION``    your own factory; the current folder is on the import path
=============================  ==========================================================

**Nothing is downloaded.** ``weights`` is ``None`` (random initialisation), a local file (a state
dict, read with ``torch.load(weights_only=True)`` or safetensors, so no code in it runs), or the
library's own name for its published weights (``"DEFAULT"`` or ``"IMAGENET1K_V2"`` for
torchvision, a timm or open_clip tag such as ``"openai"``, ``"pretrained"`` for Hugging Face),
which is looked up **only in the library's local cache**; a missing file raises
:class:`WeightsNotFoundError` naming the folder the library looks in and how to place the file
there (download it once on a machine with network access, then copy it).

Examples
--------
>>> model, transform, layers = load_model("torchvision:resnet18")
>>> layers
['layer1', 'layer2', 'layer3', 'layer4', 'avgpool', 'fc']
>>> transform.size, transform.channels, model.training
(224, 3, False)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainrdl.nets.layers import list_layers

BACKENDS = ("torchvision", "timm", "open_clip", "hf", "module")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EXTRA = {"timm": "timm", "open_clip": "open_clip_torch", "hf": "transformers"}


class ModelSpecError(ValueError):
    """A model spec that names no backend or no model of it."""


class MissingExtraError(ImportError):
    """The backend's package is not installed (``pip install 'brainrdl[models]'``)."""


class WeightsNotFoundError(FileNotFoundError):
    """Named weights are not in the library's local cache (nothing is downloaded)."""


class WeightsError(ValueError):
    """A weights file that is not a plain state dict, or whose tensors do not fit the model."""


@dataclass(frozen=True)
class ImageTransform:
    """The preprocessing a model expects, applied to one image tensor (C, H, W) in [0, 1].

    Steps: greyscale ↔ RGB conversion to ``channels``; resize of the shorter side to ``resize``;
    centre crop to ``size``; normalisation by ``mean`` and ``std``. A step whose parameter is
    None is skipped (``module:`` models get only the channel conversion unless told more).

    Parameters
    ----------
    size
        Side of the centre crop (None: no crop).
    resize
        Shorter side after resizing (None: ``size`` when given, else no resize).
    mean, std
        Per-channel normalisation (None: none).
    channels
        Input channels of the model: 1 (greyscale) or 3 (RGB); None keeps the image's.
    interpolation
        ``"bilinear"`` or ``"bicubic"``.

    Examples
    --------
    >>> import torch
    >>> t = ImageTransform(size=4, resize=4, mean=(0.5,), std=(0.5,), channels=1)
    >>> tuple(t(torch.ones(3, 8, 6)).shape), float(t(torch.ones(3, 8, 6)).mean())
    ((1, 4, 4), 1.0)
    """

    size: int | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None
    interpolation: str = "bilinear"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        x = to_channels(image, self.channels)
        resize = self.resize if self.resize is not None else self.size
        mode = InterpolationMode(self.interpolation)
        if resize is not None:
            x = F.resize(x, [int(resize)], interpolation=mode, antialias=True)
        if self.size is not None:
            x = F.center_crop(x, [int(self.size), int(self.size)])
        if self.mean is not None and self.std is not None:
            mean = _per_channel(self.mean, x.shape[0])
            std = _per_channel(self.std, x.shape[0])
            x = F.normalize(x, list(mean), list(std))
        return x


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 3 and channels == 1:  # greyscale input to an RGB-normalised model
        return (sum(values) / 3.0,)
    if len(values) == 1:
        return values * channels
    raise ValueError(f"transform: {len(values)} normalisation values for {channels} channels")


def to_channels(image: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Convert an image (C, H, W) or batch (B, C, H, W) between greyscale and RGB.

    RGB → greyscale uses the ITU-R 601 luma weights (as Pillow's ``convert("L")``); greyscale →
    RGB repeats the channel; an alpha channel (4 → 3) is dropped.

    Examples
    --------
    >>> import torch
    >>> tuple(to_channels(torch.ones(1, 2, 2), 3).shape), tuple(to_channels(torch.ones(3, 2, 2), 1).shape)
    ((3, 2, 2), (1, 2, 2))
    """  # noqa: E501
    if channels is None:
        return image
    dim = image.ndim - 3
    have = image.shape[dim]
    if have == 4 and channels != 4:
        image, have = image.narrow(dim, 0, 3), 3
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return image.expand(*image.shape[:dim], 3, *image.shape[dim + 1 :]).contiguous()
    if have == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
        return (image * w.view(3, 1, 1)).sum(dim=dim, keepdim=True)
    raise ValueError(f"stimuli: cannot convert images with {have} channels to {channels}")


def input_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (None when it has none).

    Examples
    --------
    >>> from brainrdl.nets.models import DigitCNN
    >>> input_channels(DigitCNN())
    1
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return int(module.in_channels)
    return None


def load_model(
    spec: str, weights: str | os.PathLike | None = None, **kwargs: Any
) -> tuple[nn.Module, ImageTransform, list[str]]:
    """A network by name, in eval mode, with its preprocessing and default layers.

    Parameters
    ----------
    spec : str
        ``"torchvision:NAME"``, ``"timm:NAME"``, ``"open_clip:NAME"`` (the image tower),
        ``"hf:REPO"`` (or ``"hf:"`` + a local folder with ``config.json``) or
        ``"module:PKG.MOD:FUNCTION"`` (a factory in your code; the current folder is importable).
    weights : str | os.PathLike | None
        None: random initialisation. A path to a local file: a state dict (``.pt``, ``.pth``,
        ``.bin`` read with ``torch.load(weights_only=True)``; ``.safetensors``), optionally under
        a ``"state_dict"`` or ``"model"`` key. Otherwise the library's own name of its published
        weights (``"DEFAULT"``, ``"IMAGENET1K_V1"``, a timm pretrained tag, an open_clip tag such
        as ``"openai"``, ``"pretrained"`` for Hugging Face), read from the local cache only.
    **kwargs : Any
        Passed to the model's constructor (e.g. ``num_classes=10``).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on the CPU.
    transform : ImageTransform
        The model's preprocessing, for one image tensor (C, H, W) in [0, 1].
    layers : list of str
        :func:`brainrdl.list_layers` of the model.

    Raises
    ------
    ModelSpecError
        Unknown backend or model name.
    MissingExtraError
        timm / open_clip / transformers not installed.
    WeightsNotFoundError
        Named weights not in the local cache, or no such weights file.
    WeightsError
        A weights file that is not a plain state dict or does not fit the model.

    Examples
    --------
    >>> model, transform, layers = load_model("torchvision:mobilenet_v3_small", num_classes=5)
    >>> layers[-1], model.training
    ('classifier.3', False)
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelSpecError(
            f"spec must be 'BACKEND:NAME' with BACKEND one of {list(BACKENDS)} (e.g. "
            f"'torchvision:resnet50', 'module:mymodels:make'); got {spec!r}"
        )
    backend, _, name = spec.partition(":")
    if backend not in BACKENDS:
        raise ModelSpecError(
            f"spec {spec!r}: unknown backend {backend!r}; expected one of {list(BACKENDS)}"
        )
    if not name:
        raise ModelSpecError(f"spec {spec!r}: give a model name after '{backend}:'")
    local = _local_weights(weights)
    loader = {
        "torchvision": _torchvision,
        "timm": _timm,
        "open_clip": _open_clip,
        "hf": _hf,
        "module": _module,
    }[backend]
    with _offline():
        model, transform = loader(name, weights, local, dict(kwargs))
    model.eval()
    return model, transform, list_layers(model)


# --------------------------------------------------------------------------------------- weights


def _local_weights(weights: Any) -> Path | None:
    """The weights file when ``weights`` names one; None for a library name or no weights."""
    if weights is None:
        return None
    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and (os.sep in weights or "." in weights or Path(weights).exists())
    ):
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"weights: no such file {str(path.resolve())!r}")
        return path
    if not isinstance(weights, str):
        raise TypeError(
            f"weights must be None, a file path or a library weights name; got {type(weights)}"
        )
    return None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a file without running code from it.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickled objects other than tensors and
    plain containers. A dict nested under ``"state_dict"``, ``"model"`` or ``"model_state"``
    (a training checkpoint) is unwrapped.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save({"state_dict": torch.nn.Linear(2, 3).state_dict()}, path)
    >>> sorted(read_state_dict(path))
    ['bias', 'weight']
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights: no such file {str(path.resolve())!r}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise MissingExtraError(
                f"weights: {str(path)!r} is a safetensors file; pip install safetensors"
            ) from err
        return dict(load_file(str(path)))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"weights: {str(path.resolve())!r} is not a plain weights file (it pickles objects "
            "other than tensors, e.g. a whole model); brainrdl reads weights with "
            "torch.load(weights_only=True) only. Save model.state_dict() instead."
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise WeightsError(
            f"weights: cannot read {str(path.resolve())!r} as a torch file ({err})"
        ) from err
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights: {str(path.resolve())!r} holds a {type(obj).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)"
        )
    return dict(obj)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state-dict file into ``model`` (strict), with a named error on mismatched keys.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> load_weights(torch.nn.Linear(2, 3), path).out_features
    3
    """
    return _load_state(model, read_state_dict(path), path)


def _load_state(model: nn.Module, state: dict, path: str | os.PathLike) -> nn.Module:
    own = model.state_dict()
    if not set(state) & set(own):  # a common prefix ("module." from DDP, "visual." from CLIP)
        for prefix in ("module.", "visual.", "_orig_mod.", "model."):
            stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if set(stripped) & set(own):
                state = stripped
                break
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        raise WeightsError(
            f"weights: {str(Path(path).resolve())!r} does not fit {type(model).__name__}: "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            + ("" if missing or unexpected else f"; {str(err).splitlines()[-1].strip()}")
        ) from err
    return model


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face hub calls made inside answer from the local cache only."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    hub_constants = sys.modules.get("huggingface_hub.constants")
    hub_saved = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    if hub_constants is not None:  # read at import: set the module's copy too
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = hub_saved


def _require(backend: str):
    module = {"timm": "timm", "open_clip": "open_clip", "hf": "transformers"}[backend]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"spec '{backend}:...' needs the {_EXTRA[backend]} package: pip install "
            f"'brainrdl[models]' (or pip install {_EXTRA[backend]})"
        ) from err


def _hub_cached(repo: str, filenames: Sequence[str]) -> Path | None:
    """A file of a Hugging Face repo in the local hub cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:
        return os.path.expanduser("~/.cache/huggingface/hub")


def _not_cached(spec: str, weights: str, where: str, how: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"weights={weights!r} for {spec!r} is not in the local cache: {where}. brainrdl never "
        f"downloads at run time; {how}, or pass weights=<path to a state-dict file>"
    )


# -------------------------------------------------------------------------------------- backends


def _torchvision(name: str, weights: Any, local: Path | None, kwargs: dict):
    import torchvision

    try:
        builder_weights = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError) as err:
        close = [m for m in torchvision.models.list_models() if name.lower() in m][:8]
        raise ModelSpecError(
            f"spec 'torchvision:{name}': torchvision has no model {name!r}"
            + (f"; close: {close}" if close else "; see torchvision.models.list_models()")
        ) from err
    published = builder_weights.DEFAULT
    if weights is not None and local is None:  # a torchvision weights name, from the cache only
        try:
            published = builder_weights[weights] if weights != "DEFAULT" else published
        except KeyError as err:
            raise ModelSpecError(
                f"weights={weights!r}: torchvision's {name} has weights "
                f"{['DEFAULT', *builder_weights.__members__]}"
            ) from err
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        file = hub / os.path.basename(published.url)
        if not file.is_file():
            raise _not_cached(
                f"torchvision:{name}", weights, f"no file {str(file)!r}",
                f"download {published.url} on a machine with network access and copy it to "
                f"{str(hub)!r} (set $TORCH_HOME to move that folder)",
            )  # fmt: skip
        # read here with weights_only=True: torchvision's own loader unpickles without it
        state = read_state_dict(file)
        if name.startswith("densenet"):  # torchvision's renaming of the published keys
            state = _densenet_keys(state)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        _load_state(model, state, file)
    else:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        if local is not None:
            load_weights(model, local)
    t = published.transforms()
    transform = ImageTransform(
        size=_first_int(getattr(t, "crop_size", 224)),
        resize=_first_int(getattr(t, "resize_size", 256)),
        mean=tuple(getattr(t, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(t, "std", IMAGENET_STD)),
        channels=input_channels(model) or 3,
        interpolation=getattr(getattr(t, "interpolation", None), "value", "bilinear"),
    )
    return model, transform


def _densenet_keys(state: dict) -> dict:
    """'norm.1' -> 'norm1' in DenseNet's published files (as torchvision's _load_state_dict)."""
    import re

    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
        r"running_var))$"
    )
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _first_int(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _timm(name: str, weights: Any, local: Path | None, kwargs: dict):
    timm = _require("timm")
    base = name.partition(".")[0]
    if base not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise ModelSpecError(
            f"spec 'timm:{name}': timm has no model {base!r}; see timm.list_models('*{base}*')"
        )
    if weights is not None and local is None:
        full = name if weights in ("DEFAULT", "pretrained") else f"{base}.{weights}"
        cfg = _timm_pretrained_cfg(timm, full)
        file = None
        if cfg.get("hf_hub_id"):
            names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else []
            file = _hub_cached(cfg["hf_hub_id"], [*names, "model.safetensors", "pytorch_model.bin"])
        if file is None and cfg.get("url"):
            candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg["url"])
            file = candidate if candidate.is_file() else None
        if file is None:
            where = (f"Hugging Face repo {cfg.get('hf_hub_id')!r} under {_hub_cache_dir()!r}"
                     if cfg.get("hf_hub_id") else
                     f"{str(Path(torch.hub.get_dir()) / 'checkpoints')!r}")  # fmt: skip
            raise _not_cached(
                f"timm:{name}", weights, f"looked for {where}",
                "run timm.create_model(..., pretrained=True) once on a machine with network "
                "access and copy its cache folder here",
            )  # fmt: skip
        state = read_state_dict(file)
        model = timm.create_model(
            full, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs
        )
    else:
        model = timm.create_model(base, pretrained=False, **kwargs)
        if local is not None:
            load_weights(model, local)
    from timm.data import resolve_data_config

    data = resolve_data_config({}, model=model)
    size = data.get("input_size", (3, 224, 224))
    crop_pct = float(data.get("crop_pct", 0.875) or 1.0)
    transform = ImageTransform(
        size=int(size[-1]),
        resize=round(size[-1] / crop_pct),
        mean=tuple(data.get("mean", IMAGENET_MEAN)),
        std=tuple(data.get("std", IMAGENET_STD)),
        channels=int(size[0]),
        interpolation=data.get("interpolation", "bilinear")
        if data.get("interpolation") in ("bilinear", "bicubic") else "bilinear",
    )  # fmt: skip
    return model, transform


def _timm_pretrained_cfg(timm, full: str) -> dict:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(full)
    if cfg is None:
        tags = timm.list_pretrained(full.split(".")[0] + "*")[:10]
        raise ModelSpecError(f"timm has no pretrained weights {full!r}; available: {tags}")
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))


def _open_clip(name: str, weights: Any, local: Path | None, kwargs: dict):
    open_clip = _require("open_clip")
    if name not in open_clip.list_models():
        raise ModelSpecError(
            f"spec 'open_clip:{name}': open_clip has no model config {name!r}; see "
            "open_clip.list_models()"
        )
    file, tag_cfg = local, {}
    if weights is not None and local is None:
        tag = weights
        if not open_clip.pretrained.is_pretrained_cfg(name, tag):
            raise ModelSpecError(
                f"weights={tag!r}: open_clip's {name} has tags "
                f"{open_clip.list_pretrained_tags_by_model(name)}"
            )
        cfg = tag_cfg = dict(open_clip.get_pretrained_cfg(name, tag))
        file = None
        hub = cfg.get("hf_hub", "")
        if hub:
            repo, filename = os.path.split(hub.rstrip("/")) if hub.count("/") > 1 else (hub, "")
            repo = repo.rstrip("/")
            names = [filename] if filename else []
            file = _hub_cached(repo, [*names, "open_clip_model.safetensors",
                                      "open_clip_pytorch_model.bin"])  # fmt: skip
        if file is None and cfg.get("url"):
            candidate = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
            file = candidate if candidate.is_file() else None
        if file is None:
            raise _not_cached(
                f"open_clip:{name}", tag,
                f"looked for the Hugging Face repo {hub!r} under {_hub_cache_dir()!r}"
                if hub else "looked in '~/.cache/clip'",
                "run open_clip.create_model(name, pretrained=tag) once on a machine with "
                "network access and copy its cache folder here",
            )  # fmt: skip
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "no pretrained weights loaded": we load them ourselves
    try:
        model = open_clip.create_model(name, pretrained=None, **kwargs)
    finally:
        logging.disable(previous)
    visual = model.visual
    if file is not None:  # a full CLIP state dict ("visual." keys) or the image tower's own
        load_weights(visual, file)
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    cfg.update({k: tag_cfg[k] for k in ("mean", "std", "interpolation") if tag_cfg.get(k)})
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = _first_int(size)
    transform = ImageTransform(
        size=size,
        resize=size,
        mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        channels=3,
        interpolation=cfg.get("interpolation", "bicubic")
        if cfg.get("interpolation", "bicubic") in ("bilinear", "bicubic") else "bicubic",
    )  # fmt: skip
    return visual, transform


def _hf(name: str, weights: Any, local: Path | None, kwargs: dict):
    transformers = _require("hf")
    folder = Path(name)
    where = str(folder) if folder.is_dir() else name
    try:
        config = transformers.AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"spec 'hf:{name}': no config.json for {name!r} in the local Hugging Face cache "
            f"({_hub_cache_dir()!r}) and no such folder; brainrdl never downloads at run time: "
            f"run `huggingface-cli download {name}` on a machine with network access and copy "
            "the cache folder here, or give 'hf:<folder with config.json>'"
        ) from err
    if weights is not None and local is None:
        try:
            model = transformers.AutoModel.from_pretrained(where, local_files_only=True, **kwargs)
        except (OSError, ValueError) as err:
            raise _not_cached(
                f"hf:{name}", weights,
                f"no weights file for {name!r} under {_hub_cache_dir()!r}",
                f"run `huggingface-cli download {name}` on a machine with network access",
            ) from err  # fmt: skip
    else:
        model = transformers.AutoModel.from_config(config, **kwargs)
        if local is not None:
            load_weights(model, local)
    size = getattr(config, "image_size", 224)
    size = _first_int(size)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # ViT's defaults when no processor file exists
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(where, local_files_only=True)
        mean = tuple(getattr(processor, "image_mean", mean))
        std = tuple(getattr(processor, "image_std", std))
    except (OSError, ValueError):
        pass
    channels = int(getattr(config, "num_channels", 3))
    transform = ImageTransform(size=size, resize=size, mean=mean, std=std, channels=channels)
    return _HFImageModel(model), transform


class _HFImageModel(nn.Module):
    """A Hugging Face vision model called with a pixel tensor; returns its last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        return out[0] if not isinstance(out, torch.Tensor) else out


def _module(name: str, weights: Any, local: Path | None, kwargs: dict):
    model = build_from_factory(name, **kwargs)
    if weights is not None and local is None:
        raise ModelSpecError(
            f"weights={weights!r}: a 'module:' model takes weights=None or a state-dict file"
        )
    if local is not None:
        load_weights(model, local)
    return model, ImageTransform(channels=input_channels(model))


def build_from_factory(factory: str, **kwargs: Any) -> nn.Module:
    """Call ``"package.module:function"`` and return the ``nn.Module`` it builds.

    The current working folder is put on the import path first, so a ``mymodels.py`` next to
    your data works without ``PYTHONPATH=.``.

    Examples
    --------
    >>> build_from_factory("brainrdl.nets.models:digit_student").fc2.out_features
    10
    """
    module_name, sep, fn = factory.partition(":")
    if not sep or not module_name or not fn:
        raise ModelSpecError(f"factory must be 'package.module:function'; got {factory!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ModelSpecError(
            f"factory {factory!r}: cannot import {module_name!r} ({err}); the module must be "
            f"importable from the current folder ({cwd!r}) or an installed package"
        ) from err
    builder: Callable[..., Any] | None = getattr(module, fn, None)
    if not callable(builder):
        raise ModelSpecError(f"factory {factory!r}: {module_name!r} has no function {fn!r}")
    model = builder(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"factory {factory!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model
