"""Properties of the teachers and loss functionals that reference tests leave open: boundaries of
the id lookup, dtypes and devices of targets, defaults, and the messages of their errors.

Written to kill mutants that survived the suite (docs/mutation-testing.md); each test states what
any correct implementation must do.
"""

from __future__ import annotations

import inspect
import re

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
    got = teacher.indices(q)
    assert got.tolist() == [0, 4, -1, -1, -1]
    assert got.dtype == torch.long  # row indices, usable for indexing


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


def test_target_names_read_from_any_rdm_descriptor():
    """A string target_names is an rdm-descriptor key: each RDM is named by its own value."""
    data = np.random.default_rng(2).random((3, 3)) + 0.1
    rdms = rsatoolbox.rdm.RDMs(data, rdm_descriptors={"area": ["V1", "IT", "V1"]},
                               pattern_descriptors={"stimulus": ["a", "b", "c"]})
    teacher = BrainTeacher(rdms, target_names="area")
    assert teacher.names == ["V1", "IT"]
    it = teacher.targets(None, ["a", "b"])["IT"]
    assert float(it.rdm[0, 1]) == pytest.approx(data[1, 0])
    # a missing key names the key, where it was looked up, and what is available
    with pytest.raises(KeyError, match=r"'region' not found in rdms; available: \['area', "):
        BrainTeacher(rdms, target_names="region")


def test_missing_subject_descriptor_names_the_target():
    with pytest.raises(KeyError, match=r"'subject' not found in R0; available: \['index', 'roi'\]"):
        BrainTeacher(_rdms(["a", "b", "c"]), subject_descriptor="subject", combine="per_subject")


class _MatricesOnly:
    """Has get_matrices but not n_rdm: not an rsatoolbox RDMs object."""

    def get_matrices(self):
        return np.zeros((1, 3, 3))


def test_objects_lacking_either_rdms_attribute_are_refused_by_type():
    with pytest.raises(TypeError, match="rdms must be rsatoolbox RDMs"):
        BrainTeacher(_MatricesOnly())


def test_a_0d_inputs_tensor_only_sets_dtype_and_device():
    """inputs only set device and dtype: a 0-d tensor has no batch size to compare with."""
    teacher = BrainTeacher(_rdms(["a", "b", "c"]))
    t = teacher.targets(torch.zeros((), dtype=torch.float64), ["c", "a"])["R0"]
    assert t.rdm.dtype == torch.float64 and t.rdm.shape == (2, 2)


def test_floating_tensor_ids_are_matched_by_value():
    """A float tensor of integer-valued ids finds the same rows as the integers (3.0 == 3);
    only integer tensors take the lookup-table path."""
    teacher = BrainTeacher(_rdms([10, 11, 12, 13]))
    ints = teacher.indices(torch.tensor([13, 10, 99]))
    floats = teacher.indices(torch.tensor([13.0, 10.0, 99.0]))
    assert ints.tolist() == floats.tolist() == [3, 0, -1]
    assert floats.dtype == torch.long


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


# --------------------------------------------------------------------------- loss functionals
# Each loss with an item mask must equal the same loss on the kept sub-batch (whatever the
# excluded rows hold, NaN included); each has a closed form or a reference to compare with.

from scipy.special import log_softmax as _np_log_softmax  # noqa: E402

from brainrdl.train import functional as BF  # noqa: E402


