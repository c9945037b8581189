"""Loss functionals (``brainrdl.functional.rdl_loss`` and friends), as in ``torch.nn.functional``.

This public module re-exports :mod:`brainrdl.train.functional`, where they are defined.
"""

from brainrdl.train.functional import *  # noqa: F403
from brainrdl.train.functional import __all__  # noqa: F401
