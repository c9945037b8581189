"""``brainrdl searchlight``: NIfTI betas + conditions + mask + model RDMs → NIfTI maps + PNG.

One model map per model RDM (``--models``: an rsatoolbox RDMs HDF5 file, one RDM per layer,
named by a ``layer`` or ``name`` rdm descriptor) is written as ``<name>.nii.gz`` with a glass-brain
``<name>.png``; ``summary.json`` lists the settings and outputs.

Scale out:

- under ``torchrun --nproc_per_node=N brainrdl searchlight ...`` the blocks of centres are split
  over the ranks (gloo on CPU, NCCL with ``--device cuda``) and rank 0 writes the maps, identical
  to a single-process run;
- ``--shard i/N`` (e.g. ``--shard $SLURM_ARRAY_TASK_ID/N``) computes one part of the centres and
  writes ``searchlight_rdms.shard-i-of-N.h5``; ``--merge FILE [FILE ...]`` joins the parts and
  makes the maps.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["betas.nii", "--conditions", "design.tsv", "--mask", "m.nii",
...                           "--models", "models.h5", "--shard", "2/8"])
>>> parse_shard(args.shard)
(2, 8)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``brainrdl searchlight`` on ``parser``."""
    parser.add_argument("betas", nargs="*",
                        help="a 4D beta NIfTI, or several 3D NIfTIs (one per observation)")
    parser.add_argument("--conditions", help="TSV with a condition (and run) column per volume, "
                        "e.g. an events/design table")
    parser.add_argument("--mask", required=True, help="brain mask NIfTI on the data grid")
    parser.add_argument("--models", help="model RDMs (rsatoolbox RDMs .hdf5/.h5); one map each")
    parser.add_argument("--radius", type=float, default=3.0, help="in voxels (default 3)")
    parser.add_argument("--threshold", type=float, default=1.0,
                        help="fraction of a sphere inside the mask for a centre (default 1)")
    parser.add_argument("--truncate", action="store_true",
                        help="keep only neighbours inside the mask")
    parser.add_argument("--method", default="correlation",
                        choices=["correlation", "euclidean", "mahalanobis", "crossnobis"],
                        help="searchlight RDM dissimilarity (default correlation; crossnobis "
                        "needs a run column in the --conditions TSV)")
    parser.add_argument("--noise", default="none", choices=["none", "shrinkage_diag", "diag"],
                        help="per-searchlight noise from the betas (mahalanobis/crossnobis)")
    parser.add_argument("--compare", default="corr", help="comparison method (default corr)")
    parser.add_argument("--memory-budget", type=float, default=5e8, help="bytes per block")
    parser.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="precision of the RDMs (float32: about 2x faster, ~1e-7 error)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="compute part I of N of the centres into an HDF5 shard and stop")
    parser.add_argument("--merge", nargs="+", default=None, metavar="SHARD",
                        help="join shard files (from --shard) and make the maps")
    parser.add_argument("--save-rdms", action="store_true",
                        help="also write the searchlight RDMs to searchlight_rdms.h5")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--out", default="brainrdl-searchlight", help="output folder")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → ``(i, N)`` with 0 <= i < N, or a ValueError naming ``--shard``."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4); got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N; got {text!r}")
    return i, n


def _init_distributed(device: str | None) -> bool:
    """Join the torchrun process group when launched with WORLD_SIZE > 1."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    cuda = device is not None and str(device).startswith("cuda")
    backend = "nccl" if cuda and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return True


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl searchlight``; returns the exit status (0 on success, 2 on bad input)."""
    import torch

    from data_adapters.fmri.searchlight import (
        merge_searchlight_shards,
        open_searchlight_rdms,
        searchlight_rdms,
    )

    out = Path(args.out)
    try:
        shard = parse_shard(args.shard) if args.shard else None
        if args.merge and (shard or args.betas):
            raise ValueError("--merge takes shard files instead of betas; drop the betas/--shard")
        if not args.merge and not args.betas:
            raise ValueError("give the betas (a 4D NIfTI or 3D NIfTIs), or --merge SHARDS")
        if not args.merge and not args.conditions:
            raise ValueError("--conditions TSV (condition and run per volume) is required")
        if shard is None and not args.models:
            raise ValueError("--models FILE (rsatoolbox RDMs .hdf5) is required to make maps")
        models = _load_models(args.models) if args.models else None
        for path in [args.mask, *(args.betas or []), *(args.merge or [])]:
            if not Path(path).is_file():
                raise FileNotFoundError(f"no such file {path!r}")
    except (ValueError, FileNotFoundError) as err:
        print(f"brainrdl searchlight: error: {err}")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    noise = None if args.noise == "none" else args.noise
    betas = args.betas[0] if len(args.betas or []) == 1 else args.betas
    kwargs = dict(mask=args.mask, radius=args.radius, threshold=args.threshold,
                  truncate_at_boundary=args.truncate, method=args.method, noise=noise,
                  memory_budget=args.memory_budget, device=args.device,
                  dtype=getattr(torch, args.dtype))
    rank = 0
    try:
        if args.merge:
            store = merge_searchlight_shards(args.merge, out / "searchlight_rdms.h5")
            searchlight = open_searchlight_rdms(store)
        elif shard is not None:
            path = out / f"searchlight_rdms.shard-{shard[0]}-of-{shard[1]}.h5"
            searchlight_rdms(betas, args.conditions, shard=shard, out=path, **kwargs)
            print(f"wrote {path}; join the {shard[1]} shards with: brainrdl searchlight --merge "
                  f"{out}/searchlight_rdms.shard-*-of-{shard[1]}.h5 --mask {args.mask} "
                  "--models MODELS --out DIR")
            return 0
        else:
            distributed = _init_distributed(args.device)
            if distributed:
                import torch.distributed as dist

                rank = dist.get_rank()
            if args.save_rdms:
                store = searchlight_rdms(betas, args.conditions, out=out / "searchlight_rdms.h5",
                                         **kwargs)
                searchlight = open_searchlight_rdms(store)
            else:
                searchlight = searchlight_rdms(betas, args.conditions, **kwargs)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"brainrdl searchlight: error: {err}")
        return 2
    if rank != 0:
        return 0
    try:
        written = _write_maps(models, searchlight, args, out)
    except (ValueError, TypeError) as err:
        print(f"brainrdl searchlight: error: {err}")
        return 2
    finally:
        if hasattr(searchlight, "close"):
            searchlight.close()
    summary = {"radius": args.radius, "threshold": args.threshold, "method": args.method,
               "compare": args.compare, "noise": args.noise, "maps": written}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(written)} map(s) to {out}")
    return 0


def _load_models(path: str):
    from rsatoolbox.rdm import load_rdm

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--models: no such file {path!r}")
    if p.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"--models: {path!r} must be an rsatoolbox RDMs HDF5 file (.hdf5, .h5)")
    return load_rdm(str(p), file_type="hdf5")


def _write_maps(models, searchlight, args, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import nibabel as nib

    from brainrdl.analysis.searchlight import plot_searchlight, searchlight_map

    maps = searchlight_map(models, searchlight, method=args.compare, mask_img=args.mask)
    written = {}
    for name, img in maps.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        nib.save(img, out / f"{safe}.nii.gz")
        entry = {"nifti": f"{safe}.nii.gz"}
        if not args.no_plots:
            plot_searchlight(img, kind="glass", title=f"{name}: searchlight fit",
                             colorbar_label=f"model fit ({args.compare})",
                             output_file=out / f"{safe}.png")
            entry["png"] = f"{safe}.png"
        written[name] = entry
    return written
