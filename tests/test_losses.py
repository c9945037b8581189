"""Transfer losses: closed forms, hand-computed cases, rsatoolbox and the PKT reference code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rsatoolbox.rdm import RDMs
from rsatoolbox.rdm import compare as rsa_compare

from brainrdl.rsa.distances import pairwise_rdm, upper_tri
from brainrdl.train import functional as BF
from brainrdl.train.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss

RTOL = 1e-6
COMPARISONS = ["paper", "mse", "pearson", "cosine", "corr_cov"]
DISTANCES = ["euclidean", "correlation", "cosine"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _feats(b: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, d, generator=_gen(seed), dtype=torch.float64)


def _rel(a, b) -> float:
    a = float(a.detach()) if isinstance(a, torch.Tensor) else float(a)
    b = float(b.detach()) if isinstance(b, torch.Tensor) else float(b)
    return abs(a - b) / max(abs(b), 1e-12)


# --------------------------------------------------------------------------- RDL: closed forms


def test_paper_three_items_by_hand():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 2, 3], [2, 0, 6], [3, 6, 0]], dtype=torch.float64)
    # squared distances 1, 9, 4 over pairs (0,1), (0,2), (1,2); the target 2, 3, 6 is rescaled
    # to the student's maximum: times 9/6 -> 3, 4.5, 9
    expected = ((1 - 3) ** 2 + (9 - 4.5) ** 2 + (4 - 9) ** 2) / 3
    assert _rel(BF.rdl_loss(x, target, comparison="paper"), expected) < 1e-12
    assert _rel(BF.rdl_loss(x, target, comparison="paper", reduction="sum"), 3 * expected) < 1e-12
    raw = BF.rdl_loss(x, target, comparison="paper", paper_scale="none")
    assert _rel(raw, (1 + 36 + 4) / 3) < 1e-12
    per_pair = BF.rdl_loss(x, target, comparison="paper", paper_scale="none",
                             reduction="none")
    assert np.allclose(per_pair.numpy(), [1.0, 36.0, 4.0], rtol=1e-12)


def test_paper_scale_free_in_target_and_uses_squared_euclidean():
    x = _feats(7, 5, 1)
    target = torch.cdist(x, x) ** 2
    assert float(BF.rdl_loss(x, 37.0 * target, comparison="paper")) < 1e-20
    # plain (unsquared) distances are a different RDM: the loss must notice
    assert float(BF.rdl_loss(x, torch.cdist(x, x), comparison="paper")) > 1e-3


@pytest.mark.parametrize("comparison", COMPARISONS)
@pytest.mark.parametrize("distance", DISTANCES)
def test_student_equal_to_teacher_gives_zero(distance, comparison):
    x = _feats(9, 6, 2)
    target = pairwise_rdm(x, distance)
    assert abs(float(BF.rdl_loss(x, target, distance=distance, comparison=comparison))) < 1e-10


def test_mse_is_twice_one_minus_pearson():
    x, y = _feats(8, 5, 3), _feats(8, 4, 4)
    target = pairwise_rdm(y, "euclidean")
    mse = BF.rdl_loss(x, target, distance="euclidean", comparison="mse")
    pearson = BF.rdl_loss(x, target, distance="euclidean", comparison="pearson")
    assert _rel(mse, 2 * pearson) < 1e-12
    # and by hand: z-scores (population s.d.) of the two vectors
    s = upper_tri(pairwise_rdm(x, "euclidean")).numpy()
    t = upper_tri(target).numpy()
    zs, zt = (s - s.mean()) / s.std(), (t - t.mean()) / t.std()
    assert _rel(mse, np.mean((zs - zt) ** 2)) < 1e-12


@pytest.mark.parametrize(
    ("comparison", "method"), [("pearson", "corr"), ("cosine", "cosine"), ("corr_cov", "corr_cov")]
)
@pytest.mark.parametrize("distance", DISTANCES)
def test_scale_free_variants_match_rsatoolbox(distance, comparison, method):
    x, y = _feats(10, 6, 5), _feats(10, 3, 6)
    target = pairwise_rdm(y, "euclidean")
    loss = BF.rdl_loss(x, target, distance=distance, comparison=comparison)
    student = upper_tri(pairwise_rdm(x, distance)).numpy()
    sim = rsa_compare(RDMs(student[None]), RDMs(upper_tri(target).numpy()[None]), method=method)
    assert _rel(loss, 1 - sim[0, 0]) <= RTOL


def test_corr_cov_with_missing_pairs_matches_rsatoolbox():
    x, y = _feats(8, 6, 7), _feats(8, 3, 8)
    target = pairwise_rdm(y, "euclidean").clone()
    mask = torch.ones(8, 8, dtype=torch.bool)
    for i, j in [(0, 3), (2, 5), (6, 7)]:
        target[i, j] = target[j, i] = float("nan")
        mask[i, j] = mask[j, i] = False
    loss = BF.rdl_loss(x, target, distance="euclidean", comparison="corr_cov", pair_mask=mask)
    s = upper_tri(pairwise_rdm(x, "euclidean")).numpy()
    t = upper_tri(target).numpy()
    s = np.where(np.isnan(t), np.nan, s)
    sim = rsa_compare(RDMs(s[None]), RDMs(t[None]), method="corr_cov")
    assert np.isfinite(float(loss))
    assert _rel(loss, 1 - sim[0, 0]) <= RTOL


# --------------------------------------------------------------------------- RDL: masking


@pytest.mark.parametrize("comparison", COMPARISONS)
def test_item_mask_equals_sub_batch_and_nan_does_not_leak(comparison):
    b = 10
    x = _feats(b, 6, 9).requires_grad_(True)
    target = pairwise_rdm(_feats(b, 4, 10), "euclidean").clone()
    keep = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    target[~keep, :] = float("nan")
    target[:, ~keep] = float("nan")
    mask = keep[:, None] & keep[None, :]
    loss = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask)
    sub = BF.rdl_loss(x.detach()[keep], target[keep][:, keep], comparison=comparison)
    assert _rel(loss, sub) < 1e-10
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # items without targets get no gradient (up to rounding: the centring is over all items)
    assert torch.allclose(x.grad[~keep], torch.zeros((), dtype=x.dtype), atol=1e-12)
    assert torch.any(x.grad[keep] != 0)


@pytest.mark.parametrize("comparison", ["paper", "mse", "pearson", "cosine"])
def test_pair_mask_excludes_exactly_those_pairs(comparison):
    x, y = _feats(7, 5, 11), _feats(7, 5, 12)
    target = pairwise_rdm(y, "euclidean").clone()
    mask = torch.ones(7, 7, dtype=torch.bool)
    mask[1, 4] = mask[4, 1] = mask[0, 6] = mask[6, 0] = False
    target[1, 4] = target[4, 1] = float("nan")
    loss = BF.rdl_loss(x, target, distance="euclidean", comparison=comparison, pair_mask=mask)
    valid = upper_tri(mask)
    s = upper_tri(pairwise_rdm(x, "euclidean"))[valid].numpy()
    t = upper_tri(target)[valid].numpy()
    if comparison == "paper":
        expected = np.mean((s - t * s.max() / t.max()) ** 2)
    elif comparison == "mse":
        expected = 2 * (1 - np.corrcoef(s, t)[0, 1])
    elif comparison == "pearson":
        expected = 1 - np.corrcoef(s, t)[0, 1]
    else:
        expected = 1 - s @ t / np.sqrt((s @ s) * (t @ t))
    assert _rel(loss, expected) < 1e-10


@pytest.mark.parametrize("comparison", COMPARISONS)
def test_too_few_valid_pairs_gives_attached_zero(comparison):
    x = _feats(5, 4, 13).requires_grad_(True)
    target = torch.full((5, 5), float("nan"), dtype=torch.float64)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True  # a single valid pair
    target[0, 1] = target[1, 0] = 1.0
    loss = BF.rdl_loss(x, target, comparison=comparison, pair_mask=mask)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(x.grad == 0)


def test_single_item_batch_gives_attached_zero():
    x = torch.randn(1, 4, requires_grad=True)
    loss = BF.rdl_loss(x, torch.zeros(1, 1))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


# --------------------------------------------------------------------------- RDL: gradients


@pytest.mark.parametrize("comparison", COMPARISONS)
@pytest.mark.parametrize("distance", ["euclidean", "correlation"])
def test_gradients_match_finite_differences(distance, comparison):
    x = _feats(6, 4, 14).requires_grad_(True)
    target = pairwise_rdm(_feats(6, 3, 15), "euclidean")

    # the paper's scale factor is a constant in the authors' code (no gradient through it), so
    # finite differences are checked on the unscaled form; the scaled one is tested below
    scale = {"paper_scale": "none"} if comparison == "paper" else {}

    def f(z):
        return BF.rdl_loss(z, target, distance=distance, comparison=comparison,
                           check_finite=False, **scale)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


def test_paper_gradient_treats_the_scale_as_constant():
    x = _feats(6, 4, 40).requires_grad_(True)
    target = pairwise_rdm(_feats(6, 3, 41), "euclidean")
    BF.rdl_loss(x, target, comparison="paper").backward()
    got = x.grad.clone()
    x.grad = None
    s = upper_tri(pairwise_rdm(x, "euclidean"))
    t = upper_tri(target)
    beta = s.detach().max() / t.max()
    torch.mean((s - beta * t) ** 2).backward()
    assert torch.allclose(got, x.grad, rtol=1e-10, atol=0)


def test_descending_the_loss_aligns_the_student():
    torch.manual_seed(0)
    x = torch.randn(12, 8, requires_grad=True)
    target = pairwise_rdm(torch.randn(12, 3), "euclidean")
    opt = torch.optim.Adam([x], lr=0.1)
    first = float(BF.rdl_loss(x, target, comparison="pearson"))
    for _ in range(50):
        opt.zero_grad()
        loss = BF.rdl_loss(x, target, comparison="pearson")
        loss.backward()
        opt.step()
    assert float(loss) < 0.2 * first


# --------------------------------------------------------------------------- RDL: errors


def test_nonfinite_student_raises_naming_layer():
    x = torch.randn(4, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'layer3\.1\.conv2'.*items \[2\]"):
        BF.rdl_loss(x, torch.ones(4, 4), name="layer3.1.conv2")


def test_nan_target_at_kept_pair_raises():
    target = torch.ones(4, 4)
    target[0, 2] = target[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"target_rdm has NaN.*pair_mask"):
        BF.rdl_loss(torch.randn(4, 3), target, name="fc")


def test_zero_pattern_with_cosine_distance_names_layer_in_the_paper_form():
    x = torch.randn(4, 3)
    x[1] = 0.0
    with pytest.raises(ValueError, match=r"layer 'fc'.*cosine"):
        BF.rdl_loss(x, torch.ones(4, 4), distance="cosine", comparison="paper", name="fc")


@pytest.mark.parametrize("distance", ["correlation", "cosine"])
@pytest.mark.parametrize("comparison", ["pearson", "mse", "cosine", "corr_cov"])
def test_dead_rows_are_left_out_of_scale_free_losses(distance, comparison):
    # an all-zero activation row (dead ReLUs) has no correlation/cosine distance: its pairs
    # leave the loss (value = the loss without that item) and the gradient stays finite
    x = _feats(8, 6, 30).relu()
    x[3] = 0.0
    x.requires_grad_(True)
    target = pairwise_rdm(_feats(8, 4, 31), "euclidean")
    loss = BF.rdl_loss(x, target, distance=distance, comparison=comparison)
    keep = torch.arange(8) != 3
    sub = BF.rdl_loss(x.detach()[keep], target[keep][:, keep], distance=distance,
                      comparison=comparison)
    assert _rel(loss, sub) < 1e-10
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[3] == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"distance": "manhattan"}, "distance='manhattan'"),
        ({"comparison": "spearman"}, "comparison='spearman'"),
        ({"reduction": "batchmean"}, "reduction='batchmean'"),
        ({"pair_mask": torch.ones(3, 3, dtype=torch.bool)}, r"pair_mask .*\(4, 4\)"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BF.rdl_loss(torch.randn(4, 3), torch.ones(4, 4), **kwargs)


def test_wrong_target_shape_is_named():
    with pytest.raises(ValueError, match=r"target_rdm must be a square \(4, 4\)"):
        BF.rdl_loss(torch.randn(4, 3), torch.ones(6))


# --------------------------------------------------------------------------- RDLLoss module


def test_rdlloss_weighted_sum_and_per_layer():
    feats = {"a": _feats(6, 4, 16), "b": _feats(6, 2, 17).reshape(6, 1, 2)}
    targets = {"a": pairwise_rdm(_feats(6, 3, 18)), "b": pairwise_rdm(_feats(6, 3, 19))}
    module = RDLLoss(comparison="pearson", weights={"a": 0.25})
    total = module(feats, targets)
    la = BF.rdl_loss(feats["a"], targets["a"], comparison="pearson")
    lb = BF.rdl_loss(feats["b"], targets["b"], comparison="pearson")
    assert _rel(total, 0.25 * la + lb) < 1e-12
    assert set(module.per_layer) == {"a", "b"}
    assert _rel(module.per_layer["a"], la) < 1e-12 and not module.per_layer["a"].requires_grad


def test_rdlloss_tensor_input_and_masks_dict():
    x, target = _feats(6, 4, 20), pairwise_rdm(_feats(6, 3, 21))
    assert _rel(RDLLoss()(x, target), BF.rdl_loss(x, target)) < 1e-12
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = False
    got = RDLLoss()({"l": x}, {"l": target}, {"l": mask})
    assert _rel(got, BF.rdl_loss(x, target, pair_mask=mask)) < 1e-12


def test_rdlloss_missing_layer_lists_available():
    with pytest.raises(KeyError, match=r"lacks layers \['fc'\].*\['conv'\]"):
        RDLLoss()({"conv": torch.randn(4, 3)}, {"fc": torch.ones(4, 4)})


# --------------------------------------------------------------------------- PKT


def _pkt_reference_numpy(output_net, target_net, eps=1e-7):
    """Literal NumPy transcription of the authors' cosine_similarity_loss (probabilistic_kt)."""
    output_net_norm = np.sqrt(np.sum(output_net**2, axis=1, keepdims=True))
    output_net = output_net / (output_net_norm + eps)
    output_net[output_net != output_net] = 0
    target_net_norm = np.sqrt(np.sum(target_net**2, axis=1, keepdims=True))
    target_net = target_net / (target_net_norm + eps)
    target_net[target_net != target_net] = 0
    model_similarity = output_net @ output_net.T
    target_similarity = target_net @ target_net.T
    model_similarity = (model_similarity + 1.0) / 2.0
    target_similarity = (target_similarity + 1.0) / 2.0
    model_similarity = model_similarity / np.sum(model_similarity, axis=1, keepdims=True)
    target_similarity = target_similarity / np.sum(target_similarity, axis=1, keepdims=True)
    return np.mean(target_similarity * np.log((target_similarity + eps) / (model_similarity + eps)))


