"""``brainrdl train CONFIG``: train a network toward brain (or network) RDMs from a config file.

The config (TOML; YAML when PyYAML is installed) is checked against the schema of
:mod:`brainrdl.train.config` before anything runs; :func:`brainrdl.runs.runner.run_training`
builds the parts, calls :func:`brainrdl.fit` and writes the run folder (``--out``). Under
``torchrun --nproc_per_node=N -m brainrdl.cli.main train CONFIG --out DIR`` every process runs
this command; see the how-to "Train on a cluster".

``brainrdl train --print-config`` prints the commented default config, which trains on the
embedded demo data as printed.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["run.toml", "--out", "runs/a", "--resume"])
>>> a.config, a.out, a.resume
('run.toml', 'runs/a', True)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``brainrdl train`` options on ``parser``."""
    parser.add_argument("config", nargs="?", help="config file (.toml, or .yaml with PyYAML)")
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<config file name>)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (from scratch "
                        "when it has none yet)")  # fmt: skip
    parser.add_argument("--print-config", action="store_true",
                        help="print the commented default config (it trains on the embedded "
                        "demo data) and exit")  # fmt: skip
    parser.add_argument("--check", action="store_true",
                        help="check the config and exit without training")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run ``brainrdl train``; 0 on success, 2 on a bad config or missing input."""
    from brainrdl.train.config import ConfigError, default_config_text, load_config

    if args.print_config:
        sys.stdout.write(default_config_text())
        return 0
    if not args.config:
        print("brainrdl train: error: give a CONFIG file (or --print-config for a default one)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        cfg = load_config(args.config)
    except (ConfigError, FileNotFoundError) as err:
        print(f"brainrdl train: error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: the config is valid")
        return 0
    from brainrdl.cli._train_sources import SOURCES
    from brainrdl.runs.runner import run_training

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        summary = run_training(cfg, out, resume=args.resume, sources=SOURCES)
    except (ConfigError, FileExistsError, FileNotFoundError) as err:
        print(f"brainrdl train: error: {err}", file=sys.stderr)
        return 2
    if summary:  # rank 0
        final = summary["final"]
        shown = {k: v for k, v in final.items()
                 if k.startswith(("heldout_rsa/", "val_accuracy", "task_loss"))}  # fmt: skip
        print("  ".join(f"{k} {v:.3f}" for k, v in shown.items() if isinstance(v, float)))
        print(f"wrote {out / 'summary.json'}")
    return 0
