"""The ``brainrdl`` command line: one module per command, wired by ``brainrdl.cli.main``.

The CLI sits at the top of the dependency graph: it is the only part of ``brainrdl`` that may import
``data_adapters``. Nothing is imported here, so ``python -m brainrdl.cli.main`` (what ``torchrun``
runs) finds the module unimported and runs it without runpy's double-import warning.
"""
