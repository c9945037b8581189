"""BrainTeacher gathers sub-RDMs as rsatoolbox subsetting does; NetworkTeacher is frozen."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

from brainrdl.teachers import BrainTeacher, NetworkTeacher, Target, Teacher


def _rdms(n=6, n_subj=2, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    data = rng.random((2 * n_subj, n * (n - 1) // 2))
    return rsatoolbox.rdm.RDMs(
        data,
        dissimilarity_measure="euclidean",
        rdm_descriptors={"roi": ["IT", "V1"] * n_subj, "subject": np.repeat(range(n_subj), 2)},
        pattern_descriptors={"stimulus": ids or [f"s{i}" for i in range(n)]},
    )


def test_gather_matches_rsatoolbox_subset_and_masks_uncovered():
    rdms = _rdms()
    teacher = BrainTeacher(rdms)  # roi descriptor -> targets, subjects averaged
    assert teacher.names == ["IT", "V1"] and isinstance(teacher, Teacher)
    batch = ["s4", "s1", "zz", "s2"]
    got = teacher.targets(torch.zeros(4, 3, dtype=torch.float64), batch)
    it = rdms.subset("roi", "IT")
    mean = it.get_matrices().mean(0)
    order = [4, 1, 2]
    expected = mean[np.ix_(order, order)]
    keep = [0, 1, 3]
    np.testing.assert_allclose(got["IT"].rdm[np.ix_(keep, keep)].numpy(), expected, rtol=1e-12)
    mask = got["IT"].pair_mask
    assert not mask[2].any() and not mask[:, 2].any() and not mask.diagonal().any()
    assert int(mask.sum()) == 6 and got["IT"].rdm.dtype == torch.float64


def test_integer_ids_tensor_path_and_nan_pairs():
    rdms = _rdms(n=5, n_subj=1, ids=[10, 20, 30, 40, 50])
    rdms.dissimilarities[0, 0] = np.nan  # pair (10, 20) of IT unknown
    teacher = BrainTeacher(rdms)
    t = teacher.targets(torch.zeros(3, 2), torch.tensor([20, 10, 50]))["IT"]
    assert not t.pair_mask[0, 1] and t.pair_mask[0, 2] and t.rdm[0, 1] == 0
    full = rdms.get_matrices()[0]
    assert t.rdm[1, 2].item() == pytest.approx(full[0, 4])
    assert teacher.indices(torch.tensor([50, 7, 1000])).tolist() == [4, -1, -1]


def test_per_subject_targets_and_argument_errors():
    rdms = _rdms(n_subj=2)
    teacher = BrainTeacher(rdms, subject_descriptor="subject", combine="per_subject")
    assert teacher.names == ["IT/0", "IT/1", "V1/0", "V1/1"]
    t = teacher.targets(None, ["s0", "s1"])["V1/1"]
    assert t.rdm[0, 1].item() == pytest.approx(rdms.dissimilarities[3, 0])
    with pytest.raises(ValueError, match="subject_descriptor"):
        BrainTeacher(rdms, combine="per_subject")
    with pytest.raises(ValueError, match="combine"):
        BrainTeacher(rdms, combine="median")
    with pytest.raises(ValueError, match="stimulus_ids has 2"):
        BrainTeacher(rdms, stimulus_ids=["a", "b"])
    with pytest.raises(KeyError, match="available"):
        BrainTeacher(rdms, target_names="region")
    with pytest.raises(TypeError, match="rsatoolbox RDMs"):
        BrainTeacher(np.zeros((3, 3)))


def test_dict_of_rdms_and_names():
    teacher = BrainTeacher({"a": _rdms(n_subj=1)[0], "b": _rdms(n_subj=1, seed=1)[0]})
    assert teacher.names == ["a", "b"]


def test_network_teacher_frozen_eval_and_exact_rdm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU())
    net.train()
    teacher = NetworkTeacher(net, ["2"], distance="correlation", target_names={"2": "hid"})
    x = torch.randn(6, 4)
    t1 = teacher.targets(x)["hid"]
    t2 = teacher.targets(x)["hid"]
    torch.testing.assert_close(t1.rdm, t2.rdm)  # eval mode: dropout off, deterministic
    feats = torch.relu(net[0](x))
    torch.testing.assert_close(t1.features, feats)
    r = np.corrcoef(feats.numpy())
    np.testing.assert_allclose(t1.rdm.numpy(), 1 - r, atol=1e-5)
    assert all(not p.requires_grad for p in net.parameters())
    assert isinstance(t1, Target) and t1.pair_mask.sum() == 30