def _f64(b, d, seed):
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _kd_reference(s, t, temperature):
    """Hinton et al.: T² · mean over items of KL(softmax(t/T) ‖ softmax(s/T)), in NumPy."""
    ls = _np_log_softmax(s.numpy() / temperature, axis=1)
    lt = _np_log_softmax(t.numpy() / temperature, axis=1)
    return temperature**2 * np.mean(np.sum(np.exp(lt) * (lt - ls), axis=1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_kd_loss_matches_reference_at_temperatures_around_one(temperature):
    s, t = _f64(5, 7, 1), _f64(5, 7, 2)
    got = BF.kd_loss(s, t, temperature=temperature)
    assert float(got) == pytest.approx(_kd_reference(s, t, temperature), rel=1e-10)


def test_kd_loss_default_temperature_is_the_documented_four():
    s, t = _f64(4, 6, 3), _f64(4, 6, 4)
    assert float(BF.kd_loss(s, t)) == pytest.approx(_kd_reference(s, t, 4.0), rel=1e-10)


def test_kd_loss_item_mask_equals_the_sub_batch_and_nan_rows_do_not_leak():
    s, t = _f64(6, 5, 5), _f64(6, 5, 6)
    keep = torch.tensor([True, False, True, True, False, True])
    t_nan = t.clone()
    t_nan[~keep] = float("nan")
    s.requires_grad_(True)
    got = BF.kd_loss(s, t_nan, temperature=2.0, item_mask=keep)
    expected = _kd_reference(s.detach()[keep], t[keep], 2.0)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-10)
    got.backward()
    assert torch.isfinite(s.grad).all() and torch.all(s.grad[~keep] == 0)
    # nothing kept: an attached zero, not NaN
    none = BF.kd_loss(s, t, item_mask=torch.zeros(6, dtype=torch.bool))
    assert float(none.detach()) == 0.0


def test_kd_loss_of_one_kept_item_is_that_items_divergence():
    """The mean over kept items divides by their count, also when exactly one item is kept."""
    s, t = _f64(4, 5, 17), _f64(4, 5, 18)
    for k in range(4):
        keep = torch.zeros(4, dtype=torch.bool)
        keep[k] = True
        got = BF.kd_loss(s, t, temperature=1.5, item_mask=keep)
        assert float(got) == pytest.approx(_kd_reference(s[keep], t[keep], 1.5), rel=1e-10)


def test_kd_loss_casts_the_teacher_to_the_students_dtype():
    """A float32 teacher with a float64 student: the loss is computed in float64 throughout."""
    s, t = _f64(4, 6, 15), _f64(4, 6, 16).float()
    got = BF.kd_loss(s, t, temperature=1.0)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_kd_reference(s, t.double(), 1.0), rel=1e-13)


def test_kd_loss_emits_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BF.kd_loss(_f64(3, 4, 7), _f64(3, 4, 8), temperature=1.5)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_kd_loss_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature"):
        BF.kd_loss(_f64(3, 4, 7), _f64(3, 4, 8), temperature=temperature)
    # any positive temperature, even a small one, is valid
    assert torch.isfinite(BF.kd_loss(_f64(3, 4, 7), _f64(3, 4, 8), temperature=0.05))


def test_kd_loss_errors_name_their_argument():
    s = _f64(3, 4, 9)
    with pytest.raises(ValueError, match=r"\bstudent_logits\b"):
        BF.kd_loss(torch.tensor(1.0), s)
    with pytest.raises(TypeError, match=r"\bteacher_logits\b"):
        BF.kd_loss(s, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\bitem_mask\b"):
        BF.kd_loss(s, s, item_mask=torch.ones(2, dtype=torch.bool))
    bad = s.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="'logits'"):  # the default layer name
        BF.kd_loss(bad, s)
    with pytest.raises(ValueError, match="'fc8'"):
        BF.kd_loss(bad, s, name="fc8")
    assert not torch.isfinite(BF.kd_loss(bad, s, check_finite=False))


def test_pkt_and_projection_and_cka_item_masks_equal_the_sub_batch():
    s, t = _f64(7, 5, 10), _f64(7, 4, 11)
    keep = torch.tensor([True, True, False, True, False, True, True])
    t_nan = t.clone()
    t_nan[~keep] = float("nan")
    pairs = [
        (BF.pkt_loss(s, t_nan, item_mask=keep), BF.pkt_loss(s[keep], t[keep])),
        (BF.cka_loss(s, t_nan, item_mask=keep, log=False),
         BF.cka_loss(s[keep], t[keep], log=False)),
    ]
    p = _f64(7, 5, 12)
    p_nan = p.clone()
    p_nan[~keep] = float("nan")
    pairs.append((BF.knowledge_projection_loss(s, p_nan, item_mask=keep),
                  torch.mean((s[keep] - p[keep]) ** 2)))
    for got, expected in pairs:
        assert float(got) == pytest.approx(float(expected), rel=1e-10)


def test_rdl_pair_mask_of_dropped_items_equals_the_sub_batch():
    x, y = _f64(7, 6, 13), _f64(7, 3, 14)
    keep = torch.tensor([True, False, True, True, True, False, True])
    target = torch.cdist(y, y) ** 2
    target[~keep] = float("nan")
    target[:, ~keep] = float("nan")
    mask = keep[:, None] & keep[None, :]
    sub_target = (torch.cdist(y[keep], y[keep]) ** 2)
    for comparison in ["paper", "mse", "pearson", "cosine", "corr_cov"]:
        got = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask)
        expected = BF.rdl_loss(x[keep], sub_target, comparison=comparison)
        assert float(got) == pytest.approx(float(expected), rel=1e-9, abs=1e-12), comparison


