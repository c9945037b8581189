"""The ``brainrdl train`` config: one schema, checked before anything runs, printed as the default.

A config is a TOML file (YAML when PyYAML is installed) with a few top-level keys (``epochs``,
``seed``, ``precision``, ``device``, ``threads``) and one table per part of the run: ``[model]``,
``[data]`` (task data), ``[teacher]`` (brain RDMs or a network), ``[alignment.<layer>]`` (one table
per student layer: target, loss from :data:`brainrdl.train.registry.LOSSES`, weight, loss options),
``[training]`` (warm-up, mix ratio, brain-batch size), ``[optimizer]``, ``[schedule]``,
``[checkpoint]``, ``[heldout]`` and ``[log]``.

:data:`SCHEMA` is written once and serves three jobs: :func:`validate` checks a parsed config
against it (unknown keys, wrong types, values out of range, missing paths; every problem is listed
with the key it concerns, e.g. ``[alignment.fc1] weight: expected a number ≥ 0, got "x"``),
:func:`resolve` fills in the defaults, and :func:`default_config_text` prints it as a commented
config that trains on the embedded demo data as printed.

This module reads files and checks values only; it builds nothing (see
:mod:`brainrdl.runs.runner`).

Examples
--------
>>> cfg = validate(parse_text(default_config_text()))
>>> cfg["epochs"], cfg["model"]["spec"], cfg["alignment"]["fc1"]["target"]
(4, 'demo:digitcnn', 'IT')
>>> validate({"epochs": 2, "alignment": {"fc1": {"target": "IT", "weight": "x"}}})
Traceback (most recent call last):
...
brainrdl.train.config.ConfigError: 1 problem in the config:
  [alignment.fc1] weight: expected a number ≥ 0, got "x"
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ALIGNMENT_KEYS",
    "DEMO_MODELS",
    "SCHEMA",
    "ConfigError",
    "Key",
    "default_config_text",
    "dumps_toml",
    "load_config",
    "parse_text",
    "resolve",
    "validate",
]


class ConfigError(ValueError):
    """A config that does not match the schema; ``errors`` lists one message per problem."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(errors)
        where = f" {source}" if source else " the config"
        n = len(self.errors)
        head = f"{n} problem{'s' if n != 1 else ''} in{where}:"
        super().__init__("\n  ".join([head, *self.errors]))