@pytest.mark.parametrize("dims", [(12, 5, 9), (3, 1, 7), (20, 64, 10)])
def test_pkt_matches_reference(dims):
    b, ds, dt = dims
    s, t = _feats(b, ds, 22), _feats(b, dt, 23)
    expected = _pkt_reference_numpy(s.numpy().copy(), t.numpy().copy())
    assert _rel(PKTLoss()(s, t), expected) <= RTOL
    if ds > 1:  # (with D=1 cosines are ±1 and the eps-level terms are below float32 precision)
        got32 = PKTLoss()(s.float(), t.float())
        assert abs(float(got32) - expected) < 1e-5


def test_pkt_item_mask_equals_sub_batch_and_grad():
    s = _feats(9, 5, 24).requires_grad_(True)
    t = _feats(9, 7, 25)
    keep = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    t_nan = t.clone()
    t_nan[~keep] = float("nan")
    loss = BF.pkt_loss(s, t_nan, item_mask=keep)
    expected = _pkt_reference_numpy(s.detach()[keep].numpy().copy(), t[keep].numpy().copy())
    assert _rel(loss, expected) <= RTOL
    loss.backward()
    assert torch.isfinite(s.grad).all() and torch.all(s.grad[~keep] == 0)


def test_pkt_zero_for_identical_geometry_and_errors():
    x = _feats(6, 4, 26)
    assert abs(float(PKTLoss()(x, 2 * x))) < 1e-9
    with pytest.raises(ValueError, match="same batch size"):
        PKTLoss()(x, x[:4])
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="layer 'pool'"):
        PKTLoss()(bad, x, name="pool")


