"""Adapters from lab file formats (NIfTI, BIDS events, spike times, NWB) to rsatoolbox objects.

Submodules
----------
fmri
    Beta images or BOLD runs + events, masks and atlases → rsatoolbox Datasets / RDMs per ROI.
ephys
    Spike times + trial tables or NWB files → rate Datasets / RDMs per region and time window.
demo
    Builds the embedded demo study (NIfTI + NWB) deterministically and offline.
bids
    BIDS datasets with fMRIPrep derivatives → per-subject ROI RDMs (through nilearn).
meeg
    MNE epochs (MEG / EEG) → time-resolved RDMs.
"""