@dataclass(frozen=True)
class Key:
    """One config key: its kind, default, help text and limits.

    ``kind`` is one of ``"str"``, ``"int"``, ``"number"``, ``"bool"``, ``"list"`` (of strings or
    numbers) and ``"table"`` (free-form keyword arguments, checked by what receives them).
    ``example`` is printed, commented out, in the default config when the default is empty.
    ``path`` marks a file or folder that must exist (relative to the config file's folder).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    example: Any = None
    path: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _k(name: str, kind: str, default: Any, help: str, **kw: Any) -> Key:
    return Key(name, kind, default, help, **kw)


#: The schema: section name ("" for top-level keys) -> its keys, in print order.
SCHEMA: dict[str, tuple[Key, ...]] = {
    "": (
        _k("epochs", "int", 4, "passes over the task data", minimum=1),
        _k("seed", "int", 0, "seed of the model initialisation, data order and stimulus split",
           minimum=0),
        _k("precision", "str", "32", 'numeric precision of training: "32", "bf16" or "fp16" '
           "(autocast per step, as brainrdl.fit(precision=...))",
           choices=("32", "bf16", "fp16")),
        _k("device", "str", "auto", '"auto" (the rank\'s GPU when there is one, else CPU), "cpu" '
           'or "cuda"', choices=("auto", "cpu", "cuda")),
        _k("threads", "int", 1, "CPU threads per process (0: torch's default)", minimum=0),
    ),
    "model": (
        _k("spec", "str", "demo:digitcnn", 'the student: "demo:digitcnn" (the demo CNN; also '
           '"demo:digit_student", "demo:resnet18_like"), "module:package.module:factory" (your '
           'code; the current folder is on the import path), or any brainrdl.load_model spec such '
           'as "torchvision:resnet18"'),
        _k("weights", "str", "", "state dict to start from (.pt, read with weights_only=True); "
           "empty: the spec's own initialisation", example="init.pt", path=True),
        _k("options", "table", {}, "keyword arguments of the factory (demo and module specs)",
           example={"hidden": 64}),
    ),
    "data": (
        _k("source", "str", "demo", 'task data: "demo" (the embedded digits not shown to the '
           'demo subject), "image_folder" (root/<class>/<image>), or "torchvision" (a '
           "torchvision data set already on disk under root; nothing is downloaded)",
           choices=("demo", "image_folder", "torchvision")),
        _k("root", "str", "", "folder of the image folder or torchvision data set",
           example="/data/imagenet/train", path=True),
        _k("dataset", "str", "", 'torchvision data set class, e.g. "CIFAR10" (source = '
           '"torchvision")', example="CIFAR10"),
        _k("image_size", "int", 0, "resize task images and brain stimuli to N x N (0: as they "
           "are, or the model spec's transform)", minimum=0),
        _k("batch_size", "int", 64, "GLOBAL task batch: summed over all processes (each of W "
           "processes loads batch_size / W)", minimum=1),
        _k("val_fraction", "number", 0.25, "share of the task data kept for validation",
           minimum=0.0, maximum=0.9),
        _k("num_workers", "int", 0, "DataLoader worker processes per rank", minimum=0),
    ),
    "teacher": (
        _k("kind", "str", "brain", '"brain" (measured RDMs), "network" (a teacher network\'s '
           'layer RDMs) or "none" (task training only)', choices=("brain", "network", "none")),
        _k("source", "str", "demo", 'brain RDMs from: "demo" (the embedded demo study, NIfTI '
           'betas + atlas -> crossnobis RDMs per region), "hdf5" (an rsatoolbox RDMs file), or '
           '"betas" (NIfTI betas + atlas through data_adapters.fmri.rdms_from_betas)',
           choices=("demo", "hdf5", "betas")),
        _k("rdms", "str", "", 'rsatoolbox RDMs file (.hdf5; source = "hdf5"), one RDM per '
           "region, or several per region (subjects: averaged)", example="brain_rdms.hdf5",
           path=True),
        _k("target_descriptor", "str", "roi", "rdm descriptor that names the targets (regions)"),
        _k("pattern_descriptor", "str", "stimulus", "pattern descriptor holding stimulus ids"),
        _k("stimuli", "str", "", "the brain stimuli: a folder of images named <stimulus id>.png "
           "or an .npz with arrays images (n, C, H, W) and stimulus_ids",
           example="stimuli/", path=True),
        _k("betas", "str", "", 'beta images (4D NIfTI, one volume per stimulus and run; source '
           '= "betas")', example="sub-01_betas.nii.gz", path=True),
        _k("design", "str", "", "TSV with columns stimulus and run, one row per beta volume",
           example="sub-01_design.tsv", path=True),
        _k("atlas", "str", "", "atlas image (integer labels)", example="atlas.nii.gz",
           path=True),
        _k("atlas_labels", "str", "", "TSV of region name and atlas value",
           example="atlas_labels.tsv", path=True),
        _k("method", "str", "crossnobis", "RDM method of the betas (rdms_from_betas)",
           choices=("euclidean", "correlation", "mahalanobis", "crossnobis")),
        _k("n_stimuli", "int", 100, 'stimuli of the demo study (source = "demo")', minimum=20),
        _k("spec", "str", "", 'teacher network spec (kind = "network"), as [model] spec',
           example="torchvision:resnet50"),
        _k("weights", "str", "", "teacher network state dict", example="teacher.pt", path=True),
        _k("options", "table", {}, "keyword arguments of the teacher factory"),
        _k("layers", "list", [], "teacher layers that serve as targets (kind = \"network\")",
           example=["layer4"]),
    ),
    "training": (
        _k("warmup_epochs", "int", 0, "epochs of task training before the alignment starts",
           minimum=0),
        _k("mix_ratio", "number", 1.0, "brain batches per task batch (0.5: one every second "
           "step)", minimum=0.0),
        _k("brain_batch_size", "int", 60, "GLOBAL brain batch: distinct stimuli per brain batch, "
           "shared by all processes (each forwards its 1/W slice)", minimum=2),
        _k("separate_bn", "bool", False, "brain batches keep their own BatchNorm statistics"),
        _k("max_steps_per_epoch", "int", 0, "stop each epoch after N task batches (0: all)",
           minimum=0),
    ),
    "optimizer": (
        _k("name", "str", "adam", "optimizer", choices=("adam", "adamw", "sgd")),
        _k("lr", "number", 0.002, "learning rate", positive=True),
        _k("weight_decay", "number", 0.0, "weight decay", minimum=0.0),
        _k("momentum", "number", 0.9, "momentum (sgd)", minimum=0.0, maximum=1.0),
    ),
    "schedule": (
        _k("name", "str", "constant", 'learning-rate schedule per optimizer step: "constant", '
           '"cosine" (to min_lr over all steps) or "step" (x gamma every step_epochs)',
           choices=("constant", "cosine", "step")),
        _k("warmup_steps", "int", 0, "linear learning-rate warm-up steps", minimum=0),
        _k("min_lr", "number", 0.0, "final learning rate of the cosine schedule", minimum=0.0),
        _k("step_epochs", "int", 1, "epochs between decays (step schedule)", minimum=1),
        _k("gamma", "number", 0.1, "decay factor (step schedule)", positive=True),
    ),
    "checkpoint": (
        _k("every", "int", 0, "also save checkpoints/last.pt every N optimiser steps, so a killed "
           "job loses at most N steps (0: only at the end of each epoch)", minimum=0),
    ),
    "heldout": (
        _k("n_stimuli", "int", 40, "brain stimuli held out of training (drawn with seed); "
           "their RSA with the targets is logged each epoch", minimum=3),
        _k("ids", "list", [], "explicit held-out stimulus ids (instead of n_stimuli)",
           example=["img_003", "img_017"]),
        _k("method", "str", "corr", "comparison of the final layer x region table "
           "(brainrdl.compare_layers)",
           choices=("corr", "cosine", "spearman", "tau-a", "rho-a", "corr_cov", "cosine_cov")),
        _k("rdm_method", "str", "euclidean", "distance of the layer RDMs in the final table",
           choices=("euclidean", "correlation", "cosine")),
        _k("layers", "list", [], "layers of the final table (empty: the aligned layers, or the "
           "spec's default layers)", example=["conv1", "conv2", "fc1", "fc2"]),
    ),
    "log": (
        _k("tensorboard", "bool", True, "also write TensorBoard events (when tensorboard is "
           "installed)"),
        _k("progress", "bool", True, "progress bars on rank 0"),
    ),
}

#: Names after ``demo:`` in a model spec (factories in :mod:`brainrdl.nets.models`).
DEMO_MODELS: tuple[str, ...] = ("digitcnn", "digit_student", "digit_teacher", "resnet18_like")

#: Keys of one ``[alignment.<layer>]`` table.
ALIGNMENT_KEYS: tuple[Key, ...] = (
    _k("target", "str", "", "teacher target: a region (brain) or a teacher layer (network)"),
    _k("loss", "str", "rdl", "loss name from the registry (brainrdl.train.registry.LOSSES)"),
    _k("weight", "number", 1.0, "weight of this term", minimum=0.0),
    _k("options", "table", {}, "keyword arguments of the loss, e.g. comparison, distance"),
)

# What the printed default aligns (it must train on the embedded demo as printed).
_DEFAULT_ALIGNMENT = {"fc1": {"target": "IT", "loss": "rdl", "weight": 1.0,
                              "options": {"comparison": "paper"}}}  # fmt: skip


# ----------------------------------------------------------------------------- reading


def parse_text(text: str, fmt: str = "toml") -> dict[str, Any]:
    """Parse config ``text`` (``fmt`` ``"toml"`` or ``"yaml"``) into a dict, unvalidated.

    Examples
    --------
    >>> parse_text('epochs = 2\\n[model]\\nspec = "demo:digitcnn"')["model"]
    {'spec': 'demo:digitcnn'}
    """
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError([f"not valid TOML: {err}"]) from err
    if fmt == "yaml":
        try:
            import yaml
        except ImportError as err:  # pragma: no cover - pyyaml is optional
            raise ConfigError(["a YAML config needs PyYAML (pip install pyyaml), or use TOML"]) \
                from err
        try:
            data = yaml.safe_load(text)  # safe_load: no Python objects are built
        except yaml.YAMLError as err:
            raise ConfigError([f"not valid YAML: {err}"]) from err
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError([f"the config must be a mapping of keys; got {type(data).__name__}"])
        return data
    raise ValueError(f"fmt must be 'toml' or 'yaml'; got {fmt!r}")


def load_config(path: str | os.PathLike, *, check_paths: bool = True) -> dict[str, Any]:
    """Read, validate and resolve the config file at ``path`` (``.toml``, ``.yaml``/``.yml``).

    Relative paths in the config are read relative to the config file's folder and returned
    absolute, so that the resolved config (``config.toml`` of the run folder) runs from anywhere.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ConfigError
        Every problem found, each naming its key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    fmt = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "toml"
    try:
        raw = parse_text(path.read_text(encoding="utf-8"), fmt)
    except ConfigError as err:
        raise ConfigError(err.errors, str(path)) from None
    try:
        return validate(raw, base_dir=path.parent, check_paths=check_paths)
    except ConfigError as err:
        raise ConfigError(err.errors, str(path)) from None