# --------------------------------------------------------------------------- CKA


def _cka_numpy(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    hsic = np.linalg.norm(x.T @ y) ** 2  # ||X^T Y||_F^2 = <XX^T, YY^T>_F
    return hsic / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_matches_numpy_and_log_form():
    x, y = _feats(15, 6, 27), _feats(15, 4, 28)
    cka = _cka_numpy(x.numpy(), y.numpy())
    assert _rel(BF.cka_loss(x, y, log=False), 1 - cka) <= RTOL
    assert _rel(CKALoss()(x, y), np.log(1 - cka)) <= RTOL


def test_cka_rdm_route_equals_feature_route():
    x, y = _feats(12, 5, 29), _feats(12, 8, 30)
    by_feat = BF.cka_loss(x, y, log=False)
    # rsatoolbox-scaled squared euclidean RDM (divided by D): CKA ignores the scale
    by_rdm = BF.cka_loss(x, target_rdm=pairwise_rdm(y, "euclidean"), log=False)
    assert _rel(by_rdm, by_feat) <= RTOL


def test_cka_item_mask_equals_sub_batch():
    x = _feats(10, 5, 31).requires_grad_(True)
    y = _feats(10, 3, 32)
    keep = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0, 1, 1], dtype=torch.bool)
    rdm = pairwise_rdm(y, "euclidean").clone()
    rdm[~keep] = float("nan")
    rdm[:, ~keep] = float("nan")
    expected = np.log(1 - _cka_numpy(x.detach()[keep].numpy(), y[keep].numpy()))
    assert _rel(BF.cka_loss(x, target_rdm=rdm, item_mask=keep), expected) <= RTOL
    y_nan = y.clone()
    y_nan[~keep] = float("nan")
    loss = BF.cka_loss(x, y_nan, item_mask=keep)
    assert _rel(loss, expected) <= RTOL
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[~keep] == 0)


