"""Loader for the 92-object data of Kriegeskorte et al. (2008), as shipped with rsatoolbox's demos.

The folder (``kriegeskorte2008/`` with ``Kriegeskorte_Neuron2008_supplementalData.mat`` and
``92_brainRDMs.mat``) is given as a parameter or found under ``$BRAINRDL_SHARED_DATA``; nothing is
downloaded. Stimuli come back as a float tensor (92, 3, 175, 175) in [0, 1]; the brain RDMs as
rsatoolbox ``RDMs`` with pattern descriptors ``stimulus`` and ``category`` and rdm descriptors
``subject`` and ``session``.

Examples
--------
>>> import os
>>> data = load_kriegeskorte2008() if find_folder() else None  # doctest: +SKIP
>>> data.hit.n_rdm  # doctest: +SKIP
8
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SUPPLEMENT = "Kriegeskorte_Neuron2008_supplementalData.mat"
BRAIN = "92_brainRDMs.mat"
N_STIMULI = 92


@dataclass
class Kriegeskorte2008:
    """The loaded data set.

    Attributes
    ----------
    images
        (92, 3, 175, 175) float32 tensor in [0, 1].
    categories
        (92,) category name of each image (e.g. ``"human face"``).
    category_vectors
        (92, 12) 0/1 membership matrix; column names in ``category_labels``.
    category_labels
        The 12 column names (animate, inanim, human, ...).
    hit
        Human IT RDMs, 4 subjects x 2 sessions (rdm descriptors ``subject``, ``session``).
    fig1
        The two pooled RDMs of the paper's figure 1 (rdm descriptor ``region``: ``mIT``, ``hIT``).
    """

    images: torch.Tensor
    categories: np.ndarray
    category_vectors: np.ndarray
    category_labels: list[str]
    hit: object
    fig1: object

    @property
    def stimulus_ids(self) -> np.ndarray:
        """Stimulus ids 0..91, the pattern descriptor ``stimulus`` of every RDM."""
        return np.arange(N_STIMULI)

    def region_rdms(self) -> dict[str, object]:
        """``{"hIT": 8 subject-session RDMs, "mIT": the monkey IT RDM}`` for ``compare_layers``."""
        return {"hIT": self.hit, "mIT": self.fig1.subset("region", "mIT")}

    def category_index(self) -> np.ndarray:
        """(92,) int label of each image's category (0..5, sorted names), for a 6-way task.

        The names are ``np.unique(self.categories)``: artificial inanimate, human bodypart,
        human face, natural inanimate, nonhuman bodypart, nonhuman face.
        """
        return np.unique(self.categories, return_inverse=True)[1].astype(np.int64)

    def images_at(self, size: int | tuple[int, int] | None = None,
                  normalize: str | tuple | None = None) -> torch.Tensor:
        """The images resized to ``size`` and normalised (see :func:`prepare_images`)."""
        return prepare_images(self.images, size=size, normalize=normalize)

    def animacy(self) -> np.ndarray:
        """(92,) labels ``"animate"`` / ``"inanimate"``, handy for plot ticks."""
        col = self.category_labels.index("animate")
        return np.where(self.category_vectors[:, col] > 0, "animate", "inanimate")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_images(
    images: torch.Tensor,
    size: int | tuple[int, int] | None = None,
    normalize: str | tuple | None = None,
) -> torch.Tensor:
    """Resize (antialiased bilinear) and normalise images (N, 3, H, W) in [0, 1].

    Parameters
    ----------
    images : torch.Tensor
        Float tensor (N, C, H, W), e.g. ``Kriegeskorte2008.images``.
    size : int | tuple[int, int] | None
        Output side (square) or (height, width); None keeps the size.
    normalize : str | tuple | None
        None (keep [0, 1]); ``"imagenet"`` (torchvision's ImageNet mean and s.d. per channel,
        for pretrained models); ``"images"`` (these images' own per-channel mean and s.d.); or
        a ``(mean, std)`` pair of per-channel sequences.

    Returns
    -------
    torch.Tensor
        (N, C, size, size) float32.

    Examples
    --------
    >>> import torch
    >>> x = prepare_images(torch.rand(2, 3, 175, 175), size=64, normalize="images")
    >>> tuple(x.shape), abs(float(x.mean())) < 1e-5
    ((2, 3, 64, 64), True)
    """
    import torch.nn.functional as F

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a tensor (N, C, H, W); got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    x = images.to(torch.float32)
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
        x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    if normalize is None:
        return x
    if isinstance(normalize, str):
        if normalize == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        elif normalize == "images":
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3))
        else:
            raise ValueError(f"normalize={normalize!r} is not supported; expected None, "
                             "'imagenet', 'images' or a (mean, std) pair")
    else:
        mean, std = normalize
    mean = torch.as_tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    if mean.shape[1] != x.shape[1] or std.shape[1] != x.shape[1]:
        raise ValueError(f"normalize: mean and std need one value per channel ({x.shape[1]})")
    return (x - mean) / std


def find_folder(folder: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``folder`` or ``$BRAINRDL_SHARED_DATA/kriegeskorte2008``; None if absent.

    Examples
    --------
    >>> find_folder("/nonexistent") is None
    True
    """
    candidates = []
    if folder is not None:
        candidates += [Path(folder), Path(folder) / "kriegeskorte2008"]
    else:
        env = os.environ.get("BRAINRDL_SHARED_DATA")
        if env:
            candidates.append(Path(env) / "kriegeskorte2008")
    for path in candidates:
        if (path / SUPPLEMENT).is_file() and (path / BRAIN).is_file():
            return path
    return None


def load_kriegeskorte2008(folder: str | os.PathLike | None = None) -> Kriegeskorte2008:
    """Load images, category vectors and the human / monkey IT RDMs.

    Parameters
    ----------
    folder : str | os.PathLike | None
        The ``kriegeskorte2008`` folder, or its parent; default ``$BRAINRDL_SHARED_DATA``.

    Returns
    -------
    Kriegeskorte2008

    Examples
    --------
    >>> data = load_kriegeskorte2008("../shared/data")  # doctest: +SKIP
    >>> tuple(data.images.shape)  # doctest: +SKIP
    (92, 3, 175, 175)
    """
    import scipy.io
    from rsatoolbox.rdm import RDMs

    path = find_folder(folder)
    if path is None:
        where = folder if folder is not None else "$BRAINRDL_SHARED_DATA/kriegeskorte2008"
        raise FileNotFoundError(
            f"folder: no {SUPPLEMENT} and {BRAIN} found under {where!s}; pass the folder that "
            "holds them (or its parent), or set $BRAINRDL_SHARED_DATA"
        )
    sup = scipy.io.loadmat(path / SUPPLEMENT)
    stim = sup["stimuli_92objs"][0]
    images = np.stack([np.asarray(s["image"], dtype=np.float32) / 255.0 for s in stim])
    categories = np.array([str(np.squeeze(s["category"])) for s in stim])
    labels = [str(np.squeeze(c)) for c in sup["categoryLabels"].ravel()]
    cat_vectors = np.asarray(sup["categoryVectors"], dtype=np.int64)
    pattern_descriptors = {"stimulus": list(range(N_STIMULI)), "category": list(categories)}

    fig1 = sup["RDMs_mIT_hIT_fig1"][0]
    fig1_vectors = np.stack([np.asarray(r["RDM"], dtype=np.float64).ravel() for r in fig1])
    fig1_names = [str(np.squeeze(r["name"])) for r in fig1]
    fig1_rdms = RDMs(
        fig1_vectors,
        dissimilarity_measure="1 - Pearson r",
        # names are "mIT_674neurons" and "hITvisStim_316vx": the region is the leading m/hIT
        rdm_descriptors={"region": [n[:3] for n in fig1_names], "name": fig1_names,
                         "subject": ["pooled"] * len(fig1_names)},
        pattern_descriptors=pattern_descriptors,
    )

    brain = scipy.io.loadmat(path / BRAIN)["RDMs"][0]  # (4 subjects, 2 sessions)
    mats, subjects, sessions, names = [], [], [], []
    for i_subject in range(brain.shape[0]):
        for i_session in range(brain.shape[1]):
            entry = brain[i_subject, i_session]
            name = str(np.squeeze(entry["name"]))
            mats.append(np.asarray(entry["RDM"], dtype=np.float64))
            # names look like "hIT | BE | Session: 1"
            parts = [p.strip() for p in name.split("|")]
            subjects.append(parts[1] if len(parts) > 1 else str(i_subject))
            sessions.append(i_session + 1)
            names.append(name)
    hit = RDMs(
        np.stack(mats),
        dissimilarity_measure="1 - Pearson r",
        rdm_descriptors={"subject": subjects, "session": sessions, "name": names},
        pattern_descriptors=pattern_descriptors,
    )
    return Kriegeskorte2008(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        categories=categories,
        category_vectors=cat_vectors,
        category_labels=labels,
        hit=hit,
        fig1=fig1_rdms,
    )