def _linear_cka(x, y):
    """Kornblith et al. (2019) linear CKA in NumPy: ‖YᵀX‖² / (‖XᵀX‖ ‖YᵀY‖) of centred data."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_loss_at_three_items_is_defined_and_below_three_is_zero():
    x, y = _f64(3, 5, 20), _f64(3, 4, 21)
    got = BF.cka_loss(x, y, log=False)
    assert float(got) == pytest.approx(1 - _linear_cka(x.numpy(), y.numpy()), rel=1e-10)
    assert float(got) > 1e-3
    two = BF.cka_loss(x[:2], y[:2], log=False)
    assert float(two) == 0.0
    masked = BF.cka_loss(x, y, log=False, item_mask=torch.tensor([True, False, True]))
    assert float(masked) == 0.0


def test_cka_loss_casts_teacher_and_rdm_to_the_students_dtype():
    x, y = _f64(6, 5, 22), _f64(6, 4, 23).float()
    expected = 1 - _linear_cka(x.numpy(), y.double().numpy())
    got = BF.cka_loss(x, y, log=False)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-12)
    rdm = (torch.cdist(y.double(), y.double()) ** 2).float()
    got_rdm = BF.cka_loss(x, target_rdm=rdm, log=False)
    assert float(got_rdm) == pytest.approx(
        float(BF.cka_loss(x, target_rdm=rdm.double(), log=False)), rel=1e-12)


_LOSSES = {
    "pkt": (BF.pkt_loss, "student", "teacher"),
    "cka": (BF.cka_loss, "student", "teacher"),
    "projection": (BF.knowledge_projection_loss, "student_features", "projected_teacher"),
    "kd": (BF.kd_loss, "student_logits", "teacher_logits"),
}


@pytest.mark.parametrize("loss", sorted(_LOSSES))
def test_loss_errors_name_their_argument_and_the_default_layer(loss):
    fn, student_arg, teacher_arg = _LOSSES[loss]
    s, t = _f64(4, 5, 24), _f64(4, 5, 25)
    with pytest.raises(ValueError, match=rf"\b{student_arg}\b"):
        fn(torch.tensor(1.0), t)
    with pytest.raises(TypeError, match=rf"\b{teacher_arg}\b"):
        fn(s, torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\bitem_mask\b"):
        fn(s, t, item_mask=torch.ones(3, dtype=torch.bool))
    bad = s.clone()
    bad[2, 1] = float("inf")
    default = inspect.signature(fn).parameters["name"].default
    with pytest.raises(ValueError, match=rf"'{default}'.*\[2\]|'{default}'"):
        fn(bad, t)
    unchecked = fn(bad, t, check_finite=False)  # no error: the value is what it is
    if loss != "pkt":  # PKT zeroes non-finite rows after normalising, as its reference code
        assert not torch.isfinite(unchecked).all()


def test_cka_target_rdm_of_the_wrong_shape_is_named():
    x = _f64(4, 5, 26)
    with pytest.raises(ValueError, match=r"target_rdm.*\(4, 4\)"):
        BF.cka_loss(x, target_rdm=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"target_rdm.*\(4, 4\)"):
        BF.cka_loss(x, target_rdm=np.zeros((4, 4)))


def test_projection_loss_of_a_single_kept_value_is_its_squared_error():
    s = torch.tensor([[1.0], [4.0], [-2.0]], dtype=torch.float64)
    p = torch.tensor([[0.0], [1.5], [float("nan")]], dtype=torch.float64)
    keep = torch.tensor([False, True, False])
    assert float(BF.knowledge_projection_loss(s, p, item_mask=keep)) == pytest.approx(2.5**2)
    none = BF.knowledge_projection_loss(s, p, item_mask=torch.zeros(3, dtype=torch.bool))
    assert float(none) == 0.0


def _pkt_reference(s, t, eps=1e-7):
    """Passalis & Tefas' cosine_similarity_loss in NumPy: normalised rows, (cos + 1) / 2 kernels
    normalised per row, mean over all B² entries of t log((t + eps) / (s + eps))."""
    def probs(x):
        x = x / (np.sqrt((x**2).sum(1, keepdims=True)) + eps)
        x = np.where(np.isnan(x), 0.0, x)
        k = (x @ x.T + 1.0) / 2.0
        return k / k.sum(1, keepdims=True)

    ps, pt = probs(s), probs(t)
    return np.mean(pt * np.log((pt + eps) / (ps + eps)))


def test_pkt_loss_matches_the_reference_and_casts_the_teacher():
    s, t = _f64(6, 5, 30), _f64(6, 3, 31)
    expected = _pkt_reference(s.numpy(), t.numpy())
    assert float(BF.pkt_loss(s, t)) == pytest.approx(expected, rel=1e-10)
    got = BF.pkt_loss(s, t.float())
    assert float(got) == pytest.approx(_pkt_reference(s.numpy(), t.float().double().numpy()),
                                       rel=1e-12)
    # a NaN student row is a zero row after normalising (the reference's rule)
    s_nan, s_zero = s.clone(), s.clone()
    s_nan[2] = float("nan")
    s_zero[2] = 0.0
    assert float(BF.pkt_loss(s_nan, t, check_finite=False)) == pytest.approx(
        float(BF.pkt_loss(s_zero, t)), rel=1e-12)


def test_pkt_loss_gradient_at_an_all_zero_student_row_is_the_derivative():
    """x / (‖x‖ + eps) has Jacobian I / eps at x = 0 (the row of a dead ReLU layer): the
    gradient there must match central differences, neither NaN (sqrt at 0) nor damped."""
    s, t = _f64(5, 4, 34), _f64(5, 3, 35)
    s[1] = 0.0
    eps = 0.1  # large, so the step below is tiny against it
    s_grad = s.clone().requires_grad_(True)
    BF.pkt_loss(s_grad, t, eps=eps).backward()
    h = 1e-7
    for j in range(4):
        up, down = s.clone(), s.clone()
        up[1, j], down[1, j] = h, -h
        fd = (float(BF.pkt_loss(up, t, eps=eps)) - float(BF.pkt_loss(down, t, eps=eps))) / (2 * h)
        assert float(s_grad.grad[1, j]) == pytest.approx(fd, rel=1e-4, abs=1e-9)
    assert float(s_grad.grad[1].abs().max()) > 0  # the zero row does get pulled


def test_integer_item_masks_read_as_bool():
    s, t = _f64(5, 4, 32), _f64(5, 4, 33)
    keep = torch.tensor([True, False, True, True, False])
    for fn in (BF.kd_loss, BF.pkt_loss, BF.knowledge_projection_loss):
        assert float(fn(s, t, item_mask=keep.long())) == pytest.approx(
            float(fn(s, t, item_mask=keep)), rel=1e-12)


def test_corr_cov_needs_three_items_and_three_valid_pairs():
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsa_compare

    from brainrdl.rsa.distances import pairwise_rdm, upper_tri

    x, y = _f64(4, 5, 34), _f64(4, 3, 35)
    target = pairwise_rdm(y, "euclidean")
    # items 0, 1, 2 with their three pairs: defined, equal to rsatoolbox on those items
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        mask[i, j] = mask[j, i] = True
    got = BF.rdl_loss(x, target, distance="euclidean", comparison="corr_cov", pair_mask=mask)
    s = upper_tri(pairwise_rdm(x[:3], "euclidean")).numpy()[None]
    t = upper_tri(target[:3, :3]).numpy()[None]
    assert float(got) == pytest.approx(1 - rsa_compare(RDMs(s), RDMs(t), "corr_cov")[0, 0],
                                       rel=1e-8)
    # three items but two valid pairs: not enough
    mask[0, 2] = mask[2, 0] = False
    assert float(BF.rdl_loss(x, target, distance="euclidean", comparison="corr_cov",
                             pair_mask=mask)) == 0.0


def test_corr_cov_errors_name_the_layer():
    target = torch.rand(5, 5, dtype=torch.float64)
    bad = _f64(5, 4, 37)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'conv3'"):
        BF.rdl_loss(bad, target + target.T, comparison="corr_cov", name="conv3")


def test_corr_cov_refusing_a_row_constant_up_to_rounding_names_the_layer():
    """A float32 row that is constant up to rounding relative to its own magnitude (1e6 plus one
    ulp) has no correlation distance; corr_cov refuses it, naming the layer."""
    x = _f64(5, 6, 38).float()
    x[0] = 1e6
    x[0, 0] += 0.0625  # one float32 ulp at 1e6
    target = torch.rand(5, 5, generator=torch.Generator().manual_seed(39))
    with pytest.raises(ValueError, match=r"layer 'conv3': .*constant across channels"):
        BF.rdl_loss(x, target + target.T, comparison="corr_cov", distance="correlation",
                    name="conv3")


@pytest.mark.parametrize("distance", ["euclidean", "correlation"])
def test_corr_cov_is_scale_free_in_float64_and_float32(distance):
    """corr_cov is a correlation: features scaled by 1e-6 ... 1e6 give the same loss, and float32
    gives it too (the entries are rescaled to unit size, floors in the same units)."""
    x, y = _f64(7, 5, 40), _f64(7, 3, 41)
    target = torch.cdist(y, y) ** 2
    ref = float(BF.rdl_loss(x, target, comparison="corr_cov", distance=distance))
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        got = BF.rdl_loss(x * scale, target, comparison="corr_cov", distance=distance)
        assert float(got) == pytest.approx(ref, rel=1e-9, abs=1e-12), scale
        got32 = BF.rdl_loss((x * scale).float(), target.float(), comparison="corr_cov",
                            distance=distance)
        assert float(got32) == pytest.approx(ref, rel=1e-4, abs=1e-5), scale


def test_target_pairs_outside_the_mask_hold_zero_never_nan():
    """Documented: masked pairs of Target.rdm hold 0 — missing brain pairs included."""
    ids = ["a", "b", "c", "d"]
    rdms = _rdms(ids)
    data = rdms.get_vectors().copy()
    data[0, 1] = np.nan  # pair (a, c) missing in the brain RDM
    rdms = rsatoolbox.rdm.RDMs(data, dissimilarity_measure="euclidean",
                               rdm_descriptors={"roi": ["R0"]},
                               pattern_descriptors={"stimulus": ids})
    target = BrainTeacher(rdms).targets(torch.zeros(4, 2), ["a", "b", "c", "zz"])["R0"]
    assert not bool(target.pair_mask[0, 2]) and not bool(target.pair_mask[0, 3])
    assert torch.all(target.rdm[~target.pair_mask] == 0)


def test_without_a_stimulus_descriptor_the_ids_are_rsatoolboxs_index():
    """A subset of RDMs keeps rsatoolbox's original pattern index: those are the ids, not 0..n-1."""
    rdms = rsatoolbox.rdm.RDMs(np.random.default_rng(1).random((1, 10)),
                               rdm_descriptors={"roi": ["IT"]})
    teacher = BrainTeacher(rdms.subset_pattern("index", [1, 3, 4]))
    assert list(teacher.stimulus_ids) == [1, 3, 4]
    assert teacher.indices([3, 0]).tolist() == [1, -1]


