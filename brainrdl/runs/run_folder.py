"""The run folder of ``brainrdl train``: resolved config, environment, log, curves, table, summary.

:func:`write_run` is called by :func:`brainrdl.runs.runner.run_training` on rank 0 after
training; :func:`brainrdl.runs.runner.load_run` reads a run folder back.

Examples
--------
>>> env = environment(__import__("torch").device("cpu"), 1)
>>> env["device"], env["world_size"], "torch" in env["versions"]
('cpu', 1, True)
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["CHECKPOINT_DIR", "CONFIG_NAME", "SUMMARY_NAME", "WEIGHTS_NAME", "environment",
           "split_targets", "write_run"]  # fmt: skip

CONFIG_NAME = "config.toml"
SUMMARY_NAME = "summary.json"
WEIGHTS_NAME = "model.pt"
CHECKPOINT_DIR = "checkpoints"


def split_targets(rdms: Any, descriptor: str) -> dict[str, Any]:
    """``{target name: RDMs}`` by the rdm descriptor ``descriptor`` (one target "brain" if absent).

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> r = rsatoolbox.rdm.RDMs(np.ones((2, 3)), rdm_descriptors={"roi": ["V1", "IT"]})
    >>> sorted(split_targets(r, "roi"))
    ['IT', 'V1']
    """
    if isinstance(rdms, Mapping):
        return dict(rdms)
    if descriptor not in rdms.rdm_descriptors:
        return {"brain": rdms}
    names = list(dict.fromkeys(str(v) for v in rdms.rdm_descriptors[descriptor]))
    return {n: rdms.subset(descriptor, [v for v in rdms.rdm_descriptors[descriptor]
                                        if str(v) == n]) for n in names}  # fmt: skip


def environment(device: torch.device, world: int) -> dict[str, Any]:
    import brainrdl

    versions = {"python": platform.python_version(), "brainrdl": brainrdl.__version__}
    from importlib import metadata

    for name in ("torch", "torchvision", "numpy", "rsatoolbox", "pandas", "nibabel"):
        module = sys.modules.get(name)
        try:  # the imported module's own version first (e.g. torch's "+cu130" build tag)
            versions[name] = getattr(module, "__version__", None) or metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional
            versions[name] = None
    env: dict[str, Any] = {
        "versions": versions,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "world_size": world,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "command": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": {},
    }
    for where, folder in (("cwd", Path.cwd()), ("brainrdl", Path(__file__).resolve().parents[2])):
        try:
            sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, timeout=5, check=True)  # fmt: skip
            dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"],
                                   capture_output=True, text=True, timeout=5)  # fmt: skip
            env["git"][where] = {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
        except (OSError, subprocess.SubprocessError):
            env["git"][where] = None
    return env


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_run(cfg, out, model, log, brain, heldout, teacher_model, spec_layers, device, world,
               t_start) -> dict[str, Any]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from brainrdl.analysis.layer_comparison import compare_layers
    from brainrdl.analysis.layer_rdms import extract_rdms
    from brainrdl.analysis.plot import plot_log
    from brainrdl.nets.taps import unwrap_model

    files = [CONFIG_NAME, "environment.json", "log.csv", WEIGHTS_NAME, SUMMARY_NAME,
             f"{CHECKPOINT_DIR}/last.pt"]  # fmt: skip
    (out / "environment.json").write_text(json.dumps(environment(device, world), indent=2))
    log.to_csv(out / "log.csv", index=False)
    inner = unwrap_model(model)
    torch.save(inner.state_dict(), out / WEIGHTS_NAME)

    fig = plot_log(log)
    from matplotlib.ticker import MaxNLocator

    for ax, label in zip(fig.axes, ("loss", "accuracy", "Pearson r")):
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"learning curves ({world} process{'es' if world > 1 else ''})", y=1.02)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    files.append("learning_curves.png")
    rsa_cols = [c for c in log if c.startswith("heldout_rsa/")]
    if rsa_cols:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for c in rsa_cols:
            layer = c.split("/", 1)[1]
            label = f"{layer} → {cfg['alignment'][layer]['target']}"
            ax.plot(log["epoch"], log[c], marker="o", label=label)
        ax.set(xlabel="epoch", ylabel="Pearson r (layer RDM vs target RDM)",
               title="held-out RSA per aligned layer")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        fig.savefig(out / "heldout_rsa.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append("heldout_rsa.png")
    tensorboard = _tensorboard(log, out)
    if tensorboard:
        files.append("tensorboard/")

    table = None
    targets: dict[str, Any] = {}
    if heldout is not None:
        images, ids = heldout
        np.savez(out / "heldout_stimuli.npz", images=images.cpu().numpy(),
                 stimulus_ids=np.asarray([str(i) if not isinstance(i, int) else i for i in ids]))
        files.append("heldout_stimuli.npz")
        desc = cfg["teacher"]["pattern_descriptor"]
        if brain is not None:
            targets = {name: r.subset_pattern(desc, list(ids)) for name, r in brain.rdms.items()
                       if {str(v) for v in r.pattern_descriptors.get(desc, [])} >=
                       {str(i) for i in ids}}  # fmt: skip
        elif teacher_model is not None:
            rdms = extract_rdms(teacher_model, images, list(cfg["teacher"]["layers"]),
                                         method=cfg["heldout"]["rdm_method"],
                                         stimulus_ids=list(ids), progress=False,
                                         device=device)  # fmt: skip
            targets = split_targets(rdms, "layer")
        (out / "brain_rdms").mkdir(exist_ok=True)
        index = {}
        for name, r in targets.items():
            path = out / "brain_rdms" / f"{_safe_name(name)}.hdf5"
            r.save(str(path), file_type="hdf5", overwrite=True)
            index[name] = path.name
        (out / "brain_rdms" / "index.json").write_text(json.dumps(index, indent=2))
        files.append("brain_rdms/")
        layers = list(cfg["heldout"]["layers"]) or spec_layers or list(cfg["alignment"])
        if targets and layers:
            table = compare_layers(
                inner, targets, stimuli=images, layer_names=layers, stimulus_ids=list(ids),
                method=cfg["heldout"]["method"], device=device,
                extract_kwargs={"method": cfg["heldout"]["rdm_method"],
                                "dtype": torch.float64, "progress": False},
            )  # fmt: skip
            table.to_csv(out / "layer_region.csv", index=False)
            files.append("layer_region.csv")
            _table_figure(table, out)
            files.append("layer_region.png")

    last = log.iloc[-1].to_dict() if len(log) else {}
    summary = {
        "config": CONFIG_NAME,
        "model": cfg["model"]["spec"],
        "teacher": cfg["teacher"]["kind"] if cfg["teacher"]["kind"] != "brain"
        else f"brain:{cfg['teacher']['source']}",
        "alignment": {
            k: {"target": v["target"], "loss": v["loss"], "weight": v["weight"]}
            for k, v in cfg["alignment"].items()
        },
        "epochs": cfg["epochs"],
        "epochs_logged": len(log),
        "world_size": world,
        "global_batch_size": cfg["data"]["batch_size"],
        "brain_batch_size": cfg["training"]["brain_batch_size"],
        "final": {k: _plain(v) for k, v in last.items()},
        "heldout_rsa_metric": "Pearson r between upper triangles of the layer's RDM (the loss's "
        "distance) and its target RDM on the held-out stimuli",
        "n_heldout_stimuli": len(heldout[1]) if heldout is not None else 0,
        "layer_region_method": cfg["heldout"]["method"],
        "layer_region": None if table is None else
        [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")],
        "tensorboard": tensorboard,
        "seconds": round(time.perf_counter() - t_start, 2),
        "files": files,
    }
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _tensorboard(log: Any, out: Path) -> bool:
    """TensorBoard events of the log (one point per epoch); False when not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        return False
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        for row in log.to_dict(orient="records"):
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(key, value, int(row["epoch"]))
    return True


def _table_figure(table: Any, out: Path) -> None:
    import matplotlib.pyplot as plt

    grid = table.pivot_table(index="layer", columns="region", values="similarity", sort=False)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * grid.shape[1], 1.2 + 0.45 * grid.shape[0]))
    im = ax.imshow(grid.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    ax.set(xticks=range(grid.shape[1]), xticklabels=list(grid.columns), yticks=range(grid.shape[0]),
           yticklabels=list(grid.index), xlabel="region", ylabel="layer",
           title="held-out layer × region RSA")  # fmt: skip
    for (i, j), v in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    method = table["method"].iloc[0] if "method" in table else "similarity"
    fig.colorbar(im, ax=ax, label=f"RSA ({method})")
    fig.savefig(out / "layer_region.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
