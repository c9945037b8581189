"""Config-driven training runs: build everything from a validated config, call ``fit``, and write
the run folder (resolved config, environment, log, curves, checkpoints, the final layer × region
table, ``summary.json``); read a finished run back.

This room orchestrates: it sits above ``train`` (the loop, the config schema, data sharding) and
``analysis`` (tables and plots of the finished model), below ``cli``.
"""