def test_teacher_choice_errors_name_the_argument_exactly():
    with pytest.raises(ValueError, match=r"\bcombine\b"):
        BrainTeacher(_rdms(["a", "b", "c"]), combine="median")
    with pytest.raises(ValueError, match=r"\bdistance\b"):
        NetworkTeacher(_Net(), ["fc"], distance="manhattan")


# --------------------------------------------------------------------------- rdl_loss checks


def test_rdl_target_errors_tell_asymmetry_from_nan():
    from brainrdl.errors import DegenerateDataError

    x = _f64(4, 3, 50)
    target = torch.rand(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(51))
    with pytest.raises(DegenerateDataError, match=r"layer 'conv1': target_rdm is not symmetric"):
        BF.rdl_loss(x, target + 1.0, name="conv1")  # finite but not symmetric
    sym = target + target.T
    sym[0, 2] = sym[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'conv1': target_rdm has NaN or infinite entries "
                                         "at pairs that pair_mask keeps"):
        BF.rdl_loss(x, sym, name="conv1")
    with pytest.raises(ValueError, match="layer 'student'"):  # the default layer name
        BF.rdl_loss(x, sym)
    with pytest.raises(ValueError, match=r"\bpaper_scale\b"):
        BF.rdl_loss(x, target + target.T, comparison="paper", paper_scale="min")


