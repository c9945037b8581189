"""``brainrdl.load_model`` / ``list_layers`` / ``layers="auto"``: every backend, no downloads."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from torch import nn

import brainrdl
from brainrdl.nets.layers import list_layers
from brainrdl.nets.loading import (
    ImageTransform,
    MissingExtraError,
    ModelSpecError,
    WeightsError,
    WeightsNotFoundError,
    load_model,
)
from brainrdl.nets.models import DigitCNN
from brainrdl.nets.taps import LayerTaps


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly: a download would be a test failure."""

    def refuse(*args, **kwargs):
        raise AssertionError("brainrdl tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _same_params(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], msg=key)


# ------------------------------------------------------------------------------ torchvision


def test_torchvision_random_weights_transform_and_layers():
    model, transform, layers = load_model("torchvision:resnet18", num_classes=7)
    assert not model.training
    assert layers == ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert (transform.size, transform.resize, transform.channels) == (224, 256, 3)
    x = transform(torch.rand(1, 40, 60))  # a grey image: converted to RGB, resized, cropped
    assert tuple(x.shape) == (3, 224, 224)
    assert model(x[None]).shape == (1, 7)
    # the normalisation is ImageNet's: a mid-grey image maps to (0.5 - mean) / std
    grey = transform(torch.full((3, 224, 224), 0.5))
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(grey.mean(dim=(1, 2)), expected, atol=1e-5, rtol=0)


def test_torchvision_state_dict_file(tmp_path):
    torch.manual_seed(0)
    source, _, _ = load_model("torchvision:mobilenet_v3_small", num_classes=3)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "ckpt.pth")  # a training file
    torch.manual_seed(1)
    for name in ("w.pt", "ckpt.pth"):
        loaded, _, _ = load_model("torchvision:mobilenet_v3_small", tmp_path / name,
                                  num_classes=3)  # fmt: skip
        _same_params(loaded, source)


def test_torchvision_named_weights_only_from_cache(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-.*\.pth.*never downloads"):
        load_model("torchvision:resnet18", "DEFAULT")
    # the file placed where the message says: read from there, nothing downloaded
    torch.manual_seed(3)
    reference = __import__("torchvision").models.resnet18()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    url = __import__("torchvision").models.ResNet18_Weights.DEFAULT.url
    torch.save(reference.state_dict(), folder / url.rsplit("/", 1)[-1])
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or
                        real_load(*a, **k))  # fmt: skip
    model, _, _ = load_model("torchvision:resnet18", "DEFAULT")
    _same_params(model, reference)
    assert calls == [True]  # the cached file is read weights-only, not by torchvision's loader


def test_bad_specs_and_weight_files(tmp_path):
    with pytest.raises(ModelSpecError, match="BACKEND:NAME"):
        load_model("resnet18")
    with pytest.raises(ModelSpecError, match="unknown backend 'keras'"):
        load_model("keras:resnet18")
    with pytest.raises(ModelSpecError, match="no model 'resnet19'"):
        load_model("torchvision:resnet19")
    with pytest.raises(ModelSpecError, match="IMAGENET1K_V1"):
        load_model("torchvision:resnet18", "IMAGENET9K")
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        load_model("torchvision:resnet18", tmp_path / "missing.pt")
    # a pickled module is not a weights file: refused, its code never run
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_model("module:brainrdl.nets.models:DigitCNN", tmp_path / "module.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(WeightsError, match=r"junk\.pt"):
        load_model("module:brainrdl.nets.models:DigitCNN", tmp_path / "junk.pt")
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="missing keys"):
        load_model("module:brainrdl.nets.models:DigitCNN", tmp_path / "other.pt")


# ---------------------------------------------------------------------------------- module:


def test_module_factory_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "labnets_cwd.py").write_text(
        "from torch import nn\n\n"
        "def make(width=4):\n"
        "    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.LazyLinear(5))\n"
    )
    monkeypatch.chdir(tmp_path)
    model, transform, layers = load_model("module:labnets_cwd:make", width=6)
    assert transform == ImageTransform(channels=1)  # only the channel conversion
    assert model[0].out_channels == 6
    assert layers == ["0", "3"]
    with pytest.raises(ModelSpecError, match="no function 'build'"):
        load_model("module:labnets_cwd:build")
    with pytest.raises(ModelSpecError, match="cannot import 'nosuchmodule'"):
        load_model("module:nosuchmodule:make")
    with pytest.raises(ModelSpecError, match="state-dict file"):
        load_model("module:labnets_cwd:make", "DEFAULT")


# ------------------------------------------------------------------------------- list_layers


