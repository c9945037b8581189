"""MEG / EEG: MNE epochs (in memory or ``-epo.fif``) → time-resolved RDMs.

One call::

    rdms = rdms_from_epochs("sub-01-epo.fif", conditions="event", window=0.02)
    # one RDM per 20 ms window, rdm descriptor "time"; crossnobis with per-time-point noise

Modules: ``epochs`` (:func:`rdms_from_epochs`, :func:`read_epochs_data`). Needs MNE, the
``[meeg]`` extra (imported only when called).
"""

from data_adapters.meeg.epochs import METHODS, EpochsData, rdms_from_epochs, read_epochs_data

__all__ = ["METHODS", "EpochsData", "rdms_from_epochs", "read_epochs_data"]