def test_cka_needs_exactly_one_teacher_and_floors_log():
    x = _feats(5, 3, 33)
    with pytest.raises(ValueError, match="exactly one"):
        BF.cka_loss(x)
    with pytest.raises(ValueError, match="exactly one"):
        BF.cka_loss(x, x, target_rdm=torch.ones(5, 5))
    assert _rel(BF.cka_loss(x, x, eps=1e-8), np.log(1e-8)) < 1e-6


# --------------------------------------------------------------------------- KD


def test_kd_matches_manual_formula():
    s, t = _feats(6, 10, 34), _feats(6, 10, 35)
    temp = 3.0
    ps = np.exp(s.numpy() / temp)
    ps /= ps.sum(axis=1, keepdims=True)
    pt = np.exp(t.numpy() / temp)
    pt /= pt.sum(axis=1, keepdims=True)
    expected = temp**2 * np.mean(np.sum(pt * np.log(pt / ps), axis=1))
    assert _rel(KDLoss(temp)(s, t), expected) <= RTOL
    # same as torch's kl_div with batchmean
    ref = torch.nn.functional.kl_div(
        torch.log_softmax(s / temp, 1), torch.softmax(t / temp, 1), reduction="batchmean"
    )
    assert _rel(KDLoss(temp)(s, t), temp**2 * ref) <= RTOL
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(0.0)


