"""The ``brainrdl`` command line: one module per command, wired by ``main``.

The CLI sits at the top of the dependency graph: it is the only part of ``brainrdl`` that may import
``data_adapters``.
"""

from brainrdl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
