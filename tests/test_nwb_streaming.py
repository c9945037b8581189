"""NWB at scale: open file objects (h5py.File, open(..., 'rb')) and lazy reads of selected units."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")
h5py = pytest.importorskip("h5py")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402

from data_adapters.demo.ephys import RESPONSE_WINDOW, write_demo_nwb  # noqa: E402
from data_adapters.ephys import nwb  # noqa: E402

N_UNITS, N_SPIKES = 40, 5000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """40 units x 5000 spikes (1.6 MB of spike times) in 40 kB chunks, as large NWB files store
    them, 20 trials, two regions."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    rng = np.random.default_rng(0)
    f = NWBFile(session_description="lazy", identifier="lazy-1",
                session_start_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    flat = np.concatenate([np.sort(rng.uniform(0, 100, N_SPIKES)) for _ in range(N_UNITS)])
    spike_times = VectorData(name="spike_times", description="spike times (s)",
                             data=H5DataIO(flat, chunks=(N_SPIKES,)))
    f.units = Units(
        name="units", description="simulated",
        id=ElementIdentifiers(name="id", data=np.arange(100, 100 + N_UNITS)),
        columns=[
            spike_times,
            VectorIndex(name="spike_times_index", target=spike_times,
                        data=np.arange(1, N_UNITS + 1) * N_SPIKES),
            VectorData(name="location", description="region",
                       data=np.array(["V1"] * (N_UNITS // 2) + ["IT"] * (N_UNITS // 2),
                                     dtype=object)),
        ],
    )  # fmt: skip
    f.add_trial_column("stimulus", "stimulus id")
    for k in range(20):
        f.add_trial(start_time=5.0 * k, stop_time=5.0 * k + 1, stimulus=f"s{k % 4}")
    path = tmp_path_factory.mktemp("nwb") / "big.nwb"
    with NWBHDF5IO(str(path), "w") as out:
        out.write(f)
    with h5py.File(path, "r") as h5:  # the layout the test is about
        assert h5["units/spike_times"].chunks == (N_SPIKES,)
    return path


class CountingFile(io.RawIOBase):
    """A read-only file object that counts the bytes read (what a remote stream would fetch)."""

    def __init__(self, path):
        self._f = open(path, "rb")  # closed in close()
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        n = self._f.readinto(b)
        self.bytes_read += n or 0
        return n

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def close(self):
        self._f.close()
        super().close()


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "s.nwb"
    latent = np.random.default_rng(0).normal(size=(6, 5))
    return write_demo_nwb(path, latent, [f"stim{i}" for i in range(6)], n_units=12,
                          n_repeats=4, regions=("V1", "IT"))


def test_path_h5py_file_and_file_object_give_the_same_rdms(demo_file):
    kw = {"method": "crossnobis", "region_column": "location"}
    ref = nwb.rdms_from_nwb(demo_file, "stimulus", RESPONSE_WINDOW, **kw)
    with h5py.File(demo_file, "r") as h5:
        from_h5 = nwb.rdms_from_nwb(h5, "stimulus", RESPONSE_WINDOW, **kw)
        assert h5.id.valid  # the caller's file stays open
        again = nwb.read_nwb_spikes(h5)  # and can be read again
        assert len(again.spike_trains) == 12
    with open(demo_file, "rb") as fh:
        from_obj = nwb.rdms_from_nwb(fh, "stimulus", RESPONSE_WINDOW, **kw)
        assert not fh.closed
    for region in ("V1", "IT"):
        np.testing.assert_array_equal(from_h5[region].dissimilarities,
                                      ref[region].dissimilarities)
        np.testing.assert_array_equal(from_obj[region].dissimilarities,
                                      ref[region].dissimilarities)
    assert ref["IT"].n_cond == 6


def test_selected_units_only_are_read(big_file):
    full = nwb.read_nwb_spikes(big_file)
    counter = CountingFile(big_file)
    nwb.read_nwb_spikes(counter)
    all_bytes = counter.bytes_read
    counter.close()
    counter = CountingFile(big_file)
    part = nwb.read_nwb_spikes(counter, units=[103, 104, 130])
    few_bytes = counter.bytes_read
    counter.close()
    assert part.unit_ids.tolist() == [103, 104, 130]
    for uid, train in zip(part.unit_ids, part.spike_trains):
        np.testing.assert_array_equal(train, full.spike_trains[uid - 100])
    spike_bytes = N_UNITS * N_SPIKES * 8
    # all units: every spike time is fetched; three units: about 3/40 of them
    assert all_bytes > spike_bytes
    assert all_bytes - few_bytes > 0.85 * spike_bytes


def test_region_selection(big_file):
    full = nwb.read_nwb_spikes(big_file, region_column="location")
    it = nwb.read_nwb_spikes(big_file, region_column="location", regions=["IT"])
    assert set(it.unit_regions) == {"IT"} and len(it.spike_trains) == N_UNITS // 2
    np.testing.assert_array_equal(it.spike_trains[0], full.spike_trains[N_UNITS // 2])
    rdms = nwb.rdms_from_nwb(big_file, "stimulus", (0.0, 0.5), region_column="location",
                             regions=["V1"])
    assert sorted(rdms) == ["V1"]


def test_named_errors(big_file, tmp_path):
    with pytest.raises(ValueError, match="region_column"):
        nwb.read_nwb_spikes(big_file, regions=["IT"])
    with pytest.raises(ValueError, match=r"units=\[7\]"):
        nwb.read_nwb_spikes(big_file, units=[7])
    with pytest.raises(ValueError, match="do not occur"):
        nwb.read_nwb_spikes(big_file, region_column="location", regions=["LGN"])
    h5 = h5py.File(big_file, "r")
    h5.close()
    with pytest.raises(ValueError, match=r"closed h5py\.File"):
        nwb.read_nwb_spikes(h5)
    junk = tmp_path / "junk.nwb"
    junk.write_bytes(b"not hdf5" * 100)
    with open(junk, "rb") as fh, pytest.raises(ValueError, match=r"junk\.nwb"):
        nwb.read_nwb_spikes(fh)
    with pytest.raises(TypeError, match=r"h5py\.File"):
        nwb.read_nwb_spikes(42)
    plain = tmp_path / "plain.h5"  # valid HDF5, but not NWB
    with h5py.File(plain, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(ValueError, match=r"plain\.h5.*could not be read as an NWB file"):
        nwb.read_nwb_spikes(plain)
