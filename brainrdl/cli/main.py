"""Command line interface: ``brainrdl demo``, ``brainrdl compare``, ``brainrdl make-demo-data``.

Each sub-command lives in the module that does the work; this file only wires argparse to them.
Each module provides ``add_arguments(parser)`` and ``run(args) -> int``.

Errors in the input (a bad option value, an unreadable file, data the method cannot use) end the
command as argparse does: ``brainrdl: error: ...`` on stderr and exit status 2, without a
traceback; ``brainrdl --debug COMMAND ...`` shows the traceback instead.

Examples
--------
>>> from brainrdl.cli.main import build_parser
>>> build_parser().parse_args(["demo", "--out", "results"]).out
'results'
"""

from __future__ import annotations

import argparse
import importlib
import re
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
        "compare models (by spec, checkpoint or saved layer RDMs) with brain RDMs, layer by "
        "region; writes a CSV table and PNG plots",
    ),
    "rdms": (
        "brainrdl.cli.rdms",
        "brain RDMs per region from NIfTI betas + an atlas or from an NWB file; writes one "
        "rsatoolbox HDF5 file for brainrdl compare --brain",
    ),
    "train": (
        "brainrdl.cli.train",
        "train a network toward brain RDMs from a config file (one process or torchrun); "
        "writes a run folder with config.toml and summary.json",
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

# exit status of a command stopped by bad input, as argparse uses for bad options
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``brainrdl`` argument parser with every sub-command registered."""
    from brainrdl import __version__

    parser = argparse.ArgumentParser(
        prog="brainrdl",
        description="Representational distance learning: train networks whose layer RDMs "
        "match brain RDMs, and compare model layers with brain regions.",
    )
    parser.add_argument("--version", action="version", version=f"brainrdl {__version__}",
                        help="print the version and exit")  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true",
        help="show the full traceback when a command fails (default: one error line)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name, _parser=sub_parser)
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
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("brainrdl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the CLI's one boundary: a line, not a traceback
        if args.debug:
            raise
        print(f"{args._parser.prog}: error: {describe_error(err, args._parser)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE


def describe_error(err: BaseException, parser: argparse.ArgumentParser | None = None) -> str:
    """One line for ``err``: its message, the option it concerns when one can be told, and a
    pointer to ``--debug`` for errors that are not about the input.

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="brainrdl compare")
    >>> _ = p.add_argument("--n-bootstrap", type=int)
    >>> describe_error(ValueError("n_bootstrap=-3 is out of range; expected n_bootstrap ≥ 0"), p)
    'argument --n-bootstrap: n_bootstrap=-3 is out of range; expected n_bootstrap ≥ 0'
    """
    from brainrdl.errors import BrainrdlError

    message = str(err) or type(err).__name__
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    if parser is not None:
        option = _option_named_in(message, parser)
        if option is not None:
            message = f"argument {option}: {message}"
    if not isinstance(err, (BrainrdlError, ValueError, TypeError, OSError, KeyError)):
        # not a recognised input problem: say what it was, and how to see where it came from
        message = f"{type(err).__name__}: {message} (run with brainrdl --debug for the traceback)"
    return message


def _option_named_in(message: str, parser: argparse.ArgumentParser) -> str | None:
    """The ``--option`` whose parameter name (``n_bootstrap=``...) starts the message, if any."""
    match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", message)
    if match is None:
        return None
    for action in parser._actions:
        if action.dest == match.group(1) and action.option_strings:
            return max(action.option_strings, key=len)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
