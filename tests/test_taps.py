"""LayerTaps: captured values against direct sub-module calls, hooks' life cycle, wrappers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from brainrdl.nets.taps import LayerTaps, resolve_layers, unwrap_model


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )


def test_flatten_and_avgpool_match_direct_calls():
    net, x = _net(), torch.randn(6, 1, 8, 8)
    with LayerTaps(net, ["1", "2.0", "4"], reduction={"2.0": "avgpool"}) as taps:
        out = net(x)
        acts = taps.activations
    h1 = net[1](net[0](x))
    h2 = net[2][0](h1)
    torch.testing.assert_close(acts["1"], h1.reshape(6, -1))
    torch.testing.assert_close(acts["2.0"], h2.mean(dim=(2, 3)))
    torch.testing.assert_close(acts["4"], out)
    assert acts["2.0"].shape == (6, 4)


def test_random_projection_is_the_seeded_gaussian_matrix():
    net, x = _net(), torch.randn(4, 1, 8, 8)
    taps = LayerTaps(net, ["1"], reduction="random_projection", projection_dim=16, seed=3)
    got = taps.extract(x)["1"]
    gen = torch.Generator().manual_seed(3)
    proj = torch.randn(3 * 64, 16, generator=gen, dtype=torch.float64) / math.sqrt(16)
    expected = net[1](net[0](x)).reshape(4, -1) @ proj.float()
    torch.testing.assert_close(got, expected)
    # same seed -> same features on a second instance; another seed differs
    again = LayerTaps(net, ["1"], reduction="random_projection", projection_dim=16, seed=3)
    torch.testing.assert_close(again.extract(x)["1"], got)
    other = LayerTaps(net, ["1"], reduction="random_projection", projection_dim=16, seed=4)
    assert not torch.allclose(other.extract(x)["1"], got)


def test_student_keeps_graph_teacher_detached():
    net, x = _net(), torch.randn(3, 1, 8, 8)
    student = LayerTaps(net, ["2"])
    teacher = LayerTaps(net, ["2"], detach=True)
    net(x)
    assert student.activations["2"].grad_fn is not None
    assert teacher.activations["2"].grad_fn is None
    student.activations["2"].pow(2).sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    assert net[4].weight.grad is None  # layer 4 is after the tap: no gradient reaches it


def test_capture_flag_and_close():
    net, x = _net(), torch.randn(2, 1, 8, 8)
    taps = LayerTaps(net, ["1"])
    taps.capture = False
    net(x)
    assert taps.activations == {}
    taps.capture = True
    net(x)
    assert set(taps.activations) == {"1"}
    assert len(net[1]._forward_hooks) == 1
    taps.close()
    assert taps.closed and len(net[1]._forward_hooks) == 0 and taps.activations == {}
    net(x)
    assert taps.activations == {}


def test_wrong_name_lists_close_names():
    net = nn.Sequential()
    net.add_module("layer1", nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(KeyError, match=r"layer1\.0"):
        LayerTaps(net, ["layer1.O"])  # letter O for zero
    with pytest.raises(ValueError, match="reduction"):
        LayerTaps(net, ["layer1"], reduction="maxpool")
    with pytest.raises(KeyError, match="not tapped"):
        LayerTaps(net, ["layer1"], reduction={"layer2": "flatten"})
    with pytest.raises(ValueError, match="projection_dim"):
        LayerTaps(net, ["layer1"], projection_dim=0)


def test_wrapped_model_names_resolve_with_and_without_prefix():
    net, x = _net(), torch.randn(2, 1, 8, 8)
    wrapped = nn.DataParallel(net)  # on CPU it simply calls the module, like a 1-process DDP
    assert unwrap_model(wrapped) is net
    assert resolve_layers(wrapped, ["module.1"])["module.1"] is net[1]
    taps = LayerTaps(wrapped, ["1", "module.2"], detach=True)
    acts = taps.extract(x)
    torch.testing.assert_close(acts["1"], net[1](net[0](x)).reshape(2, -1))
    assert set(acts) == {"1", "module.2"}


def test_extract_reports_layers_not_called():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RuntimeError, match="unused"):
        LayerTaps(Skip(), ["used", "unused"]).extract(torch.randn(2, 2))


def test_hooks_survive_torch_compile():
    net, x = _net(), torch.randn(3, 1, 8, 8)
    taps = LayerTaps(net, ["1"], detach=True)
    compiled = torch.compile(net, backend="eager")
    compiled(x)
    torch.testing.assert_close(taps.activations["1"], net[1](net[0](x)).reshape(3, -1))
    taps.capture = False
    taps.clear()
    compiled(x)
    assert taps.activations == {}
    assert unwrap_model(compiled) is net


def test_reduction_none_keeps_shape_and_keep_raw_stores_unreduced():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    x = torch.randn(5, 1, 8, 8)
    with LayerTaps(net, ["0", "1"], reduction={"0": "none"}, keep_raw=True) as taps:
        acts = taps.extract(x)
        assert tuple(acts["0"].shape) == (5, 4, 6, 6)
        assert tuple(acts["1"].shape) == (5, 144)
        torch.testing.assert_close(taps.raw["1"], net(x))
        torch.testing.assert_close(acts["0"], net[0](x))
