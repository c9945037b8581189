"""Command line interface: ``brainrdl demo``, ``brainrdl compare``, ``brainrdl make-demo-data``.

Each sub-command lives in the module that does the work; this file only wires argparse to them.
Each module provides ``add_arguments(parser)`` and ``run(args) -> int``.

Examples
--------
>>> from brainrdl.cli.main import build_parser
>>> build_parser().parse_args(["demo", "--out", "results"]).out
'results'
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> (module, help); each module provides add_arguments(parser) and run(args) -> int
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "brainrdl.cli.demo",
        "train a small CNN on the embedded digits with and without RDL toward the IT-like "
        "region; writes summary.json and figures",
    ),
    "compare": (
        "brainrdl.cli.compare",
        "compare saved layer RDMs (or a model checkpoint over a stimulus folder) with brain "
        "RDMs; writes a CSV table and PNG plots",
    ),
    "searchlight": (
        "brainrdl.cli.searchlight",
        "searchlight RDMs from NIfTI betas + conditions + mask, compared with model RDMs; "
        "writes a NIfTI map and PNG per model (--shard I/N and --merge for SLURM arrays)",
    ),
    "make-demo-data": (
        "data_adapters.demo",
        "write the embedded demo study (NIfTI betas, BOLD + events, atlas, NWB) to a folder",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``brainrdl`` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="brainrdl",
        description="Representational distance learning: train networks whose layer RDMs "
        "match brain RDMs, and compare model layers with brain regions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainrdl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