@pytest.mark.parametrize("n_bad", [10, 11, 12])
def test_nonfinite_student_items_are_listed_up_to_ten(n_bad):
    x = _f64(14, 3, 52)
    x[:n_bad, 0] = float("nan")
    y = _f64(14, 3, 53)
    listed = list(range(min(n_bad, 10)))
    shown = str(listed if n_bad <= 10 else [*listed, "..."])
    with pytest.raises(ValueError, match=re.escape(f"batch items {shown} ({n_bad} in all)")):
        BF.rdl_loss(x, torch.cdist(y, y), distance="euclidean")


def test_item_mask_errors_show_the_shape_or_type_given():
    s = _f64(4, 3, 54)
    with pytest.raises(ValueError, match=re.escape("item_mask must be a bool tensor of shape "
                                                   "(4,); got (3,)")):
        BF.kd_loss(s, s, item_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=re.escape("(4,); got list")):
        BF.kd_loss(s, s, item_mask=[True, True, False, True])


@pytest.mark.parametrize("comparison", ["pearson", "cosine"])
def test_an_all_zero_target_has_cosine_zero(comparison):
    """rsatoolbox's convention: a zero vector has cosine 0 with anything, so the loss is 1."""
    x = _f64(5, 4, 55)
    got = BF.rdl_loss(x, torch.zeros(5, 5, dtype=torch.float64), comparison=comparison)
    assert float(got) == 1.0