# ----------------------------------------------------------------------------- checking


def _show(value: Any) -> str:
    """A value as the message shows it: strings in double quotes, as in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _expected(key: Key) -> str:
    if key.choices is not None:
        return "one of " + ", ".join(_show(c) for c in key.choices)
    word = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
            "list": "a list", "table": "a table"}[key.kind]  # fmt: skip
    if key.positive:
        return f"{word} > 0"
    if key.minimum is not None and key.maximum is not None:
        return f"{word} between {_num(key.minimum)} and {_num(key.maximum)}"
    if key.minimum is not None:
        return f"{word} ≥ {_num(key.minimum)}"
    return word


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _check_value(key: Key, value: Any) -> tuple[Any, str | None]:
    """``(value converted, None)`` or ``(None, message)`` for one value against ``key``."""
    bad = f"expected {_expected(key)}, got {_show(value)}"
    kind = key.kind
    if kind == "str":
        if not isinstance(value, str):
            return None, bad
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, bad
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, bad
        if not math.isfinite(value):
            return None, bad
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            return None, bad
    elif kind == "list":
        if not isinstance(value, list) or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
        ):
            return None, f"expected a list of strings or integers, got {_show(value)}"
        value = list(value)
    elif kind == "table":
        if not isinstance(value, Mapping):
            return None, bad
        value = copy.deepcopy(dict(value))
    if key.choices is not None and value not in key.choices:
        return None, bad
    if kind in ("int", "number"):
        if key.positive and not value > 0:
            return None, bad
        if key.minimum is not None and value < key.minimum:
            return None, bad
        if key.maximum is not None and value > key.maximum:
            return None, bad
    return value, None


def _where(section: str) -> str:
    return f"[{section}] " if section else ""


def _unknown(section: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f'{_where(section)}unknown key "{name}"{hint} (valid keys: {", ".join(valid)})'


def _check_table(section: str, keys: tuple[Key, ...], raw: Any, errors: list[str]) -> dict:
    out = {k.name: copy.deepcopy(k.default) for k in keys}
    if not isinstance(raw, Mapping):
        errors.append(f"[{section}] expected a table of keys, got {_show(raw)}")
        return out
    by_name = {k.name: k for k in keys}
    for name, value in raw.items():
        key = by_name.get(name)
        if key is None:
            errors.append(_unknown(section, str(name), list(by_name)))
            continue
        converted, problem = _check_value(key, value)
        if problem:
            errors.append(f"{_where(section)}{name}: {problem}")
        else:
            out[name] = converted
    return out


def validate(
    raw: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    check_paths: bool = True,
) -> dict[str, Any]:
    """Check a parsed config against :data:`SCHEMA` and return it resolved (defaults filled).

    Every problem is collected before raising, so one run reports them all.

    Parameters
    ----------
    raw : Mapping[str, Any]
        The parsed config (a dict, as from :func:`parse_text`).
    base_dir : str | os.PathLike | None
        Folder that relative paths are read from (default: the current folder); paths come back
        absolute.
    check_paths : bool
        Check that every file or folder named exists.

    Returns
    -------
    dict
        Top-level keys, one dict per section, and ``alignment``: ``{layer: {target, loss,
        weight, options}}``.

    Raises
    ------
    ConfigError
        Listing each problem with its key, e.g. ``[data] batch_size: expected an integer ≥ 1,
        got 0``.

    Examples
    --------
    >>> validate({"modle": {}})
    Traceback (most recent call last):
    ...
    brainrdl.train.config.ConfigError: 1 problem in the config:
      unknown section [modle]; did you mean [model]? (sections: model, data, teacher, \
training, optimizer, schedule, checkpoint, heldout, log, alignment)
    """
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError([f"the config must be a table of keys; got {_show(raw)}"])
    sections = [s for s in SCHEMA if s] + ["alignment"]
    top = {k.name: k for k in SCHEMA[""]}
    cfg: dict[str, Any] = {k.name: copy.deepcopy(k.default) for k in SCHEMA[""]}
    for name, value in raw.items():
        if name in top:
            converted, problem = _check_value(top[name], value)
            if problem:
                errors.append(f"{name}: {problem}")
            else:
                cfg[name] = converted
        elif name not in sections:
            if isinstance(value, Mapping):
                close = difflib.get_close_matches(str(name), sections, n=1)
                hint = f"; did you mean [{close[0]}]?" if close else ""
                errors.append(
                    f"unknown section [{name}]{hint} (sections: {', '.join(sections)})"
                )
            else:
                errors.append(_unknown("", str(name), list(top)))
    for section in SCHEMA:
        if section:
            cfg[section] = _check_table(section, SCHEMA[section], raw.get(section, {}), errors)
    cfg["alignment"] = _check_alignment(raw, errors)
    if not errors:
        _check_combinations(cfg, errors)
        if check_paths:
            _resolve_paths(cfg, Path(base_dir) if base_dir is not None else Path.cwd(), errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def _check_alignment(raw: Mapping[str, Any], errors: list[str]) -> dict[str, dict[str, Any]]:
    if "alignment" not in raw:
        # the demo's alignment is the default only with the demo teacher (it names fc1 and IT)
        teacher = raw.get("teacher", {})
        teacher = teacher if isinstance(teacher, Mapping) else {}
        demo = teacher.get("kind", "brain") == "brain" and teacher.get("source", "demo") == "demo"
        return copy.deepcopy(_DEFAULT_ALIGNMENT) if demo else {}
    table = raw["alignment"]
    if not isinstance(table, Mapping):
        errors.append(f"[alignment] expected one table per student layer, got {_show(table)}")
        return {}
    out = {}
    for layer, entry in table.items():
        section = f"alignment.{layer}" if re.fullmatch(r"[A-Za-z0-9_-]+", str(layer)) \
            else f'alignment."{layer}"'  # fmt: skip
        if not isinstance(entry, Mapping):
            errors.append(
                f"[{section}] expected a table (target, loss, weight, options), got "
                f"{_show(entry)}; write [{section}] with target = \"...\" under it"
            )
            continue
        checked = _check_table(section, ALIGNMENT_KEYS, entry, errors)
        if "target" not in entry:
            errors.append(f"[{section}] target: missing (the region or teacher layer to match)")
        out[str(layer)] = checked
    return out


def _check_combinations(cfg: dict[str, Any], errors: list[str]) -> None:
    """Checks across keys: what each source needs, loss names and options, model specs."""
    data, teacher = cfg["data"], cfg["teacher"]
    if data["source"] in ("image_folder", "torchvision") and not data["root"]:
        errors.append(f'[data] root: needed for source = "{data["source"]}"')
    if data["source"] == "torchvision" and not data["dataset"]:
        errors.append('[data] dataset: needed for source = "torchvision" (e.g. "CIFAR10")')
    if data["source"] == "demo" and data["image_size"]:
        errors.append("[data] image_size: the demo digits are 8 x 8; leave it 0")
    for section in ("model", "teacher"):
        spec = cfg[section]["spec"]
        if spec and (problem := _spec_problem(spec)):
            errors.append(f"[{section}] spec: {problem}")
    kind = teacher["kind"]
    if kind == "brain":
        src = teacher["source"]
        need = {"hdf5": ("rdms", "stimuli"), "betas": ("betas", "design", "atlas", "stimuli"),
                "demo": ()}[src]  # fmt: skip
        for name in need:
            if not teacher[name]:
                errors.append(f'[teacher] {name}: needed for source = "{src}"')
    elif kind == "network":
        if not teacher["spec"]:
            errors.append('[teacher] spec: needed for kind = "network"')
        if not teacher["layers"]:
            errors.append('[teacher] layers: needed for kind = "network" (the target layers)')
    if kind == "none" and cfg["alignment"]:
        errors.append('[alignment] given, but [teacher] kind = "none" (nothing to align to)')
    if kind != "none" and not cfg["alignment"]:
        errors.append(f'[alignment] missing: kind = "{kind}" needs at least one '
                      '[alignment.<layer>] table with target = "..."')  # fmt: skip
    from brainrdl.train.registry import LOSSES  # lazy: keeps reading a config free of torch

    for layer, entry in cfg["alignment"].items():
        section = f"alignment.{layer}" if re.fullmatch(r"[A-Za-z0-9_-]+", layer) \
            else f'alignment."{layer}"'  # fmt: skip
        if entry["loss"] not in LOSSES:
            errors.append(
                f'[{section}] loss: expected one of {", ".join(_show(n) for n in LOSSES)}, '
                f'got {_show(entry["loss"])}'
            )
            continue
        options = _loss_options(LOSSES[entry["loss"]])
        for opt in entry["options"]:
            if opt not in options:
                errors.append(
                    f'[{section}.options] unknown option "{opt}" of loss "{entry["loss"]}" '
                    f"(its options: {', '.join(options) or 'none'})"
                )
        if kind == "network" and entry["target"] and entry["target"] not in teacher["layers"]:
            errors.append(
                f'[{section}] target: "{entry["target"]}" is not among [teacher] layers '
                f"{teacher['layers']}"
            )
    if cfg["heldout"]["ids"] and len(cfg["heldout"]["ids"]) < 3:
        errors.append("[heldout] ids: expected at least 3 ids (an RDM needs 3 to correlate)")


def _loss_options(cls: type) -> list[str]:
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL,
                                                                          p.VAR_KEYWORD)]


def _spec_problem(spec: str) -> str | None:
    if spec.startswith("demo:"):
        name = spec.split(":", 1)[1]
        if name not in DEMO_MODELS:
            return f"unknown demo model {_show(name)}; expected one of {list(DEMO_MODELS)}"
        return None
    if spec.startswith("module:"):
        parts = spec.split(":")
        if len(parts) != 3 or not all(parts[1:]) or not re.fullmatch(
            r"[A-Za-z_][\w.]*", parts[1]) or not parts[2].isidentifier():  # fmt: skip
            return (f'expected "module:package.module:factory" (e.g. '
                    f'"module:mylab.nets:make_net"), got {_show(spec)}')  # fmt: skip
        return None
    if ":" not in spec:
        return (f'expected "demo:<name>", "module:package.module:factory" or a '
                f'brainrdl.load_model spec such as "torchvision:resnet18", got {_show(spec)}')
    return None


def _resolve_paths(cfg: dict[str, Any], base: Path, errors: list[str]) -> None:
    for section, keys in SCHEMA.items():
        for key in keys:
            if not key.path:
                continue
            table = cfg[section] if section else cfg
            value = table[key.name]
            if not value:
                continue
            path = Path(os.path.expanduser(value))
            path = path if path.is_absolute() else (base / path)
            if not path.exists():
                errors.append(f"{_where(section)}{key.name}: no file or folder at {str(path)!r}")
            else:
                table[key.name] = str(path.resolve())


def resolve(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, without checking paths (:func:`validate` with ``check_paths=False``).

    Examples
    --------
    >>> resolve({})["optimizer"]["lr"]
    0.002
    """
    return validate(raw, check_paths=False)