# --------------------------------------------------------------------------- knowledge projection


def test_knowledge_projection_loss_is_mse():
    a, b = _feats(4, 6, 36), _feats(4, 6, 37)
    assert _rel(BF.knowledge_projection_loss(a, b), torch.mean((a - b) ** 2)) < 1e-12
    keep = torch.tensor([True, False, True, True])
    got = BF.knowledge_projection_loss(a, b, item_mask=keep)
    assert _rel(got, torch.mean((a[keep] - b[keep]) ** 2)) < 1e-12


def test_knowledge_projection_learns_linear_map():
    torch.manual_seed(0)
    w_true = torch.randn(4, 8)
    teacher = torch.randn(16, 8, 3, 3)
    student = torch.einsum("oc,bchw->bohw", w_true, teacher)  # a 1x1 conv of the teacher
    kp = KnowledgeProjection(8, 4)
    opt = torch.optim.Adam(kp.parameters(), lr=0.1)
    first = float(kp(student, teacher))
    for _ in range(80):
        opt.zero_grad()
        loss = kp(student, teacher)
        loss.backward()
        opt.step()
    assert float(loss) < 0.01 * first
    assert torch.allclose(kp.proj.weight, w_true, atol=0.05)


def test_knowledge_projection_trains_student_jointly_and_resizes():
    torch.manual_seed(1)
    teacher = torch.randn(8, 6, 8, 8, requires_grad=True)
    student = torch.randn(8, 3, 4, 4, requires_grad=True)
    kp = KnowledgeProjection.from_shapes(teacher.shape, student.shape)
    loss = kp(student, teacher)
    loss.backward()
    assert student.grad is not None and kp.proj.weight.grad is not None
    assert teacher.grad is None  # the teacher is frozen
    projected = kp.project(teacher, (4, 4))
    manual = torch.nn.functional.adaptive_avg_pool2d(
        torch.einsum("oc,bchw->bohw", kp.proj.weight, teacher)
        + kp.proj.bias[None, :, None, None], (4, 4))
    assert torch.allclose(projected, manual, atol=1e-6)
    assert kp.project(teacher, (16, 16)).shape == (8, 3, 16, 16)
    vec = KnowledgeProjection(6, 3, kind="linear")
    assert vec(torch.randn(5, 3), torch.randn(5, 6)).ndim == 0
    with pytest.raises(ValueError, match="kind='linear'"):
        vec(student, teacher)
    with pytest.raises(ValueError, match=r"teacher_feat must have shape \(B, 6"):
        kp(student, torch.randn(8, 5, 8, 8))