@pytest.mark.parametrize("comparison", ["pearson", "cosine", "mse", "corr_cov"])
def test_scale_free_losses_ignore_the_targets_scale_in_float32(comparison):
    x, y = _f64(6, 4, 56), _f64(6, 3, 57)
    target = torch.cdist(y, y) ** 2
    ref = float(BF.rdl_loss(x, target, comparison=comparison))
    for scale in (1e-20, 1e20):
        got = BF.rdl_loss(x.float(), (target * scale).float(), comparison=comparison)
        assert float(got) == pytest.approx(ref, rel=1e-4, abs=1e-5), scale


@pytest.mark.parametrize("distance", ["correlation", "cosine"])
def test_an_all_zero_student_gives_an_attached_zero(distance):
    """A layer of dead ReLUs has no defined correlation or cosine distance: no pair is left."""
    x = torch.zeros(5, 4, dtype=torch.float64, requires_grad=True)
    y = _f64(5, 3, 58)
    loss = BF.rdl_loss(x, torch.cdist(y, y), distance=distance)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(x.grad == 0)


@pytest.mark.parametrize("distance", ["correlation", "cosine"])
def test_rows_are_dead_below_1e_5_of_the_largest_norm(distance):
    """Correlation and cosine distances do not depend on a row's scale: a row at 1e-4 of the
    largest norm counts as itself; at 1e-6 it is a dead row, left out like a masked item."""
    x, y = _f64(6, 5, 59), _f64(6, 3, 60)
    target = torch.cdist(y, y)
    full = float(BF.rdl_loss(x, target, distance=distance))
    keep = torch.ones(6, dtype=torch.bool)
    keep[2] = False
    without = float(BF.rdl_loss(x, target, distance=distance,
                                pair_mask=keep[:, None] & keep[None, :]))
    assert abs(full - without) > 1e-3  # the row matters
    for factor, expected in ((1e-4, full), (1e-6, without)):
        small = x.clone()
        centre = x[2].mean() if distance == "correlation" else 0.0  # correlation centres rows
        small[2] = (x[2] - centre) * factor
        got = float(BF.rdl_loss(small, target, distance=distance))
        assert got == pytest.approx(expected, rel=1e-8), factor


# --------------------------------------------------------------------------- degenerate targets


def _rdms_from_vector(vector):
    return rsatoolbox.rdm.RDMs(np.asarray(vector, dtype=float)[None],
                               pattern_descriptors={"stimulus": ["a", "b", "c"]})


def test_brain_targets_without_geometry_are_refused():
    with pytest.raises(ValueError, match="no finite dissimilarity"):
        BrainTeacher(_rdms_from_vector([np.nan] * 3))
    with pytest.raises(ValueError, match=r"^rdms: target 'brain': the target RDM is constant "
                                         r"\(every dissimilarity 2\)"):
        BrainTeacher(_rdms_from_vector([2.0, 2.0, 2.0]))


@pytest.mark.parametrize(("vector", "refused"), [
    ([0.0, 1e-12, 1e-12], True),  # spread 1e-12: at the absolute tolerance (values below 1)
    ([0.0, 1.5e-12, 1.5e-12], False),
    ([1e6, 1e6 + 1e-7, 1e6], True),  # spread 1e-7 <= 1e-12 * 1e6: relative for large values
    ([1e6, 1e6 + 1e-5, 1e6], False),
])
def test_constant_target_tolerance_is_1e_12_of_max_one_and_the_largest_value(vector, refused):
    if refused:
        with pytest.raises(ValueError, match="is constant"):
            BrainTeacher(_rdms_from_vector(vector))
    else:
        assert BrainTeacher(_rdms_from_vector(vector)).names == ["brain"]


def test_network_teacher_checks_the_first_batch_with_three_items():
    dead = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # every unit off: a constant (all-zero) RDM
    teacher = NetworkTeacher(dead, ["1"])
    teacher.targets(torch.randn(2, 4))  # one pair: nothing to judge yet
    with pytest.raises(ValueError, match="NetworkTeacher layer '1': the target RDM is constant"):
        teacher.targets(torch.randn(3, 4))


# --------------------------------------------------------------------------- rdl_loss inputs


def test_rdl_argument_errors_show_what_was_given():
    x = _f64(4, 3, 61)
    with pytest.raises(ValueError, match=r"^student must have a batch dimension"):
        BF.rdl_loss(torch.tensor(1.0), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=re.escape("matching the 4 student items; got (3, 3)")):
        BF.rdl_loss(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=re.escape("matching the 4 student items; got abc")):
        BF.rdl_loss(x, "abc")
    with pytest.raises(ValueError, match=re.escape("pair_mask must be a bool tensor of shape "
                                                   "(4, 4); got (3, 3)")):
        BF.rdl_loss(x, torch.zeros(4, 4), pair_mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=re.escape("(4, 4); got abc")):
        BF.rdl_loss(x, torch.zeros(4, 4), pair_mask="abc")


