"""Training toward teachers: teachers, loss functionals and modules, the ``fit`` loop.

Brain batches, separate batch-norm statistics, checkpoints and exact resume (``resume``), the
run's health checks (``guards``), mixed precision, held-out monitoring (``monitor``), the loss
registry and the distributed helpers live here too.
"""
