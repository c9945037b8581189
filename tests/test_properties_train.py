"""Properties of the teachers and loss functionals that reference tests leave open: boundaries of
the id lookup, dtypes and devices of targets, defaults, and the messages of their errors.

Written to kill mutants that survived the suite (docs/mutation-testing.md); each test states what
any correct implementation must do.
"""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

from brainrdl.train.teachers import BrainTeacher, NetworkTeacher


def _rdms(ids, n_rdms=1, seed=0, roi=True, descriptor="stimulus"):
    n = len(ids)
    rng = np.random.default_rng(seed)
    data = rng.random((n_rdms, n * (n - 1) // 2)) + 0.1
    rdm_desc = {"roi": [f"R{i}" for i in range(n_rdms)]} if roi else {}
    pattern = {descriptor: list(ids)} if descriptor else {}
    return rsatoolbox.rdm.RDMs(data, dissimilarity_measure="euclidean",
                               rdm_descriptors=rdm_desc, pattern_descriptors=pattern)


@pytest.mark.parametrize("as_tensor", [True, False])
def test_integer_ids_at_both_ends_of_the_range(as_tensor):
    """Id 0 is a stimulus like any other; the id one past the largest is not a stimulus (it must
    never fall on the last one)."""
    ids = [0, 1, 2, 3, 4]
    teacher = BrainTeacher(_rdms(ids))
    query = [0, 4, 5, 6, -1]
    q = torch.tensor(query) if as_tensor else query
    assert teacher.indices(q).tolist() == [0, 4, -1, -1, -1]


def test_large_integer_ids_use_the_same_rule():
    ids = [9_999_998, 9_999_999, 10_000_000]  # around the lookup-table limit
    teacher = BrainTeacher(_rdms(ids))
    got = teacher.indices(torch.tensor([10_000_000, 9_999_998, 10_000_001, 0]))
    assert got.tolist() == [2, 0, -1, -1]


def test_targets_follow_the_inputs_dtype_and_pair_order():
    ids = ["a", "b", "c", "d"]
    rdms = _rdms(ids)
    full = rdms.get_matrices()[0]
    teacher = BrainTeacher(rdms)
    assert teacher.rdms.dtype == torch.float64  # stored at full precision
    for dtype in (torch.float32, torch.float64, torch.float32):  # a cache must key on dtype
        t = teacher.targets(torch.zeros(3, 2, dtype=dtype), ["c", "a", "d"])["R0"]
        assert t.rdm.dtype == dtype
        expected = full[np.ix_([2, 0, 3], [2, 0, 3])]
        np.testing.assert_allclose(t.rdm.double().numpy(), expected, rtol=1e-6)
        assert t.pair_mask.dtype == torch.bool and not t.pair_mask.diagonal().any()
    # no inputs: the default dtype, on the CPU
    t = teacher.targets(None, ["a", "b"])["R0"]
    assert t.rdm.dtype == torch.get_default_dtype() and t.rdm.device.type == "cpu"
    # ids given as a tensor and no inputs: the ids' device
    t = BrainTeacher(_rdms([0, 1, 2])).targets(None, torch.tensor([2, 0]))["R0"]
    assert t.rdm.device.type == "cpu" and t.rdm.shape == (2, 2)


def test_inputs_and_ids_must_have_the_same_length():
    teacher = BrainTeacher(_rdms(["a", "b", "c"]))
    with pytest.raises(ValueError, match="give one id per item"):
        teacher.targets(torch.zeros(3), ["a", "b"])  # 1-D inputs count too
    with pytest.raises(ValueError, match="stimulus_ids are required by a BrainTeacher"):
        teacher.targets(torch.zeros(2, 2), None)


def test_target_names_default_to_roi_or_brain_and_index_ids():
    teacher = BrainTeacher(_rdms(["x", "y", "z"], roi=False))
    assert teacher.names == ["brain"]
    # without the pattern descriptor, rsatoolbox's own 'index' (0..n-1) gives the ids
    plain = BrainTeacher(_rdms(["x", "y", "z"], roi=False, descriptor=None))
    assert plain.indices([2, 0]).tolist() == [2, 0]


def test_argument_errors_name_the_argument():
    rdms = _rdms(["a", "b", "c"])
    with pytest.raises(ValueError, match="combine"):
        BrainTeacher(rdms, combine="median")
    with pytest.raises(ValueError, match="combine='per_subject' needs subject_descriptor"):
        BrainTeacher(rdms, combine="per_subject")
    with pytest.raises(ValueError, match="stimulus_ids must be distinct"):
        BrainTeacher(rdms, stimulus_ids=["a", "a", "b"])
    with pytest.raises(ValueError,
                       match="stimulus_ids has 2 ids but the RDMs of target 'R0' cover 3"):
        BrainTeacher(rdms, stimulus_ids=["a", "b"])
    with pytest.raises(TypeError, match=r"rdms must be rsatoolbox RDMs.*got <class 'int'>"):
        BrainTeacher(3)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)

    def forward(self, x):
        return self.fc(x)


def test_network_teacher_defaults_and_frozen_targets():
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(5, 6)
    kw = {"reduction": "random_projection", "projection_dim": 3}
    default = NetworkTeacher(net, ["fc"], **kw)
    seeded = NetworkTeacher(net, ["fc"], seed=0, **kw)
    other = NetworkTeacher(net, ["fc"], seed=1, **kw)
    a, b, c = (t.targets(x, None)["fc"] for t in (default, seeded, other))
    assert a.features.shape == (5, 3)  # projected to projection_dim
    assert torch.equal(a.features, b.features) and not torch.equal(a.features, c.features)
    assert not a.features.requires_grad and not a.rdm.requires_grad  # a teacher is frozen
    assert default.names == ["fc"]
    with pytest.raises(ValueError, match="distance"):
        NetworkTeacher(net, ["fc"], distance="manhattan")
    with pytest.raises(KeyError, match=r"target_names maps layers that are not tapped: \['fc2'\]"):
        NetworkTeacher(net, ["fc"], target_names={"fc2": "x"})