@pytest.mark.parametrize("comparison", ["paper", "mse", "pearson", "cosine", "corr_cov"])
def test_rdl_casts_the_target_to_the_students_dtype(comparison):
    x, y = _f64(6, 4, 62), _f64(6, 3, 63)
    t32 = (torch.cdist(y, y) ** 2).float()
    got = BF.rdl_loss(x, t32, comparison=comparison)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(float(BF.rdl_loss(x, t32.double(), comparison=comparison)),
                                       rel=1e-13, abs=1e-15)


def test_rdl_integer_pair_masks_read_as_bool():
    x, y = _f64(5, 4, 64), _f64(5, 3, 65)
    target = torch.cdist(y, y)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[0, 3] = mask[3, 0] = False
    for comparison in ("paper", "pearson"):
        expected = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask)
        got = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask.long())
        assert float(got) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("b", [2, 3, 4])
def test_rdl_per_pair_output_has_one_entry_per_pair(b):
    """reduction='none' (paper, mse): the upper-triangle vector (B(B-1)/2,), from B = 2 on."""
    x, y = _f64(b, 3, 66), _f64(b, 3, 67)
    for comparison in ("paper", "mse"):
        got = BF.rdl_loss(x, torch.cdist(y, y), comparison=comparison, reduction="none")
        assert got.shape == (b * (b - 1) // 2,), comparison


def test_rdl_reads_only_the_kept_upper_pairs_of_the_target():
    """Documented: only pairs i < j that pair_mask keeps enter; entries elsewhere may be NaN
    (lower triangle) or anything at all (masked pairs), and a NaN there is not an error."""
    x, y = _f64(5, 4, 68), _f64(5, 3, 69)
    target = torch.cdist(y, y)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[1, 3] = mask[3, 1] = False
    messy = target.clone()
    lower = torch.tril(torch.ones(5, 5, dtype=torch.bool), diagonal=-1)
    messy[lower] = float("nan")
    messy[1, 3] = 7.0  # masked pair: its (finite, asymmetric) value must not matter
    for comparison in ("paper", "pearson", "corr_cov"):
        expected = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask)
        got = BF.rdl_loss(x, messy, comparison=comparison, pair_mask=mask)
        assert float(got) == pytest.approx(float(expected), rel=1e-12), comparison
    asym = target.clone()
    asym[1, 3] = 7.0
    assert float(BF.rdl_loss(x, asym, pair_mask=mask)) == pytest.approx(
        float(BF.rdl_loss(x, target, pair_mask=mask)), rel=1e-12)


@pytest.mark.parametrize("comparison", ["pearson", "corr_cov"])
def test_small_asymmetries_are_refused_relative_to_the_targets_scale(comparison):
    """The symmetry tolerance is 1e-5 of the largest kept entry: a 1e-3 relative asymmetry of a
    target at scale 1e-3 is refused, whatever NaN sits at a masked pair."""
    from brainrdl.errors import DegenerateDataError

    x, y = _f64(5, 4, 70), _f64(5, 3, 71)
    target = torch.cdist(y, y) * 1e-3
    target[0, 1] *= 1.001
    target[2, 4] = target[4, 2] = float("nan")
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[2, 4] = mask[4, 2] = False
    with pytest.raises(DegenerateDataError, match="layer 'fc': target_rdm is not symmetric"):
        BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask, name="fc")


