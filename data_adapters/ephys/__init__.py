"""Electrophysiology: spike times + trial tables, or NWB files → rate Datasets / RDMs.

Modules: ``spikes`` (spike counting in windows, rates, RDMs per region and window) and ``nwb``
(reads units and trials from NWB files, then uses ``spikes``).
"""

from data_adapters.ephys.nwb import NWBSpikes, datasets_from_nwb, rdms_from_nwb, read_nwb_spikes
from data_adapters.ephys.spikes import (
    CV_METHODS,
    METHODS,
    as_spike_trains,
    as_trial_table,
    as_windows,
    check_method_transform,
    count_spikes,
    dataset_from_spikes,
    datasets_from_spikes,
    rdms_from_datasets,
    rdms_from_spikes,
)

__all__ = [
    "CV_METHODS",
    "METHODS",
    "NWBSpikes",
    "as_spike_trains",
    "as_trial_table",
    "as_windows",
    "check_method_transform",
    "count_spikes",
    "dataset_from_spikes",
    "datasets_from_nwb",
    "datasets_from_spikes",
    "rdms_from_datasets",
    "rdms_from_nwb",
    "rdms_from_spikes",
    "read_nwb_spikes",
]
