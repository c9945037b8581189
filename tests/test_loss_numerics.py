"""Scale-free RDL comparisons stay scale-free in float32; degenerate features keep finite grads."""

from __future__ import annotations

import pytest
import torch

from brainrdl.rsa.distances import pairwise_rdm
from brainrdl.train import functional as BF
from brainrdl.train.losses import PKTLoss, RDLLoss

SCALE_FREE = ["pearson", "mse", "cosine", "corr_cov"]


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 40, generator=g, dtype=torch.float64)
    target = pairwise_rdm(torch.randn(12, 7, generator=g, dtype=torch.float64), "correlation")
    return x, target


@pytest.mark.parametrize("comparison", SCALE_FREE)
@pytest.mark.parametrize("distance", ["correlation", "euclidean", "cosine"])
@pytest.mark.parametrize("scale", [1e-10, 1e-8, 1e-4, 1e4, 1e10])
def test_float32_value_does_not_depend_on_feature_or_target_scale(distance, comparison, scale):
    x, target = _data()
    reference = float(BF.rdl_loss(x, target, distance=distance, comparison=comparison))
    xs = (x * scale).float().requires_grad_(True)
    got = BF.rdl_loss(xs, (target * scale).float(), distance=distance, comparison=comparison)
    # float32 rounding only (the loss is O(1)); the old absolute floors gave ~1 here
    assert abs(float(got.detach()) - reference) < 2e-5
    got.backward()
    assert torch.isfinite(xs.grad).all()


def test_mse_at_1e_minus_8_equals_twice_one_minus_pearson_in_float32():
    x, target = _data(1)
    reference = 2 * float(BF.rdl_loss(x, target, comparison="pearson"))
    got = BF.rdl_loss((x * 1e-8).float(), target.float(), comparison="mse")
    assert abs(float(got) - reference) < 2e-5


@pytest.mark.parametrize("comparison", SCALE_FREE)
@pytest.mark.parametrize("distance", ["correlation", "euclidean", "cosine"])
def test_identical_features_give_small_finite_gradients(distance, comparison):
    # every item has the same (non-constant) pattern: the student RDM is zero up to rounding;
    # dividing that noise by its own spread used to give float32 gradients of norm 1e6-1e9
    pattern = torch.linspace(-1.0, 2.0, 40)
    x = pattern.repeat(12, 1).requires_grad_(True)
    _, target = _data(2)
    loss = BF.rdl_loss(x, target.float(), distance=distance, comparison=comparison)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert float(x.grad.norm()) < 1e-1


def test_pkt_with_an_all_zero_student_row_has_finite_gradients():
    g = torch.Generator().manual_seed(3)
    student = torch.randn(6, 5, generator=g).relu()
    student[2] = 0.0  # a dead ReLU row
    student.requires_grad_(True)
    teacher = torch.randn(6, 4, generator=g)
    loss = PKTLoss()(student, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    # the value is the reference's: a zero row normalises to zero (0 / (0 + eps))
    s = student.detach()
    s_unit = s / (s.norm(dim=1, keepdim=True) + 1e-7)
    t_unit = teacher / (teacher.norm(dim=1, keepdim=True) + 1e-7)
    ps = (s_unit @ s_unit.T + 1) / 2
    pt = (t_unit @ t_unit.T + 1) / 2
    ps, pt = ps / ps.sum(1, keepdim=True), pt / pt.sum(1, keepdim=True)
    ref = (pt * torch.log((pt + 1e-7) / (ps + 1e-7))).mean()
    assert abs(float(loss.detach()) - float(ref)) < 1e-6


def test_default_is_the_stable_scale_free_form_and_paper_form_keeps_its_name():
    default = RDLLoss()
    assert (default.distance, default.comparison) == ("correlation", "pearson")
    paper = RDLLoss(comparison="paper")
    assert (paper.distance, paper.comparison) == ("euclidean", "paper")
    x, target = _data(4)
    assert torch.allclose(default(x, target), BF.rdl_loss(x, target, distance="correlation",
                                                          comparison="pearson"))
    # the default is 1 - Pearson r between the correlation-distance RDMs
    s = pairwise_rdm(x, "correlation")
    iu = torch.triu_indices(12, 12, 1)
    r = torch.corrcoef(torch.stack([s[iu[0], iu[1]], target[iu[0], iu[1]]]))[0, 1]
    assert abs(float(default(x, target)) - float(1 - r)) < 1e-10


def test_nan_feature_is_still_named_after_rescaling():
    x, target = _data(5)
    x[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'fc'.*items \[4\]"):
        BF.rdl_loss(x, target, name="fc")