def test_corr_cov_checks_the_target_before_computing():
    from brainrdl.errors import DegenerateDataError

    x, y = _f64(5, 4, 72), _f64(5, 3, 73)
    target = torch.cdist(y, y)
    nan = target.clone()
    nan[0, 2] = nan[2, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'fc': target_rdm has NaN or infinite entries"):
        BF.rdl_loss(x, nan, comparison="corr_cov", name="fc")
    asym = target.clone()
    asym[0, 2] += 1.0
    with pytest.raises(DegenerateDataError, match="layer 'fc': target_rdm is not symmetric"):
        BF.rdl_loss(x, asym, comparison="corr_cov", name="fc")


@pytest.mark.parametrize("comparison", ["pearson", "cosine", "mse", "corr_cov"])
def test_euclidean_scale_free_losses_ignore_the_students_scale_over_forty_decades(comparison):
    """The flat-RDM floor scales with max|x|² like the euclidean entries themselves, so it stays
    negligible at any scale of the features (float64 spans 1e±20 without overflow)."""
    x, y = _f64(6, 4, 74), _f64(6, 3, 75)
    target = torch.cdist(y, y) ** 2
    ref = float(BF.rdl_loss(x, target, comparison=comparison, distance="euclidean"))
    for scale in (1e-20, 1e20):
        got = BF.rdl_loss(x * scale, target, comparison=comparison, distance="euclidean")
        assert float(got) == pytest.approx(ref, rel=1e-9, abs=1e-12), scale
    # and the target's own scale, with a NaN at a masked pair, in float32
    masked = target.clone()
    masked[0, 5] = masked[5, 0] = float("nan")
    mask = torch.isfinite(masked)
    ref_m = float(BF.rdl_loss(x, masked, comparison=comparison, pair_mask=mask))
    got = BF.rdl_loss(x.float(), (masked * 1e-20).float(), comparison=comparison, pair_mask=mask)
    assert float(got) == pytest.approx(ref_m, rel=1e-4, abs=1e-5)


def test_a_1d_batch_is_b_items_of_one_feature():
    x, y = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), _f64(3, 2, 76)
    assert float(BF.knowledge_projection_loss(torch.ones(3), torch.zeros(3))) == 1.0
    got = BF.rdl_loss(x, torch.cdist(y, y), distance="euclidean", comparison="pearson")
    assert float(got) == pytest.approx(float(BF.rdl_loss(x[:, None], torch.cdist(y, y),
                                                         distance="euclidean")), rel=1e-12)


def test_rdl_default_distance_is_correlation_except_for_the_paper_form():
    x, y = _f64(6, 4, 77), _f64(6, 3, 78)
    target = torch.cdist(y, y)
    assert float(BF.rdl_loss(x, target)) == float(BF.rdl_loss(x, target, distance="correlation"))
    assert float(BF.rdl_loss(x, target)) != float(BF.rdl_loss(x, target, distance="euclidean"))
    assert float(BF.rdl_loss(x, target, comparison="paper")) == float(
        BF.rdl_loss(x, target, comparison="paper", distance="euclidean"))


def test_projection_loss_is_computed_in_the_students_dtype():
    """A float64 projection against a float32 student: cast to float32, as every other loss."""
    s, p = _f64(4, 3, 79).float(), _f64(4, 3, 80)
    for mask in (None, torch.tensor([True, False, True, True])):
        got = BF.knowledge_projection_loss(s, p, item_mask=mask)
        assert got.dtype == torch.float32
        expected = BF.knowledge_projection_loss(s, p.float(), item_mask=mask)
        assert float(got) == float(expected)


def test_a_single_nonfinite_item_is_named_with_the_layer():
    x = torch.full((1, 3), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"layer 'fc': student features contain NaN .* \[0\]"):
        BF.rdl_loss(x, torch.zeros(1, 1), name="fc")


def test_rdl_comparisons_are_defined_from_their_minimum_number_of_pairs():
    """paper and cosine need 2 valid pairs, mse and pearson 3: at exactly that many the value is
    the closed form on those pairs (not the zero given below it)."""
    x = torch.tensor([[0.0, 1.0], [2.0, 0.5], [1.0, 3.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 2.0, 5.0], [2.0, 0.0, 3.0], [5.0, 3.0, 0.0]],
                          dtype=torch.float64)
    s_all = (torch.cdist(x, x) ** 2 / 2)[[0, 0, 1], [1, 2, 2]].numpy()  # rsatoolbox euclidean
    t_all = np.array([2.0, 5.0, 3.0])
    two = torch.ones(3, 3, dtype=torch.bool)
    two[1, 2] = two[2, 1] = False  # pairs (0, 1) and (0, 2) only
    s2, t2 = s_all[:2], t_all[:2]
    kw = {"distance": "euclidean"}
    paper = float(BF.rdl_loss(x, target, comparison="paper", pair_mask=two, **kw))
    assert paper == pytest.approx(np.mean((s2 - t2 * s2.max() / t2.max()) ** 2), rel=1e-12)
    cosine = float(BF.rdl_loss(x, target, comparison="cosine", pair_mask=two, **kw))
    assert cosine == pytest.approx(1 - s2 @ t2 / np.linalg.norm(s2) / np.linalg.norm(t2),
                                   rel=1e-12)
    r = np.corrcoef(s_all, t_all)[0, 1]
    pearson = float(BF.rdl_loss(x, target, comparison="pearson", **kw))
    assert pearson == pytest.approx(1 - r, rel=1e-12)
    assert float(BF.rdl_loss(x, target, comparison="mse", **kw)) == pytest.approx(2 * (1 - r),
                                                                                 rel=1e-12)
