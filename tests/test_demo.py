"""`brainrdl demo`: teacher RDMs from the NIfTI files; RDL beats the baseline on held-out IT RSA."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from brainrdl import demo


@pytest.mark.slow
def test_region_rdms_from_nifti_recover_ground_truth(tmp_path):
    from data_adapters.demo import make_demo_study

    study = make_demo_study(tmp_path, n_stimuli=30, n_runs=4, with_bold=False, with_nwb=False)
    rdms = demo.region_rdms_from_nifti(study)
    assert list(rdms.rdm_descriptors["roi"]) == ["EVC", "IT"]
    assert list(rdms.pattern_descriptors["stimulus"]) == study.stimulus_ids
    for k, roi in enumerate(["EVC", "IT"]):
        est = rdms.dissimilarities[k]
        truth = study.ground_truth[roi].dissimilarities[0]
        assert np.corrcoef(est, truth)[0, 1] > 0.5


def test_arguments():
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out", "d", "--device", "cpu", "--epochs", "2", "--seed", "3"])
    assert (args.out, args.epochs, args.seed, args.device) == ("d", 2, 3, "cpu")


@pytest.mark.slow
def test_rdl_raises_heldout_it_alignment(tmp_path):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--epochs", "6", "--seed", "0"])
    threads = torch.get_num_threads()
    assert demo.run(args) == 0
    assert torch.get_num_threads() == threads
    summary = json.loads((tmp_path / "summary.json").read_text())
    base, rdl = summary["baseline"], summary["rdl"]
    assert isinstance(base["heldout_rsa"], float) and isinstance(rdl["accuracy"], float)
    # a broken or sign-flipped loss leaves the gap near zero or negative
    assert rdl["heldout_rsa"] > base["heldout_rsa"] + 0.08
    assert rdl["accuracy"] > 0.85 and base["accuracy"] > 0.85
    assert (tmp_path / "demo.png").stat().st_size > 10_000
