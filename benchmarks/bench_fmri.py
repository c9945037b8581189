"""Benchmark: whole-brain beta files to crossnobis RDMs for 10 atlas ROIs.

A 2 mm MNI-sized grid (91 x 109 x 91), 8 runs x 100 conditions = 800 beta volumes in one
uncompressed 4D NIfTI (2.9 GB float32), and a 10-region atlas of spheres (~1,400 voxels each).
Times ``data_adapters.fmri.rdms_from_betas(..., method="crossnobis")`` from the files, in a fresh
process so that the peak memory (ru_maxrss and tracemalloc) is the pipeline's own, and writes
``docs/benchmarks-fmri.md``.

Run by hand (not a test)::

    python benchmarks/bench_fmri.py --repeats 2

Examples
--------
>>> from benchmarks.bench_fmri import sphere_atlas
>>> atlas = sphere_atlas((20, 20, 20), n_rois=2, radius=3)
>>> sorted(set(atlas.ravel().tolist()))
[0, 1, 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = (91, 109, 91)
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def sphere_atlas(shape: tuple[int, int, int], n_rois: int = 10, radius: int = 7,
                 seed: int = 0) -> np.ndarray:
    """Integer atlas of ``n_rois`` non-overlapping spheres (labels 1..n_rois)."""
    rng = np.random.default_rng(seed)
    atlas = np.zeros(shape, dtype=np.int16)
    grid = np.indices(shape)
    placed = 0
    while placed < n_rois:
        centre = [rng.integers(radius + 1, s - radius - 1) for s in shape]
        dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        ball = dist2 <= radius**2
        if atlas[ball].any():
            continue
        placed += 1
        atlas[ball] = placed
    return atlas


def generate(data_dir: Path, n_runs: int, n_cond: int, seed: int = 0) -> None:
    """Write betas.nii (streamed volume by volume), atlas.nii.gz, labels.tsv, design.tsv."""
    import nibabel as nib
    import pandas as pd
    from tqdm import tqdm

    data_dir.mkdir(parents=True, exist_ok=True)
    atlas = sphere_atlas(GRID)
    nib.save(nib.Nifti1Image(atlas, AFFINE), data_dir / "atlas.nii.gz")
    pd.DataFrame({"index": range(1, 11), "name": [f"roi{i:02d}" for i in range(1, 11)]}).to_csv(
        data_dir / "labels.tsv", sep="\t", index=False)
    cond = [f"stim_{c:03d}" for c in range(n_cond)]
    pd.DataFrame({"condition": cond * n_runs,
                  "run": np.repeat(np.arange(1, n_runs + 1), n_cond)}).to_csv(
        data_dir / "design.tsv", sep="\t", index=False)
    rng = np.random.default_rng(seed)
    inside = atlas > 0
    patterns = rng.standard_normal((n_cond, int(inside.sum()))).astype(np.float32)
    n_vol = n_runs * n_cond
    header = nib.Nifti1Header()
    header.set_data_shape((*GRID, n_vol))
    header.set_data_dtype(np.float32)
    header.set_qform(AFFINE, code=1)
    header.set_sform(AFFINE, code=1)
    header.set_xyzt_units("mm", "sec")
    path = data_dir / "betas.nii"
    offset = int(header.get_data_offset()) or 352
    header.set_data_offset(offset)
    with open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * (offset - f.tell()))
    data = np.memmap(path, dtype=np.float32, mode="r+", offset=offset,
                     shape=(*GRID, n_vol), order="F")
    for t in tqdm(range(n_vol), desc="writing betas", unit="vol"):
        vol = rng.standard_normal(GRID, dtype=np.float32)
        vol[inside] += patterns[t % n_cond]
        data[..., t] = vol
    data.flush()
    del data


def run_pipeline(data_dir: Path, repeats: int, noise: str | None) -> dict:
    """Time files -> 10 crossnobis RDMs; return timings and peak memory of this process."""
    import nilearn.image  # noqa: F401
    import rsatoolbox.data  # noqa: F401

    # warm the imports (torch, rsatoolbox, nilearn) outside the timed region
    import brainrdl.rsa.rdm  # noqa: F401
    import data_adapters.fmri as fmri

    times = []
    tracemalloc.start()
    for _ in range(repeats):
        t0 = time.perf_counter()
        rdms = fmri.rdms_from_betas(
            data_dir / "betas.nii", data_dir / "design.tsv", atlas=data_dir / "atlas.nii.gz",
            labels=data_dir / "labels.tsv", method="crossnobis", noise=noise, progress=False,
        )
        times.append(time.perf_counter() - t0)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    import nibabel as nib

    atlas = np.asarray(nib.load(data_dir / "atlas.nii.gz").dataobj)
    n_vox = np.bincount(atlas.ravel())[1:].tolist()
    return {
        "times_s": times,
        "n_rois": len(rdms),
        "n_cond": int(next(iter(rdms.values())).n_cond),
        "n_vox": n_vox,
        "traced_peak_mb": traced_peak / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/brainrdl_bench_fmri"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--conditions", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the 2.9 GB data folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-fmri.md")
    parser.add_argument("--child", choices=["identity", "shrinkage"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # fresh process: peak memory is the pipeline's own
        noise = None if args.child == "identity" else "shrinkage"
        print(json.dumps(run_pipeline(args.data_dir, args.repeats, noise)))
        return 0

    if not (args.data_dir / "betas.nii").exists():
        t0 = time.perf_counter()
        generate(args.data_dir, args.runs, args.conditions)
        print(f"generated data in {time.perf_counter() - t0:.1f} s")
    results = {}
    for noise in ("identity", "shrinkage"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", noise, "--data-dir", str(args.data_dir),
             "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )
        results[noise] = json.loads(out.stdout.strip().splitlines()[-1])
        print(noise, results[noise])
    size_gb = (args.data_dir / "betas.nii").stat().st_size / 1e9
    write_report(args.out, results, size_gb, args)
    if not args.keep:
        shutil.rmtree(args.data_dir)
    return 0


def write_report(path: Path, results: dict, size_gb: float, args: argparse.Namespace) -> None:
    import os

    lines = [
        "# fMRI adapter benchmark",
        "",
        "Written by `python benchmarks/bench_fmri.py` (do not edit by hand).",
        "",
        f"- Grid {GRID[0]}x{GRID[1]}x{GRID[2]} (2 mm), {args.runs} runs x {args.conditions} "
        f"conditions = {args.runs * args.conditions} beta volumes in one uncompressed 4D NIfTI "
        f"({size_gb:.2f} GB float32), 10 spherical atlas ROIs of "
        f"{min(results['identity']['n_vox'])}-{max(results['identity']['n_vox'])} voxels "
        "(radius 7 voxels).",
        "- Call: `data_adapters.fmri.rdms_from_betas(betas.nii, design.tsv, atlas=atlas.nii.gz, "
        "labels=labels.tsv, method=\"crossnobis\", noise=...)` from the files to 10 RDMs "
        "(leave-one-run-out crossnobis), in a fresh process after warming the imports.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work "
        f"while measured), Python {platform.python_version()}. The betas file had just been "
        "written, so it was read from the page cache, not from a cold disk.",
        "",
        "| noise precision | time per call (s) | best (s) | peak RSS (MB) | traced peak (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("identity", "none (identity)"),
                        ("shrinkage", "shrinkage from betas (`noise=\"shrinkage\"`)")):
        r = results[name]
        times = ", ".join(f"{t:.1f}" for t in r["times_s"])
        lines.append(f"| {label} | {times} | {min(r['times_s']):.1f} | {r['maxrss_mb']:.0f} | "
                     f"{r['traced_peak_mb']:.0f} |")
    lines += [
        "",
        "Target from issue 3: under 30 s from files to 10 crossnobis RDMs. The 4D file is read a "
        "chunk of volumes (256 MB) at a time, so memory stays near the ROI data plus one chunk "
        "rather than the 2.9 GB image (uncompressed files are memory-mapped: the peak RSS counts "
        "the mapped file pages, which the OS can drop; the traced peak is the memory the pipeline "
        "allocates). `noise=\"shrinkage\"` estimates one 1,419 x 1,419 precision per ROI "
        "(rsatoolbox's Schafer-Strimmer estimator, computed with two matrix products: "
        "rsatoolbox's own loop took ~220 s for the 10 ROIs).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