def test_list_layers_on_common_architectures():
    tv = pytest.importorskip("torchvision")
    assert list_layers(DigitCNN()) == ["conv1", "conv2", "fc1", "fc2"]
    assert list_layers(tv.models.resnet50()) == [
        "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]  # fmt: skip
    assert list_layers(tv.models.densenet121())[:4] == [
        f"features.denseblock{i}" for i in range(1, 5)]  # fmt: skip
    assert list_layers(tv.models.alexnet())[:3] == ["features.2", "features.5", "features.12"]
    vit = list_layers(tv.models.vit_b_16())
    assert vit[0] == "encoder.layers.encoder_layer_0" and len(vit) == 13
    assert brainrdl.list_layers is list_layers
    with pytest.raises(ValueError, match="no sub-modules with parameters"):
        list_layers(nn.Sequential(nn.ReLU()))


def test_auto_layers_in_taps_extract_rdms_and_compare_layers():
    torch.manual_seed(0)
    net = DigitCNN()
    x = torch.rand(6, 1, 8, 8)
    taps = LayerTaps(net, "auto", detach=True)
    assert taps.layers == list_layers(net)
    taps.close()
    auto = brainrdl.extract_rdms(net, x, "auto", progress=False)
    named = brainrdl.extract_rdms(net, x, list_layers(net), progress=False)
    assert auto.rdm_descriptors["layer"] == list_layers(net)
    np.testing.assert_array_equal(auto.get_vectors(), named.get_vectors())
    brain = {"IT": named.subset("layer", "fc1")}
    table = brainrdl.compare_layers(net, brain, stimuli=x, layer_names="auto")
    assert list(table["layer"]) == list_layers(net)
    # the layer equal to the brain RDM is the best one, with similarity 1
    assert table.loc[table["best"], "layer"].item() == "fc1"
    assert table.loc[table["best"], "similarity"].item() == pytest.approx(1.0)


def test_token_reductions_cls_and_mean():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4)) for _ in range(2)])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    torch.manual_seed(0)
    net = Tokens()
    x = torch.randn(3, 5, 4)  # (batch, tokens, features)
    assert list_layers(net) == ["blocks.0", "blocks.1"]
    out = net.blocks[0](x)
    with LayerTaps(net, "auto", reduction="cls", detach=True) as taps:
        acts = taps.extract(x)
        torch.testing.assert_close(acts["blocks.0"], out[:, 0])
    with LayerTaps(net, "auto", reduction="mean", detach=True) as taps:
        torch.testing.assert_close(taps.extract(x)["blocks.0"], out.mean(1))
    with LayerTaps(net, ["blocks.0"], reduction="flatten", detach=True) as taps:
        assert taps.extract(x)["blocks.0"].shape == (3, 20)


# ------------------------------------------------------------------------ optional backends


def test_timm_random_state_dict_and_no_download(tmp_path, no_network):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model, transform, layers = load_model("timm:test_vit")
    assert layers[:2] == ["blocks.0", "blocks.1"] and layers[-1] == "head"
    assert transform.channels == 3 and transform.size == model.pretrained_cfg["input_size"][-1]
    x = torch.rand(2, 3, transform.size, transform.size)
    with LayerTaps(model, layers, reduction="cls", detach=True) as taps:
        acts = taps.extract(x)
    assert acts["blocks.0"].shape == (2, model.embed_dim)
    torch.save(model.state_dict(), tmp_path / "vit.pt")
    torch.manual_seed(1)
    loaded, _, _ = load_model("timm:test_vit", tmp_path / "vit.pt")
    _same_params(loaded, model)
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        load_model("timm:test_vit", "DEFAULT")


def test_open_clip_image_tower(tmp_path, no_network):
    open_clip = pytest.importorskip("open_clip")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16,
                          "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                        "layers": 1}}  # fmt: skip
    (tmp_path / "brainrdl-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "brainrdl-tiny-clip.json")
    torch.manual_seed(0)
    visual, transform, layers = load_model("open_clip:brainrdl-tiny-clip")
    assert transform.size == 32 and transform.interpolation == "bicubic"
    assert visual(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    assert any("resblocks" in name for name in layers)
    torch.save(visual.state_dict(), tmp_path / "visual.pt")
    loaded, _, _ = load_model("open_clip:brainrdl-tiny-clip", tmp_path / "visual.pt")
    _same_params(loaded, visual)
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        load_model("open_clip:ViT-B-32", "openai")


def test_hugging_face_vit_from_a_local_folder(tmp_path, no_network):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32)  # fmt: skip
    config.save_pretrained(tmp_path / "tiny-vit")
    torch.manual_seed(0)
    model, transform, layers = load_model(f"hf:{tmp_path / 'tiny-vit'}")
    assert len(layers) >= 2 and layers[0].endswith(".0") and layers[1].endswith(".1")
    assert type(dict(model.named_modules())[layers[0]]).__name__ == "ViTLayer"
    assert transform.size == 32
    rdms = brainrdl.extract_rdms(model, torch.rand(4, 3, 32, 32), "auto", reduction="cls",
                                 progress=False)  # fmt: skip
    assert rdms.n_rdm == len(layers)
    torch.save(model.model.state_dict(), tmp_path / "vit.pt")
    loaded, _, _ = load_model(f"hf:{tmp_path / 'tiny-vit'}", tmp_path / "vit.pt")
    _same_params(loaded, model)
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        load_model("hf:google/vit-base-patch16-224")
    with pytest.raises(WeightsNotFoundError, match="not in the local cache"):
        load_model(f"hf:{tmp_path / 'tiny-vit'}", "pretrained")


def test_missing_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed: import fails
    with pytest.raises(MissingExtraError, match=r"brainrdl\[models\]"):
        load_model("timm:resnet18")


@pytest.mark.gpu
def test_loaded_network_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    model, transform, _ = load_model("torchvision:resnet18")
    x = torch.stack([transform(torch.rand(3, 64, 64)) for _ in range(6)])
    cpu = brainrdl.extract_rdms(model, x, "auto", progress=False, dtype=torch.float64)
    gpu = brainrdl.extract_rdms(model, x, "auto", device="cuda", progress=False,
                                dtype=torch.float64)  # fmt: skip
    np.testing.assert_allclose(gpu.get_vectors(), cpu.get_vectors(), atol=1e-4)
