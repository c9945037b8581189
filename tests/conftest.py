"""Shared fixtures: the optional real-data folder and device selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project, or ``$BRAINRDL_SHARED_DATA``; None if absent."""
    env = os.environ.get("BRAINRDL_SHARED_DATA")
    candidate = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data folder (../shared/data or $BRAINRDL_SHARED_DATA) is absent")
    return path


@pytest.fixture(scope="module")
def kriegeskorte2008():
    """The 92-image data set (images, human and monkey IT RDMs); skips when it is absent."""
    from brainrdl.datasets.kriegeskorte2008 import find_folder, load_kriegeskorte2008

    root = shared_data_dir()
    if root is None or find_folder(root) is None:
        pytest.skip("../shared/data/kriegeskorte2008 is absent")
    return load_kriegeskorte2008(root)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)