# ----------------------------------------------------------------------------- writing


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r} here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) \
            + "}"  # fmt: skip
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width - 2) or [""]


def _emit(cfg: Mapping[str, Any] | None, comments: bool) -> str:
    """TOML of a resolved config (``cfg``) or of the defaults (``cfg`` None), with help text."""
    lines: list[str] = []

    def keyline(key: Key, value: Any) -> None:
        if comments:
            lines.extend(f"# {t}" for t in _wrap(key.help))
        empty = value in ("", [], {}) and cfg is None
        if empty and key.example is not None:
            lines.append(f"# {key.name} = {_toml_value(key.example)}")
        else:
            lines.append(f"{key.name} = {_toml_value(value)}")

    for section, keys in SCHEMA.items():
        if section:
            lines.append("")
            lines.append(f"[{section}]")
        for key in keys:
            if cfg is None:
                value = key.default
            else:
                value = cfg[section][key.name] if section else cfg[key.name]
            keyline(key, value)
    alignment = _DEFAULT_ALIGNMENT if cfg is None else cfg["alignment"]
    if comments:
        lines += ["", "# One table per student layer (quote dotted names: "
                  '[alignment."layer3.1.conv2"]).']  # fmt: skip
    for layer, entry in alignment.items():
        lines.append("")
        lines.append(f"[alignment.{_toml_key(layer)}]")
        for key in ALIGNMENT_KEYS:
            keyline(key, entry[key.name])
    return "\n".join(lines).lstrip("\n") + "\n"


def default_config_text() -> str:
    """The commented default config: trains a DigitCNN toward the demo study's IT as printed.

    Examples
    --------
    >>> text = default_config_text()
    >>> text.splitlines()[0]
    '# brainrdl train config (TOML). Run: brainrdl train config.toml --out runs/demo'
    >>> "epochs = 4" in text.splitlines()
    True
    """
    head = (
        "# brainrdl train config (TOML). Run: brainrdl train config.toml --out runs/demo\n"
        "# As printed it trains on the embedded demo data. Under torchrun every process reads\n"
        "# the same file; batch sizes are global. Relative paths are read from this file's\n"
        "# folder. Commented-out keys show an example value of a key left empty.\n\n"
    )
    return head + _emit(None, comments=True)


def dumps_toml(cfg: Mapping[str, Any]) -> str:
    """TOML text of a resolved config (as written to a run folder's ``config.toml``).

    Examples
    --------
    >>> cfg = resolve({"epochs": 2})
    >>> validate(parse_text(dumps_toml(cfg)), check_paths=False) == cfg
    True
    """
    return _emit(cfg, comments=False)
