"""BrainTeacher gathers sub-RDMs as rsatoolbox subsetting does; NetworkTeacher is frozen."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

from brainrdl.train.teachers import BrainTeacher, NetworkTeacher, Target, Teacher


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


def _one(ids, values, name=None):
    """One RDM over ``ids`` (upper-triangle ``values``), optionally with an roi descriptor."""
    desc = {"roi": [name]} if name is not None else None
    return rsatoolbox.rdm.RDMs(np.asarray(values, dtype=float)[None], rdm_descriptors=desc,
                               pattern_descriptors={"stimulus": list(ids)})


def test_each_rdm_is_read_in_its_own_stimulus_order_and_set():
    teacher = BrainTeacher({"IT": _one("xyz", [1.0, 2.0, 3.0]),
                            "V1": _one("pqr", [4.0, 5.0, 6.0])})
    assert teacher.stimulus_ids == ["x", "y", "z", "p", "q", "r"]
    v1 = teacher.targets(None, ["p", "q"])
    assert v1["V1"].pair_mask[0, 1] and v1["V1"].rdm[0, 1].item() == 4.0
    assert not v1["IT"].pair_mask.any() and v1["IT"].covered.tolist() == [False, False]
    it = teacher.targets(None, ["x", "z"])
    assert it["IT"].rdm[0, 1].item() == 2.0 and not it["V1"].pair_mask.any()
    # subjects listing the same stimuli in different orders: averaged pair by pair
    subjects = [_one("xyz", [1.0, 5.0, 7.0], "IT"), _one("zyx", [6.0, 8.0, 3.0], "IT")]
    mean = BrainTeacher(subjects).targets(None, ["x", "y", "z"])["IT"].rdm
    assert mean[0, 1].item() == 2.0 and mean[0, 2].item() == 6.5 and mean[1, 2].item() == 6.5
    # subjects covering different sets: pairs only one covers use that one; others are masked
    ragged = BrainTeacher([_one("xyz", [1.0, 5.0, 7.0], "IT"), _one("xyw", [3.0, 4.0, 9.0], "IT")])
    t = ragged.targets(None, ["x", "y", "z", "w"])["IT"]
    assert t.rdm[0, 1].item() == 2.0 and t.rdm[0, 3].item() == 4.0 and t.rdm[1, 3].item() == 9.0
    assert not t.pair_mask[2, 3] and t.covered.all()
    per = BrainTeacher([_one("xyz", [1.0, 5.0, 7.0], "IT"), _one("zyx", [6.0, 8.0, 3.0], "IT")],
                       target_names=["IT", "IT"], subject_descriptor="roi", combine="per_subject")
    assert per.names == ["IT/IT"]
    with pytest.raises(ValueError, match=r"'IT'.*repeated"):
        BrainTeacher(_one("xyx", [1.0, 2.0, 3.0], "IT"))


def test_rdms_without_the_stimulus_descriptor_cannot_mix_with_ones_that_have_it():
    bare = rsatoolbox.rdm.RDMs(np.array([[4.0, 5.0, 6.0]]))
    with pytest.raises(ValueError, match=r"'V1'.*'stimulus'"):
        BrainTeacher({"IT": _one("xyz", [1.0, 2.0, 3.0]), "V1": bare})
    # explicit ids apply to every RDM, in their (shared) order
    teacher = BrainTeacher({"IT": _one("xyz", [1.0, 2.0, 3.0]), "V1": bare}, stimulus_ids="abc")
    assert teacher.targets(None, ["c", "a"])["IT"].rdm[0, 1].item() == 2.0


class _MatrixRDMs:
    """Duck-typed RDMs handing out a given (possibly asymmetric) matrix."""

    def __init__(self, matrix):
        self.matrix, self.n_rdm, self.n_cond = matrix[None], 1, matrix.shape[0]
        self.rdm_descriptors = {"roi": ["IT"]}
        self.pattern_descriptors = {"stimulus": list(range(matrix.shape[0]))}

    def __getitem__(self, i):
        return self

    def get_matrices(self):
        return self.matrix


def test_asymmetric_target_rdm_is_refused_nan_aware():
    m = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    BrainTeacher(_MatrixRDMs(m))
    m[0, 1] = m[1, 0] = np.nan  # a symmetric missing pair is fine
    assert not BrainTeacher(_MatrixRDMs(m)).targets(None, [0, 1])["IT"].pair_mask.any()
    m[0, 2] = 5.0
    with pytest.raises(ValueError, match=r"'IT'.*not symmetric"):
        BrainTeacher(_MatrixRDMs(m))
    m[0, 2], m[1, 0] = 2.0, 1.0  # NaN on one side only
    with pytest.raises(ValueError, match=r"'IT'.*not symmetric"):
        BrainTeacher({"IT": _MatrixRDMs(m)})


def test_uncovered_batches_and_length_mismatch_raise():
    teacher = BrainTeacher(_rdms(n_subj=1))
    with pytest.raises(ValueError, match=r"stimulus_ids: none of the batch's 3 ids are covered "
                                         r"by the teacher; e\.g\. 0 \(int\) vs teacher ids 's0' "
                                         r"\(str\)"):
        teacher.targets(torch.zeros(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match=r"only 1 of the batch's 2 ids"):
        teacher.targets(None, ["s1", "nope"])
    with pytest.raises(ValueError, match="stimulus_ids has 2 ids but inputs hold 3"):
        teacher.targets(torch.zeros(3, 2), ["s0", "s1"])
    t = teacher.targets(torch.zeros(3, 2), ["s0", "nope", "s2"])["IT"]  # some uncovered: masked
    assert t.covered.tolist() == [True, False, True] and int(t.pair_mask.sum()) == 2


def test_network_teacher_reduction_none_keeps_conv_maps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    x = torch.randn(5, 1, 8, 8)
    kept = NetworkTeacher(net, ["1"], reduction="none").targets(x)["1"]
    flat = NetworkTeacher(net, ["1"]).targets(x)["1"]
    assert tuple(kept.features.shape) == (5, 4, 6, 6)
    assert tuple(flat.features.shape) == (5, 144)
    torch.testing.assert_close(kept.rdm, flat.rdm)  # the RDM is of the flattened maps
    torch.testing.assert_close(flat.maps, kept.features)
