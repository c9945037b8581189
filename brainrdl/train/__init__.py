"""Training toward teachers: teachers, loss functionals and modules, the ``fit`` loop.

Brain batches, separate batch-norm statistics, checkpoints and the distributed helpers live here
too.
"""
