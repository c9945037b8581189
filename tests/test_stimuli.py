"""Stimulus sets: folders, file lists, TSV tables, arrays, the 92 images; channels; id checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from brainrdl.analysis.stimuli import StimulusMismatchError, StimulusSet
from brainrdl.nets.loading import ImageTransform, load_model
from brainrdl.nets.models import DigitCNN


def _write(folder, names, mode="RGB", size=(6, 5), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in names:
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(arr, mode=mode).save(folder / name)
        arrays[name] = arr
    return arrays


def test_folder_ids_order_and_pixels(tmp_path):
    arrays = _write(tmp_path / "img", ["b.png", "a.png", "c.bmp"])
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    stim = StimulusSet.from_folder(tmp_path / "img")
    assert stim.ids == ["a", "b", "c"]
    x = stim[0]
    assert x.shape == (3, 5, 6) and x.dtype == torch.float32
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), arrays["a.png"] / 255.0, rtol=1e-6)


def test_greyscale_rgb_conversion(tmp_path):
    rgb = _write(tmp_path / "rgb", ["x.png"])["x.png"]
    grey = _write(tmp_path / "grey", ["g.png"], mode="L")["g.png"]
    as_grey = StimulusSet.from_folder(tmp_path / "rgb", channels=1)[0]
    luma = (rgb / 255.0) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow's "L"
    np.testing.assert_allclose(as_grey[0].numpy(), luma, atol=1e-5)
    as_rgb = StimulusSet.from_folder(tmp_path / "grey", channels=3)[0]
    assert as_rgb.shape == (3, 5, 6)
    for c in range(3):
        np.testing.assert_allclose(as_rgb[c].numpy(), grey / 255.0, rtol=1e-6)


def test_for_model_takes_channels_from_the_model_or_transform(tmp_path):
    _write(tmp_path / "img", ["a.png", "b.png"], size=(8, 8))
    stim = StimulusSet.from_folder(tmp_path / "img")
    digit = stim.for_model(model=DigitCNN())  # 1 input channel
    assert digit[0].shape == (1, 8, 8)
    assert DigitCNN()(torch.stack([digit[0], digit[1]])).shape == (2, 10)
    _, transform, _ = load_model("torchvision:resnet18")
    ready = stim.for_model(transform)
    assert ready[1].shape == (3, 224, 224)
    torch.testing.assert_close(ready[1], transform(stim[1]))


def test_tsv_files_and_arrays(tmp_path):
    _write(tmp_path / "img", ["img_001.png", "img_002.png"])
    (tmp_path / "stimuli.tsv").write_text(
        "stimulus_id\tpath\nface\timg/img_002.png\nhouse\timg/img_001.png\n"
    )
    stim = StimulusSet.from_tsv(tmp_path / "stimuli.tsv")
    assert stim.ids == ["face", "house"]
    torch.testing.assert_close(stim[0], StimulusSet.from_folder(tmp_path / "img")[1])
    files = StimulusSet.from_files([tmp_path / "img" / "img_002.png"], ids=["only"])
    assert files.ids == ["only"]
    arr = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    from_array = StimulusSet.from_array(arr)
    assert from_array.ids == [0, 1] and from_array[1].shape == (3, 4, 4)
    torch.testing.assert_close(from_array[1], torch.from_numpy(arr[1]).permute(2, 0, 1) / 255.0)
    np.save(tmp_path / "x.npy", arr)
    assert len(StimulusSet.from_any(tmp_path / "x.npy")) == 2
    assert StimulusSet.from_any(tmp_path / "stimuli.tsv").ids == ["face", "house"]


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        StimulusSet.from_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        StimulusSet.from_folder(tmp_path / "empty")
    (tmp_path / "bad.tsv").write_text("id\tfile\na\tb.png\n")
    with pytest.raises(ValueError, match="'stimulus_id' and 'path'"):
        StimulusSet.from_tsv(tmp_path / "bad.tsv")
    with pytest.raises(ValueError, match="unique"):
        StimulusSet.from_array(np.zeros((2, 3, 3)), ids=["a", "a"])
    with pytest.raises(ValueError, match="one id per stimulus"):
        StimulusSet.from_array(np.zeros((2, 3, 3)), ids=["a"])
    with pytest.raises(ValueError, match="NaN"):
        StimulusSet.from_array(np.full((2, 3, 3), np.nan))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"junk\.png"):
        StimulusSet.from_files([tmp_path / "junk.png"])[0]


def test_id_mismatch_table_names_both_sides():
    stim = StimulusSet.from_array(torch.rand(3, 4, 4), ids=["cat", "dog", "extra"])
    assert stim.check_ids(["dog", "cat"]) == {"cat": "cat", "dog": "dog"}  # a subset is fine
    with pytest.raises(StimulusMismatchError) as info:
        stim.check_ids(["cat", "dog", "cow", "pig"], source="rdms.hdf5")
    message = str(info.value)
    assert info.value.missing_images == ["cow", "pig"]
    assert info.value.missing_brain == ["extra"]
    assert "in rdms.hdf5, no image | image, not in rdms.hdf5" in message
    assert "cow" in message and "extra" in message and "stimulus_id and path" in message
    # numbers in the brain RDMs match file names written as numbers
    numeric = StimulusSet.from_array(torch.rand(2, 4, 4), ids=["0", "1"])
    assert numeric.check_ids([0, 1]) == {"0": 0, "1": 1}


def test_extract_rdms_uses_the_set_ids_and_transform():
    import brainrdl

    torch.manual_seed(0)
    net = DigitCNN()
    images = torch.rand(5, 3, 8, 8)
    stim = StimulusSet.from_array(images, ids=list("abcde")).for_model(model=net)
    rdms = brainrdl.extract_rdms(net, stim, ["fc1"], progress=False)
    assert list(rdms.pattern_descriptors["stimulus"]) == list("abcde")
    grey = torch.stack([stim[i] for i in range(5)])
    direct = brainrdl.extract_rdms(net, grey, ["fc1"], progress=False)
    np.testing.assert_allclose(rdms.get_vectors(), direct.get_vectors())
    assert ImageTransform(channels=1)(images[0]).shape == (1, 8, 8)


@pytest.mark.shared_data
def test_kriegeskorte2008_images(shared_data):
    folder = shared_data / "kriegeskorte2008"
    if not folder.is_dir():
        pytest.skip("shared data kriegeskorte2008/ not present")
    stim = StimulusSet.kriegeskorte2008(folder)
    assert len(stim) == 92 and stim.ids[:3] == [0, 1, 2] and stim[0].shape == (3, 175, 175)
    assert stim.for_model(model=DigitCNN())[0].shape == (1, 175, 175)
