"""Run a validated ``brainrdl train`` config: build the parts, call :func:`brainrdl.fit`, write a
run folder; on one process or under ``torchrun``.

Parts are built in this order: the process group (when ``torchrun`` started several processes),
the student model, the teacher (brain RDMs + their stimuli, split into training and held-out
stimuli; or a teacher network), the task data, the alignment losses (from the loss registry), the
optimizer and its schedule. Data sources are looked up by name in ``sources``: this module knows
``"data:image_folder"``, ``"data:torchvision"`` and ``"teacher:hdf5"``; the command line adds the
ones that read lab formats or the embedded demo (``brainrdl.cli.train``), since the training room
never imports ``data_adapters``.

Data parallelism (``torchrun --nproc_per_node=W``):

* **Task data**: every process reads the same seeded permutation of the task set
  (:class:`torch.utils.data.DistributedSampler`, ``drop_last=True``) and loads ``batch_size / W``
  items per step. The sampler interleaves, so at step *k* the union of the W local batches is the
  contiguous slice *k* of the permutation: the same global batch as one process with
  ``batch_size`` items.
* **Brain batches are shared**: every process draws the same brain batch (the same seeded
  :class:`~brainrdl.train.brain_batches.StimulusBatchSampler`, so no communication is needed) and
  forwards only its 1/W slice of it; :func:`brainrdl.train.distributed.all_gather_with_grad`
  reassembles the global batch before its RDM is formed.
* **Gradients** are averaged over processes by one all-reduce per optimizer step (a step
  pre-hook). ``DistributedDataParallel``'s reducer is not used: a brain batch reaches only the
  layers up to the tapped one, and DDP's reducer then waits forever for the gradients of the
  layers above it ("Expected to have finished reduction in the prior iteration").
  With the all-gather's summed backward this gives every process the single-process gradient of
  the loss on the global batch (up to floating-point summation order).

Examples
--------
>>> from brainrdl.train.config import resolve
>>> cfg = resolve({"teacher": {"kind": "none"}, "data": {"source": "torchvision",
...                "root": ".", "dataset": "FakeData"}})
>>> cfg["data"]["batch_size"], cfg["alignment"]
(64, {})
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from brainrdl.runs.run_folder import (
    CHECKPOINT_DIR,
    CONFIG_NAME,
    SUMMARY_NAME,
    WEIGHTS_NAME,
    split_targets,
    write_run,
)
from brainrdl.train.config import ConfigError, dumps_toml, load_config, parse_text, validate
from brainrdl.train.sharding import (
    EpochLoader,
    LRSchedule,
    ShardedStimulusBatchSampler,
    average_gradients,
    barrier,
    process_group,
    rank0_first,
)

__all__ = [
    "BrainData",
    "RunContext",
    "RunResult",
    "TaskData",
    "build_model",
    "load_run",
    "load_stimuli",
    "run_training",
    "split_targets",
    "split_task",
]



# ----------------------------------------------------------------------------- parts


@dataclass
class TaskData:
    """Task training and validation sets: items ``(input, label)``."""

    train: Dataset
    val: Dataset | None = None


@dataclass
class BrainData:
    """Brain targets (``{target name: rsatoolbox RDMs}``) and the stimuli they were measured on.

    ``images`` is ``(n, C, H, W)``; ``stimulus_ids`` are the RDMs' pattern-descriptor values.
    """

    rdms: dict[str, Any]
    images: torch.Tensor
    stimulus_ids: list[Any]


@dataclass
class RunContext:
    """What a data source may need: the config, process layout, device, folders."""

    cfg: dict[str, Any]
    out: Path
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    transform: Callable[[Any], Any] | None = None
    brain: BrainData | None = None


Source = Callable[[RunContext], Any]


def _demo_factories() -> dict[str, Callable[..., nn.Module]]:
    from brainrdl.nets import models

    return {"digitcnn": models.DigitCNN, "digit_student": models.digit_student,
            "digit_teacher": models.digit_teacher,
            "resnet18_like": models.ResNet18Like}  # fmt: skip


def build_model(
    spec: str, options: Mapping[str, Any] | None = None, weights: str | os.PathLike = ""
) -> tuple[nn.Module, Callable[[Any], Any] | None, list[str]]:
    """The model named by ``spec``, its input transform (or None) and its default layers.

    ``"demo:<name>"`` builds a model of :mod:`brainrdl.nets.models`;
    ``"module:package.module:factory"`` calls ``factory(**options)`` from your code (the current
    folder is put on ``sys.path``); any other spec goes to ``brainrdl.load_model(spec,
    weights=...)``. ``weights`` (a state dict file) is read with ``weights_only=True``.

    Examples
    --------
    >>> model, transform, layers = build_model("demo:digitcnn", {"hidden": 32})
    >>> model.fc2.in_features, transform, layers
    (32, None, ['conv1', 'conv2', 'fc1', 'fc2'])
    """
    options = dict(options or {})
    transform, layers = None, []
    if spec.startswith("demo:"):
        name = spec.split(":", 1)[1]
        factories = _demo_factories()
        if name not in factories:
            raise ValueError(f"model spec {spec!r}: unknown demo model; expected one of "
                             f"{sorted(factories)}")  # fmt: skip
        model = factories[name](**options)
        if name != "resnet18_like":
            layers = ["conv1", "conv2", "fc1", "fc2"]
    elif spec.startswith("module:"):
        _, module_name, factory_name = spec.split(":")
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)  # the lab's code sits next to its config
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(
                f"model spec {spec!r}: cannot import {module_name!r} ({err}); run from the "
                "folder that holds it or install it"
            ) from err
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise AttributeError(f"model spec {spec!r}: {module_name} has no callable "
                                 f"{factory_name!r}")  # fmt: skip
        model = factory(**options)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model spec {spec!r}: the factory returned a "
                            f"{type(model).__name__}, not a torch.nn.Module")  # fmt: skip
    else:
        from brainrdl.nets.loading import load_model

        if options:
            raise ValueError(f"model spec {spec!r}: options are for demo and module specs only")
        model, transform, layers = load_model(spec, weights=str(weights) if weights else None)
        return model, transform, list(layers or [])
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    return model, transform, layers


def load_stimuli(
    path: str | os.PathLike, image_size: int = 0, transform: Callable[[Any], Any] | None = None
) -> tuple[torch.Tensor, list[Any]]:
    """Stimulus images and ids from a folder (ids: file names without suffix) or an ``.npz``.

    An ``.npz`` holds ``images`` (n, C, H, W) and ``stimulus_ids`` (read with
    ``allow_pickle=False``). Folder images are read with Pillow as RGB in [0, 1], resized to
    ``image_size`` when given; ``transform`` (a model's preprocessing) is applied to each.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> f = tempfile.mkdtemp() + "/s.npz"
    >>> np.savez(f, images=np.zeros((3, 1, 4, 4)), stimulus_ids=np.array(["a", "b", "c"]))
    >>> x, ids = load_stimuli(f); tuple(x.shape), ids
    ((3, 1, 4, 4), ['a', 'b', 'c'])
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = {"images", "stimulus_ids"} - set(data.files)
            if missing:
                raise ValueError(f"stimuli {str(path)!r}: missing arrays {sorted(missing)}; "
                                 "expected images (n, C, H, W) and stimulus_ids")  # fmt: skip
            images = torch.as_tensor(data["images"], dtype=torch.float32)
            ids = [v.item() for v in data["stimulus_ids"]]
        if images.ndim != 4 or images.shape[0] != len(ids):
            raise ValueError(f"stimuli {str(path)!r}: images must be (n, C, H, W) with one id "
                             f"each; got {tuple(images.shape)} and {len(ids)} ids")  # fmt: skip
        return images, ids
    from PIL import Image

    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"stimuli: no image files in {str(path)!r}")
    items = []
    for f in files:
        with Image.open(f) as img:
            img = img.convert("RGB")
            if transform is not None:
                items.append(transform(img))
                continue
            if image_size:
                img = img.resize((image_size, image_size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
        items.append(torch.from_numpy(arr).permute(2, 0, 1))
    shapes = {tuple(x.shape) for x in items}
    if len(shapes) > 1:
        raise ValueError(f"stimuli in {str(path)!r} differ in size ({sorted(shapes)[:3]}); set "
                         "[data] image_size to resize them")  # fmt: skip
    return torch.stack(items), [f.stem for f in files]


# ----------------------------------------------------------------------------- built-in sources


def _image_transform(ctx: RunContext) -> Callable[[Any], Any]:
    if ctx.transform is not None:
        return ctx.transform
    from torchvision import transforms

    size = ctx.cfg["data"]["image_size"]
    steps = [transforms.Resize(size), transforms.CenterCrop(size)] if size else []
    return transforms.Compose([*steps, transforms.ToTensor()])


def _image_folder_source(ctx: RunContext) -> TaskData:
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(ctx.cfg["data"]["root"], transform=_image_transform(ctx))
    return split_task(folder, ctx.cfg)


def _torchvision_source(ctx: RunContext) -> TaskData:
    import torchvision.datasets as tvd

    data = ctx.cfg["data"]
    cls = getattr(tvd, data["dataset"], None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ConfigError([f'[data] dataset: torchvision has no data set "{data["dataset"]}"'])
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"transform": _image_transform(ctx)}
    if "download" in params:
        kwargs["download"] = False  # never at run time: the data must already be on disk
    if "train" in params:
        kwargs["train"] = True
    elif "split" in params:
        kwargs["split"] = "train"
    first = next(iter(params))
    try:
        ds = cls(data["root"], **kwargs) if first == "root" else cls(**kwargs)
    except (RuntimeError, FileNotFoundError) as err:
        raise FileNotFoundError(f'[data] root: torchvision {data["dataset"]} is not readable '
                                f'under {data["root"]!r} ({err}); nothing is downloaded at run '
                                "time") from err  # fmt: skip
    return split_task(ds, ctx.cfg)


def _hdf5_source(ctx: RunContext) -> BrainData:
    import rsatoolbox

    t = ctx.cfg["teacher"]
    # file_type="hdf5" explicitly: rsatoolbox's reader for .pkl would unpickle
    rdms = rsatoolbox.rdm.load_rdm(t["rdms"], file_type="hdf5")
    images, ids = load_stimuli(t["stimuli"], ctx.cfg["data"]["image_size"], ctx.transform)
    return BrainData(split_targets(rdms, t["target_descriptor"]), images, ids)


#: Sources this module provides; ``run_training(sources=...)`` adds or replaces entries.
BUILTIN_SOURCES: dict[str, Source] = {
    "data:image_folder": _image_folder_source,
    "data:torchvision": _torchvision_source,
    "teacher:hdf5": _hdf5_source,
}


def split_task(ds: Dataset, cfg: dict[str, Any]) -> TaskData:
    """Seeded train / validation split of a task data set (``[data] val_fraction``).

    Examples
    --------
    >>> from brainrdl.train.config import resolve
    >>> parts = split_task(list(range(8)), resolve({"data": {"val_fraction": 0.25}}))
    >>> len(parts.train), len(parts.val)
    (6, 2)
    """
    n = len(ds)
    n_val = round(cfg["data"]["val_fraction"] * n)
    if n - n_val < 1:
        raise ValueError(f"[data] the task data set has {n} items: too few to split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg["seed"])).tolist()
    val = Subset(ds, perm[:n_val]) if n_val else None
    return TaskData(Subset(ds, perm[n_val:]), val)


# ----------------------------------------------------------------------------- the run


def _held_out_split(brain: BrainData, cfg: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Positions of held-out and training stimuli; held-out ones are covered by every target."""
    ids = brain.stimulus_ids
    wanted = cfg["heldout"]["ids"]
    covered = set(map(str, ids))
    for name, rdms in brain.rdms.items():
        desc = cfg["teacher"]["pattern_descriptor"]
        own = rdms.pattern_descriptors.get(desc, rdms.pattern_descriptors.get("index"))
        covered &= {str(v) for v in own}
        if not covered:
            raise ValueError(f"teacher: no stimulus id of the stimuli is in target {name!r}'s "
                             f"pattern descriptor {desc!r} (e.g. stimulus {ids[0]!r}, "
                             f"RDM {list(own)[:1]!r})")  # fmt: skip
    if wanted:
        index = {str(s): i for i, s in enumerate(ids)}
        missing = [w for w in wanted if str(w) not in index or str(w) not in covered]
        if missing:
            raise ConfigError([f"[heldout] ids: {missing[:3]} are not stimuli covered by every "
                               "target"])  # fmt: skip
        held = sorted(index[str(w)] for w in wanted)
    else:
        n = cfg["heldout"]["n_stimuli"]
        pool = [i for i, s in enumerate(ids) if str(s) in covered]
        if len(pool) < n + 2:
            raise ConfigError([f"[heldout] n_stimuli: {n} held-out stimuli leave fewer than 2 "
                               f"of the {len(pool)} covered stimuli for training"])  # fmt: skip
        rng = np.random.default_rng(cfg["seed"])
        held = sorted(pool[i] for i in rng.permutation(len(pool))[:n])
    held_set = set(held)
    train = [i for i in range(len(ids)) if i not in held_set]
    return held, train


def _match_ids(brain: BrainData, descriptor: str) -> BrainData:
    """Stimulus ids as the RDMs spell them (file stem "3" -> 3 when the RDMs use integers)."""
    spelled: dict[str, Any] = {}
    for rdms in brain.rdms.values():
        for v in rdms.pattern_descriptors.get(descriptor, []):
            spelled.setdefault(str(v), v.item() if hasattr(v, "item") else v)
    ids = [spelled.get(str(s), s) for s in brain.stimulus_ids]
    return BrainData(brain.rdms, brain.images, ids)


def _check_resume(out: Path, cfg: dict[str, Any], resume: bool) -> tuple[int, int]:
    """(epoch, optimiser step) to start from: (0, 0), or where the checkpoint left off (the epoch
    in progress or the next one: ``fit`` replays a partial epoch itself); refuses to overwrite a
    run."""
    ckpt = out / CHECKPOINT_DIR / "last.pt"
    saved = out / CONFIG_NAME
    if not resume:
        if ckpt.exists() or (out / SUMMARY_NAME).exists():
            raise FileExistsError(f"--out {str(out)!r} already holds a run; pass --resume to "
                                  "continue it, or choose another --out")  # fmt: skip
        return 0, 0
    if saved.exists():
        before = validate(parse_text(saved.read_text(encoding="utf-8")), check_paths=False)
        diff = _differences(before, cfg)
        diff = [d for d in diff if d != "epochs"]
        if diff:
            raise ConfigError([f"{d}: differs from the run being resumed ({saved})" for d in diff])
    if not ckpt.exists():
        return 0, 0  # nothing saved yet: --resume starts from scratch (safe for requeued jobs)
    from brainrdl.train.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt, mmap=True)  # fit reads the weights; epoch and step only
    return int(state["epoch"]), int(state["global_step"])


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], path: tuple = ()) -> list[str]:
    """Keys whose values differ, named as in messages (``[alignment.fc1] weight``)."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping) and key != "options":
            out += _differences(va, vb, (*path, str(key)))
        elif va != vb:
            out.append(f"[{'.'.join(path)}] {key}" if path else str(key))
    return out


def run_training(
    cfg: Mapping[str, Any] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    sources: Mapping[str, Source] | None = None,
) -> dict[str, Any]:
    """Train as the config says and write the run folder ``out``; returns the summary.

    Parameters
    ----------
    cfg : Mapping[str, Any] | str | os.PathLike
        A resolved config (:func:`brainrdl.train.config.validate`) or the path of a config file.
    out : str | os.PathLike
        The run folder (created). A folder that already holds a run is refused unless
        ``resume``.
    resume : bool
        Continue from ``out/checkpoints/last.pt`` (from scratch when there is none yet, so a
        requeued job can always pass it). The config may differ from the saved one in
        ``epochs`` only (to extend a run).
    sources : Mapping[str, Source] | None
        Extra data sources by name (``"data:<source>"``, ``"teacher:<source>"``): callables
        taking a :class:`RunContext` and returning :class:`TaskData` / :class:`BrainData`.

    Returns
    -------
    dict
        The content of ``summary.json``.

    Notes
    -----
    The run folder holds ``config.toml`` (the resolved config), ``environment.json``,
    ``log.csv`` (one row per epoch, from :func:`brainrdl.fit`), ``learning_curves.png``,
    ``heldout_rsa.png``, ``checkpoints/last.pt``, ``model.pt`` (final weights),
    ``brain_rdms/<target>.hdf5`` and ``heldout_stimuli.npz`` (what :func:`load_run` and
    ``brainrdl compare`` read), ``layer_region.csv`` and ``summary.json``; ``tensorboard/`` when
    TensorBoard is installed.
    """
    if not isinstance(cfg, Mapping):
        cfg = load_config(cfg)
    cfg = dict(cfg)
    out = Path(out).resolve()
    table = {**BUILTIN_SOURCES, **(sources or {})}
    for section in ("data", "teacher"):
        src = cfg[section]["source"]
        used = section == "data" or cfg["teacher"]["kind"] == "brain"
        if used and f"{section}:{src}" not in table:
            known = sorted(k for k in table if k.startswith(section))
            raise ConfigError([f'[{section}] source: "{src}" is not available here ({known})'])
    _preflight(cfg)
    t_start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    try:
        with process_group(cfg["device"]) as (rank, world, device):
            start_epoch, start_step = _check_resume(out, cfg, resume)
            if rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                (out / CONFIG_NAME).write_text(dumps_toml(cfg), encoding="utf-8")
            barrier()
            return _run(cfg, out, table, rank, world, device, (start_epoch, start_step), resume,
                        t_start)
    finally:
        torch.set_num_threads(previous_threads)


def _build_losses(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{layer: (target, weight, loss)}`` from the registry; option errors name the key."""
    from brainrdl.train.registry import make_loss

    alignment = {}
    for layer, entry in cfg["alignment"].items():
        try:
            loss = make_loss(entry["loss"], **entry["options"])
        except (TypeError, ValueError) as err:
            raise ConfigError([f"[alignment.{layer}.options] {err}"]) from err
        alignment[layer] = (entry["target"], entry["weight"], loss)
    return alignment


def _fit_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``fit`` that come straight from the config."""
    return {"precision": cfg["precision"], "checkpoint_every": cfg["checkpoint"]["every"] or None}


def _preflight(cfg: Mapping[str, Any]) -> None:
    """What can fail from the config alone fails here, before data are read or models built."""
    _build_losses(cfg)
    _fit_options(cfg)


def _run(cfg, out, sources, rank, world, device, start, resume, t_start) -> dict[str, Any]:
    from brainrdl.train.brain_batches import BrainBatches, StimulusBatchSampler, StimulusSet
    from brainrdl.train.loop import fit
    from brainrdl.train.teachers import BrainTeacher, NetworkTeacher

    seed = cfg["seed"]
    start_epoch, start_step = start
    data_cfg, tcfg, train_cfg = cfg["data"], cfg["teacher"], cfg["training"]
    if data_cfg["batch_size"] % world:
        raise ConfigError([f"[data] batch_size: {data_cfg['batch_size']} is not divisible by "
                           f"the {world} processes"])  # fmt: skip
    torch.manual_seed(seed)  # same initial weights on every rank
    model, transform, spec_layers = build_model(cfg["model"]["spec"], cfg["model"]["options"],
                                                cfg["model"]["weights"])  # fmt: skip
    model.to(device)
    if world > 1:  # one truth for the weights, e.g. a factory that draws from its own RNG
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)
    ctx = RunContext(cfg, out, rank, world, device, transform)

    # the teacher, its stimuli, and the held-out split
    teacher = brain = None
    brain_loader = heldout = None
    teacher_model = None
    if tcfg["kind"] == "brain":
        brain = rank0_first(rank, lambda: sources[f"teacher:{tcfg['source']}"](ctx))
        brain = _match_ids(brain, tcfg["pattern_descriptor"])
        ctx.brain = brain
        teacher = BrainTeacher(brain.rdms, pattern_descriptor=tcfg["pattern_descriptor"])
        held, train = _held_out_split(brain, cfg)
        heldout = (brain.images[held], [brain.stimulus_ids[i] for i in held])
        stim = StimulusSet(brain.images[train], [brain.stimulus_ids[i] for i in train])
        bsize = min(train_cfg["brain_batch_size"], len(stim))
        sampler = ShardedStimulusBatchSampler(StimulusBatchSampler(len(stim), bsize, seed=seed),
                                              rank, world)  # fmt: skip
        # the sampler shards one seeded brain batch over the ranks; BrainBatches says how it mixes
        brain_loader = BrainBatches(DataLoader(stim, batch_sampler=sampler),
                                    mix_ratio=train_cfg["mix_ratio"],
                                    separate_bn=train_cfg["separate_bn"])
    task = rank0_first(rank, lambda: sources[f"data:{data_cfg['source']}"](ctx))
    if tcfg["kind"] == "network":
        torch.manual_seed(seed + 1)
        teacher_model, _, _ = build_model(tcfg["spec"], tcfg["options"], tcfg["weights"])
        teacher_model.to(device).eval()
        teacher = NetworkTeacher(teacher_model, list(tcfg["layers"]))
        pool = task.val if task.val is not None else task.train
        n = min(cfg["heldout"]["n_stimuli"], len(pool))
        heldout = (torch.stack([pool[i][0] for i in range(n)]), list(range(n)))

    # losses and alignment
    alignment = _build_losses(cfg)
    losses = [loss for _, _, loss in alignment.values()]

    # task loader: every rank the same seeded permutation, its own interleaved shard
    local_batch = data_cfg["batch_size"] // world
    sampler = DistributedSampler(task.train, num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)  # fmt: skip
    loader = DataLoader(task.train, batch_size=local_batch, sampler=sampler, drop_last=True,
                        num_workers=data_cfg["num_workers"],
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    if len(loader) == 0:
        raise ConfigError([f"[data] batch_size: {data_cfg['batch_size']} is larger than the "
                           f"{len(task.train)} training items"])  # fmt: skip
    task_loader = EpochLoader(loader, seed, start_epoch)
    val_loader = DataLoader(task.val, batch_size=512) if task.val is not None else None

    # optimizer, gradient averaging, schedule
    params = list(model.parameters())
    for loss in losses:
        params += list(loss.parameters())
    opt = cfg["optimizer"]
    if opt["name"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"],
                                    weight_decay=opt["weight_decay"])  # fmt: skip
    else:
        cls = torch.optim.AdamW if opt["name"] == "adamw" else torch.optim.Adam
        optimizer = cls(params, lr=opt["lr"], weight_decay=opt["weight_decay"])
    if world > 1:
        optimizer.register_step_pre_hook(average_gradients)
    max_steps = train_cfg["max_steps_per_epoch"] or None
    steps_per_epoch = min(len(loader), max_steps or len(loader))
    if cfg["schedule"]["name"] != "constant" or cfg["schedule"]["warmup_steps"]:
        LRSchedule(optimizer, cfg["schedule"], steps_per_epoch, steps_per_epoch * cfg["epochs"],
                  start_step)  # fmt: skip

    kwargs: dict[str, Any] = dict(
        teacher=teacher, alignment=alignment or None, brain_loader=brain_loader,
        optimizer=optimizer, epochs=cfg["epochs"], warmup_epochs=train_cfg["warmup_epochs"],
        heldout=heldout if teacher is not None else None, val_loader=val_loader,
        checkpoint_dir=out / CHECKPOINT_DIR, resume=resume, device=device,
        progress=cfg["log"]["progress"] and rank == 0, max_steps_per_epoch=max_steps,
    )  # fmt: skip
    kwargs.update(_fit_options(cfg))
    if resume and start_epoch >= cfg["epochs"] and rank == 0:
        warnings.warn(f"the run in {out} already has {start_epoch} epochs; nothing to train "
                      "(raise epochs to continue)", UserWarning, stacklevel=3)  # fmt: skip
    log = fit(model, task_loader, **kwargs)

    summary: dict[str, Any] = {}
    if rank == 0:
        summary = write_run(cfg, out, model, log, brain, heldout, teacher_model, spec_layers,
                             device, world, t_start)  # fmt: skip
    barrier()
    if teacher is not None and hasattr(teacher, "close"):
        teacher.close()
    return summary


# ----------------------------------------------------------------------------- reading a run


class RunResult(NamedTuple):
    """A finished run read back by :func:`load_run`."""

    model: nn.Module
    layers: list[str]
    brain_rdms: dict[str, Any]
    stimuli: torch.Tensor | None
    stimulus_ids: list[Any]
    config: dict[str, Any]
    log: Any


def load_run(folder: str | os.PathLike) -> RunResult:
    """The trained model, its layers, the target RDMs and the held-out stimuli of a run folder.

    What ``brainrdl compare`` needs to compare a trained network with the brain without the
    original data: the model is rebuilt from ``config.toml``'s spec (a ``module:`` spec needs
    your code importable) and ``model.pt`` (read with ``weights_only=True``); target RDMs come
    from ``brain_rdms/*.hdf5`` (rsatoolbox's hdf5 reader, no unpickling); the stimuli from
    ``heldout_stimuli.npz`` (``allow_pickle=False``).

    Examples
    --------
    >>> load_run("no/such/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no run folder at 'no/such/run' (expected config.toml and model.pt in it)
    """
    import pandas as pd
    import rsatoolbox

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"no run folder at {str(folder)!r} (expected {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME} in it)")  # fmt: skip
    cfg = validate(parse_text((folder / CONFIG_NAME).read_text(encoding="utf-8")),
                   check_paths=False)  # fmt: skip
    model, _, spec_layers = build_model(cfg["model"]["spec"], cfg["model"]["options"])
    model.load_state_dict(torch.load(folder / WEIGHTS_NAME, map_location="cpu",
                                     weights_only=True))  # fmt: skip
    model.eval()
    brain: dict[str, Any] = {}
    index = folder / "brain_rdms" / "index.json"
    if index.is_file():
        for name, file in json.loads(index.read_text()).items():
            brain[name] = rsatoolbox.rdm.load_rdm(str(folder / "brain_rdms" / file),
                                                  file_type="hdf5")  # fmt: skip
    stimuli, ids = None, []
    if (folder / "heldout_stimuli.npz").is_file():
        stimuli, ids = load_stimuli(folder / "heldout_stimuli.npz")
    layers = list(cfg["heldout"]["layers"]) or spec_layers or list(cfg["alignment"])
    log = pd.read_csv(folder / "log.csv") if (folder / "log.csv").is_file() else None
    return RunResult(model, layers, brain, stimuli, ids, cfg, log)
