"""Stimulus sets: images with stimulus ids, preprocessed the way a model expects.

A :class:`StimulusSet` is a ``torch.utils.data.Dataset`` of image tensors with one id per stimulus,
built from an image folder, a list of files, a TSV of ``stimulus_id`` and ``path``, an array
(N, H, W) / (N, C, H, W) / (N, H, W, C), or the 92 images of Kriegeskorte et al. (2008). Ids come
from file stems, the TSV or the caller; they become the ``stimulus`` pattern descriptor of layer
RDMs (``extract_rdms`` reads :attr:`StimulusSet.ids`), which must equal the brain RDMs' ids:
:meth:`StimulusSet.check_ids` reports what is missing on each side as a table.

Each item is converted to the channels the model expects (greyscale ↔ RGB) and then passed
through the model's transform (from :func:`brainrdl.load_model`), so a 1-channel digit CNN and an
RGB ResNet take the same folder.

Examples
--------
>>> import torch
>>> stim = StimulusSet.from_array(torch.rand(4, 8, 8), ids=list("abcd"), channels=3)
>>> len(stim), tuple(stim[0].shape), stim.ids
(4, (3, 8, 8), ['a', 'b', 'c', 'd'])
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from brainrdl.analysis.layer_rdms import IMAGE_SUFFIXES
from brainrdl.nets.loading import to_channels

Transform = Callable[[torch.Tensor], torch.Tensor]


class StimulusMismatchError(ValueError):
    """Stimulus ids of the images and of the brain RDMs differ; the message tables both sides."""

    def __init__(self, message: str, missing_images: list[str], missing_brain: list[str]) -> None:
        super().__init__(message)
        self.missing_images = missing_images
        self.missing_brain = missing_brain


class StimulusSet(torch.utils.data.Dataset):
    """Images with stimulus ids, converted to ``channels`` and passed through ``transform``.

    Build one with :meth:`from_folder`, :meth:`from_files`, :meth:`from_tsv`, :meth:`from_array`,
    :meth:`kriegeskorte2008` or :meth:`from_any`; :meth:`for_model` returns a copy preprocessed
    for a model.

    Parameters
    ----------
    items : Sequence[str | os.PathLike] | torch.Tensor
        File paths, or a tensor (N, C, H, W) in [0, 1].
    ids : Sequence
        One id per item (strings or numbers), unique.
    transform : Transform | None
        Applied to each (C, H, W) tensor after the channel conversion, e.g. the transform of
        :func:`brainrdl.load_model`. Its ``channels`` attribute, when it has one, sets the
        channels unless ``channels`` is given.
    channels : int | None
        1 (greyscale) or 3 (RGB); None keeps each image's own.
    size : int | None
        Resize every image to ``size`` × ``size`` before the transform (None: keep), so that
        images of different sizes stack into batches when no transform resizes them.

    Attributes
    ----------
    ids : list
        The stimulus ids, in item order.

    Examples
    --------
    >>> import torch
    >>> s = StimulusSet.from_array(torch.rand(3, 1, 8, 8), ids=["a", "b", "c"], channels=3)
    >>> len(s), s.ids, tuple(s[0].shape)
    (3, ['a', 'b', 'c'], (3, 8, 8))
    """

    def __init__(
        self,
        items: Sequence[str | os.PathLike] | torch.Tensor,
        ids: Sequence,
        *,
        transform: Transform | None = None,
        channels: int | None = None,
        size: int | None = None,
    ) -> None:
        ids = list(ids)
        n = items.shape[0] if isinstance(items, torch.Tensor) else len(items)
        if len(ids) != n:
            raise ValueError(f"ids: {len(ids)} ids for {n} stimuli; give one id per stimulus")
        counts: dict[str, int] = {}
        for i in ids:
            counts[str(i)] = counts.get(str(i), 0) + 1
        dupes = sorted(k for k, c in counts.items() if c > 1)
        if dupes:
            raise ValueError(f"ids: stimulus ids must be unique; repeated: {dupes[:10]}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None; got {channels!r}")
        self.items = items if isinstance(items, torch.Tensor) else [Path(p) for p in items]
        self.ids = ids
        self.transform = transform
        self.channels = channels if channels is not None else getattr(transform, "channels", None)
        self.size = size

    # ------------------------------------------------------------------------------ builders

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs) -> StimulusSet:
        """The images of a folder, sorted by file name; ids are the file names without suffix.

        Examples
        --------
        >>> import tempfile, numpy as np, matplotlib.image
        >>> folder = tempfile.mkdtemp()
        >>> for name in ("cat", "dog"):
        ...     matplotlib.image.imsave(f"{folder}/{name}.png", np.zeros((4, 4, 3)))
        >>> StimulusSet.from_folder(folder, channels=1).ids
        ['cat', 'dog']
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"stimuli: {str(folder.resolve())!r} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"stimuli: no image files ({', '.join(IMAGE_SUFFIXES)}) in "
                f"{str(folder.resolve())!r}"
            )
        return cls.from_files(files, **kwargs)

    @classmethod
    def from_files(cls, files: Iterable[str | os.PathLike], ids: Sequence | None = None,
                   **kwargs) -> StimulusSet:  # fmt: skip
        """Image files in the given order; ids are the file stems unless given.

        Examples
        --------
        >>> StimulusSet.from_files(["a/x.png", "b/y.png"]).ids
        ['x', 'y']
        """
        files = [Path(f) for f in files]
        if not files:
            raise ValueError("stimuli: the list of files is empty")
        return cls(files, [f.stem for f in files] if ids is None else ids, **kwargs)

    @classmethod
    def from_tsv(cls, path: str | os.PathLike, **kwargs) -> StimulusSet:
        """A table with columns ``stimulus_id`` and ``path`` (relative paths: to the table).

        Use it when the image file names are not the stimulus ids of the brain RDMs.

        Examples
        --------
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "s.tsv"), "w") as f:
        ...     _ = f.write("stimulus_id\\tpath\\nface01\\timg_001.png\\n")
        >>> stim = StimulusSet.from_tsv(os.path.join(d, "s.tsv"))
        >>> stim.ids, stim.items[0].name
        (['face01'], 'img_001.png')
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"stimuli: no such table {str(path.resolve())!r}")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows or not {"stimulus_id", "path"} <= set(rows[0]):
            raise ValueError(
                f"stimuli: {str(path.resolve())!r} must be a tab-separated table with columns "
                f"'stimulus_id' and 'path'; found columns {list(rows[0]) if rows else []}"
            )
        files = [Path(r["path"]) if Path(r["path"]).is_absolute() else path.parent / r["path"]
                 for r in rows]  # fmt: skip
        return cls(files, [r["stimulus_id"] for r in rows], **kwargs)

    @classmethod
    def from_array(cls, array, ids: Sequence | None = None, **kwargs) -> StimulusSet:
        """Images from an array: (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3, 4.

        Integer arrays are scaled from 0–255 to [0, 1]; ids default to 0..N-1.

        Examples
        --------
        >>> import numpy as np
        >>> stim = StimulusSet.from_array(np.zeros((2, 5, 5, 3), dtype=np.uint8))
        >>> tuple(stim[0].shape), stim.ids
        ((3, 5, 5), [0, 1])
        """
        x = torch.as_tensor(np.asarray(array))
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(
                f"stimuli: an array of images must be (N, H, W), (N, C, H, W) or (N, H, W, C); "
                f"got shape {tuple(x.shape)}"
            )
        # channels last when the last axis is 1 or 3 wide (no image is 3 pixels wide), or 4
        # wide (RGBA) while the second axis could not be channels
        if x.shape[-1] in (1, 3) or (x.shape[-1] == 4 and x.shape[1] not in (1, 3, 4)):
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0 if not x.is_floating_point() else x.float()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("stimuli: the array of images holds NaN or inf values")
        return cls(x.contiguous(), list(range(x.shape[0])) if ids is None else ids, **kwargs)

    @classmethod
    def kriegeskorte2008(cls, folder: str | os.PathLike | None = None, **kwargs) -> StimulusSet:
        """The 92 object images of Kriegeskorte et al. (2008); ids 0..91 as in the brain RDMs.

        Read from ``folder`` or ``$BRAINRDL_SHARED_DATA/kriegeskorte2008`` (nothing downloaded).

        Examples
        --------
        >>> StimulusSet.kriegeskorte2008().ids[:3]  # doctest: +SKIP
        [0, 1, 2]
        """
        from brainrdl.datasets.kriegeskorte2008 import load_kriegeskorte2008

        data = load_kriegeskorte2008(folder)
        return cls(data.images, [int(i) for i in data.stimulus_ids], **kwargs)

    @classmethod
    def from_any(cls, stimuli, **kwargs) -> StimulusSet:
        """A StimulusSet from a folder, a ``.tsv`` table, a ``.npy`` file, a list of files or an
        array (a StimulusSet is returned as a copy with ``kwargs`` applied).

        Examples
        --------
        >>> import numpy as np
        >>> StimulusSet.from_any(np.zeros((3, 4, 4))).ids
        [0, 1, 2]
        """
        if isinstance(stimuli, StimulusSet):
            return stimuli.with_options(**kwargs)
        if isinstance(stimuli, (str, os.PathLike)):
            path = Path(stimuli)
            if path.is_dir():
                return cls.from_folder(path, **kwargs)
            if path.suffix.lower() in (".tsv", ".txt"):
                return cls.from_tsv(path, **kwargs)
            if path.suffix.lower() == ".npy":
                if not path.is_file():
                    raise FileNotFoundError(f"stimuli: no such file {str(path.resolve())!r}")
                return cls.from_array(np.load(path, allow_pickle=False), **kwargs)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return cls.from_files([path], **kwargs)
            raise FileNotFoundError(
                f"stimuli: {str(path.resolve())!r} is neither a folder of images, a .tsv table "
                "(stimulus_id, path) nor a .npy array"
            )
        if isinstance(stimuli, (torch.Tensor, np.ndarray)):
            return cls.from_array(stimuli, **kwargs)
        if isinstance(stimuli, (list, tuple)) and all(
            isinstance(s, (str, os.PathLike)) for s in stimuli
        ):
            return cls.from_files(stimuli, **kwargs)
        raise TypeError(
            "stimuli must be a folder, a .tsv table, a .npy file, a list of image files or an "
            f"array of images; got {type(stimuli).__name__}"
        )

    def with_options(self, **kwargs) -> StimulusSet:
        """A copy with ``transform``, ``channels``, ``size`` or ``ids`` replaced."""
        opts = {"transform": self.transform, "channels": self.channels, "size": self.size,
                "ids": self.ids}  # fmt: skip
        opts.update(kwargs)
        ids = opts.pop("ids")
        if "transform" in kwargs and "channels" not in kwargs:
            opts["channels"] = getattr(kwargs["transform"], "channels", None) or self.channels
        return StimulusSet(self.items, ids, **opts)

    def for_model(self, transform: Transform | None = None, model=None) -> StimulusSet:
        """A copy preprocessed for a model: its transform, and its input channels.

        The channels come from ``transform.channels`` or else from the model's first
        convolution (a DigitCNN takes 1 channel, a ResNet 3).

        Examples
        --------
        >>> import torch
        >>> from brainrdl.nets.models import DigitCNN
        >>> stim = StimulusSet.from_array(torch.rand(2, 3, 8, 8)).for_model(model=DigitCNN())
        >>> tuple(stim[0].shape)
        (1, 8, 8)
        """
        from brainrdl.nets.loading import input_channels

        channels = getattr(transform, "channels", None)
        if channels is None and model is not None:
            channels = input_channels(model)
        return self.with_options(transform=transform, channels=channels or self.channels)

    # ------------------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        if isinstance(self.items, torch.Tensor):
            x = self.items[index]
        else:
            x = _read_image(self.items[index])
        x = to_channels(x, self.channels)
        if self.size is not None:
            from torchvision.transforms.v2 import functional as F

            x = F.resize(x, [self.size, self.size], antialias=True)
        return self.transform(x) if self.transform is not None else x

    def check_ids(self, brain_ids: Sequence, source: str = "brain RDMs") -> dict:
        """Map the brain RDMs' ids onto these stimuli's ids; a named error when they differ.

        Ids are matched as strings (``3`` matches a file ``3.png``). Stimuli that the brain RDMs
        lack are allowed (the brain RDMs choose the subset); brain stimuli without an image are
        not.

        Returns
        -------
        dict
            Stimulus id (as in :attr:`ids`) → the brain RDMs' id of the same stimulus.

        Raises
        ------
        StimulusMismatchError
            Some brain stimuli have no image; the message tables the ids missing on each side
            and says how to fix it (a TSV of ``stimulus_id`` and ``path``).

        Examples
        --------
        >>> import torch
        >>> stim = StimulusSet.from_array(torch.rand(3, 4, 4), ids=["0", "1", "2"])
        >>> stim.check_ids([0, 1, 2])
        {'0': 0, '1': 1, '2': 2}
        """
        brain = {str(b): b for b in brain_ids}
        mine = {str(s) for s in self.ids}
        missing_images = sorted(set(brain) - mine)
        missing_brain = sorted(mine - set(brain))
        if missing_images:
            raise StimulusMismatchError(
                f"stimulus ids differ between the stimuli and the {source}: "
                f"{len(missing_images)} of the {len(brain)} brain stimuli have no image.\n"
                + id_table(missing_images, missing_brain, source)
                + "\nImage file names (without suffix) must equal the brain RDMs' 'stimulus' "
                "ids; when they do not, give a TSV with columns stimulus_id and path instead "
                "of the folder.",
                missing_images,
                missing_brain,
            )
        return {s: brain[str(s)] for s in self.ids if str(s) in brain}

    def __repr__(self) -> str:
        return (f"StimulusSet(n={len(self)}, ids={self.ids[:3]}{'...' if len(self) > 3 else ''}, "
                f"channels={self.channels}, transform={self.transform!r})")  # fmt: skip


def id_table(missing_images: Sequence[str], missing_brain: Sequence[str],
             source: str = "brain RDMs", limit: int = 10) -> str:  # fmt: skip
    """A two-column text table of ids missing on each side (at most ``limit`` rows shown).

    Examples
    --------
    >>> print(id_table(["a"], ["b", "c"]))
    in brain RDMs, no image | image, not in brain RDMs
    ----------------------- | ------------------------
    a                       | b
                            | c
    """
    left_head, right_head = f"in {source}, no image", f"image, not in {source}"
    rows = max(len(missing_images), len(missing_brain))
    shown = min(rows, limit)
    left = [str(s) for s in missing_images[:shown]] + [""] * (shown - len(missing_images[:shown]))
    right = [str(s) for s in missing_brain[:shown]] + [""] * (shown - len(missing_brain[:shown]))
    width = max([len(left_head), *map(len, left)])
    lines = [f"{left_head:<{width}} | {right_head}", f"{'-' * width} | {'-' * len(right_head)}"]
    lines += [f"{a:<{width}} | {b}".rstrip() for a, b in zip(left, right)]
    if rows > shown:
        lines.append(f"... ({len(missing_images)} and {len(missing_brain)} in all)")
    return "\n".join(lines)


def _read_image(path: Path) -> torch.Tensor:
    """An image file as a float tensor (C, H, W) in [0, 1], C = 1 (greyscale) or 3."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"stimuli: no such image {str(path.resolve())!r}")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if img.mode in ("L", "1", "I", "I;16", "F", "LA") else "RGB")
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        msg = f"stimuli: cannot read {str(path.resolve())!r} as an image ({err})"
        raise ValueError(msg) from err
    x = torch.from_numpy(np.ascontiguousarray(arr))
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1)