def test_knowledge_projection_pair_choice():
    t = {"t1": (1, 8, 32, 32), "t2": (1, 16, 16, 16), "t3": (1, 32, 8, 8), "tfc": (1, 10)}
    s = {"s1": (1, 4, 32, 32), "s2": (1, 8, 16, 16), "s3": (1, 8, 8, 8), "sfc": (1, 10)}
    pairs = KnowledgeProjection.candidate_pairs(t, s)
    assert ("tfc", "s1") not in pairs and ("tfc", "sfc") in pairs
    assert KnowledgeProjection.pick_pair(t, s) == ("t2", "s2")
    with pytest.raises(ValueError, match="no compatible"):
        KnowledgeProjection.pick_pair({"t": (1, 3)}, {"s": (1, 3, 4, 4)})


# --------------------------------------------------------------------------- devices and memory


def test_losses_run_on_device(device):
    x = torch.randn(16, 32, device=device, requires_grad=True)
    y = torch.randn(16, 8, device=device)
    target = pairwise_rdm(y, "euclidean")
    total = (
        RDLLoss()(x, target)
        + RDLLoss(comparison="corr_cov")(x, target)
        + PKTLoss()(x, y)
        + CKALoss()(x, y)
        + CKALoss()(x, target_rdm=target)
    )
    total.backward()
    assert x.grad.device.type == device.type and torch.isfinite(x.grad).all()


def test_no_b_by_b_by_d_tensor_is_formed():
    # A (B, B, D) float32 tensor here would be 256*256*4096*4 bytes = 1 GiB; the Gram route
    # stays at a few MiB. Guard by the autograd graph's saved tensors.
    b, d = 256, 4096
    x = torch.randn(b, d, requires_grad=True)
    target = pairwise_rdm(torch.randn(b, 4), "euclidean")
    largest = 0

    def pack(t):
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = BF.rdl_loss(x, target, comparison="pearson") + BF.pkt_loss(x, x.detach())
    loss.backward()
    assert largest <= b * d


# ----------------------------------------------------------------- review fixes: bad teachers


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_pkt_refuses_non_finite_teacher(bad):
    teacher = torch.randn(4, 5)
    teacher[2, 1] = bad
    with pytest.raises(ValueError, match=r"layer 'fc1'.*teacher.*\[2\]"):
        BF.pkt_loss(torch.randn(4, 6), teacher, name="fc1")


def test_pkt_ignores_non_finite_teacher_rows_that_are_masked_out():
    teacher = torch.randn(4, 5)
    teacher[3] = float("nan")
    mask = torch.tensor([True, True, True, False])
    student = torch.randn(4, 6)
    got = BF.pkt_loss(student, teacher, item_mask=mask)
    assert torch.allclose(got, BF.pkt_loss(student[:3], teacher[:3]))


def test_knowledge_projection_names_non_finite_teacher():
    kp = KnowledgeProjection(5, 3)
    teacher = torch.randn(4, 5)
    teacher[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'block2'.*teacher"):
        kp(torch.randn(4, 3), teacher, name="block2")


def test_rdl_weights_accept_numpy_and_tensor_scalars():
    loss = RDLLoss(weights={"a": np.float32(0.5), "b": torch.tensor(2.0)})
    assert loss.weights == {"a": 0.5, "b": 2.0}
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match=r"weights\['a'\]"):
            RDLLoss(weights={"a": bad})
