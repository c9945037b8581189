"""``brainrdl rdms``: NIfTI betas + atlas, or NWB, to one rsatoolbox HDF5 file of brain RDMs."""

from __future__ import annotations

import numpy as np
import pytest
from rsatoolbox.rdm import load_rdm

from brainrdl.cli.main import main
from data_adapters.demo import make_demo_study
from data_adapters.fmri import rdms_from_betas


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    return make_demo_study(root, n_stimuli=10, n_runs=2, n_subjects=2, with_bold=False,
                           with_nwb=True, seed=0)  # fmt: skip


def test_betas_and_atlas_to_hdf5(study, tmp_path, capsys):
    out = tmp_path / "rdms.hdf5"
    rc = main(["rdms", "--betas", *map(str, study.betas), "--design", *map(str, study.design),
               "--atlas", str(study.atlas), "--labels", str(study.atlas_labels),
               "--method", "crossnobis", "--no-progress", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rdms = load_rdm(str(out), file_type="hdf5")
    assert list(rdms.rdm_descriptors["roi"]) == ["EVC", "IT", "EVC", "IT"]
    assert list(rdms.rdm_descriptors["subject"]) == ["sub-01", "sub-01", "sub-02", "sub-02"]
    # the same numbers as the adapter called directly
    direct = rdms_from_betas(study.betas[1], study.design[1], atlas=study.atlas,
                             labels=study.atlas_labels, method="crossnobis", subject="sub-02")
    np.testing.assert_allclose(rdms.get_vectors()[3], direct["IT"].get_vectors()[0], rtol=1e-6)
    assert [str(s) for s in rdms.pattern_descriptors["stimulus"]] == [
        str(s) for s in direct["IT"].pattern_descriptors["stimulus"]]  # fmt: skip
    # the file feeds brainrdl compare: one region per roi
    assert "regions ['EVC', 'IT']" in capsys.readouterr().out


def test_nwb_to_hdf5(study, tmp_path):
    out = tmp_path / "ephys.h5"
    rc = main(["rdms", "--nwb", str(study.nwb), "--window", "0.05", "0.3", "--no-progress",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    rdms = load_rdm(str(out), file_type="hdf5")
    assert rdms.n_cond == 10 and list(rdms.rdm_descriptors["roi"]) == ["all"]


def test_masks_and_bad_inputs(study, tmp_path, capsys):
    import nibabel as nib

    atlas = nib.load(study.atlas)
    mask = nib.Nifti1Image((np.asarray(atlas.dataobj) == 2).astype(np.uint8), atlas.affine)
    nib.save(mask, tmp_path / "it.nii.gz")
    out = tmp_path / "m.hdf5"
    assert main(["rdms", "--betas", str(study.betas[0]), "--design", str(study.design[0]),
                 "--mask", f"IT={tmp_path / 'it.nii.gz'}", "--no-progress",
                 "--out", str(out)]) == 0  # fmt: skip
    assert list(load_rdm(str(out), file_type="hdf5").rdm_descriptors["roi"]) == ["IT"]
    cases = [
        (["--out", str(tmp_path / "x.hdf5")], "--betas"),
        (["--betas", str(study.betas[0]), "--out", str(tmp_path / "x.hdf5")], "--design"),
        (["--betas", str(study.betas[0]), "--design", str(study.design[0]),
          "--out", str(tmp_path / "x.hdf5")], "--atlas"),
        (["--nwb", str(study.nwb), "--out", str(tmp_path / "x.hdf5")], "--window"),
        (["--nwb", str(study.nwb), "--window", "0", "1", "--out", str(tmp_path / "x.pkl")],
         ".hdf5"),
        (["--nwb", str(tmp_path / "none.nwb"), "--window", "0", "1",
          "--out", str(tmp_path / "x.hdf5")], "none.nwb"),
    ]
    for argv, expected in cases:
        assert main(["rdms", *argv]) == 2
        assert expected in capsys.readouterr().err
