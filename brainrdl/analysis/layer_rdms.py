"""Layer RDMs of a network over a stimulus set, in bounded memory.

Every RDM that ``extract_rdms`` offers (correlation, cosine, euclidean) is a function of the Gram
matrix of the (row-centred or shifted) activations, so the layers' activations for all stimuli are
never held at once. Gram blocks are filled batch by batch against an *anchor* block of stimuli kept
in memory; when all layers' activations for all stimuli fit in ``memory_budget`` bytes there is a
single pass over the stimuli, otherwise the anchor block is a slice of the stimuli and the forward
passes are repeated for the remaining stimuli (``P`` passes cost about ``P / 2`` times the forwards;
the Gram products cost the same either way). Very wide layers can instead be reduced by a seeded
random projection (``reduction="random_projection"``), which keeps euclidean and cosine geometry
approximately (Johnson–Lindenstrauss) in one pass; a correlation RDM is then the correlation of the
projected features, which only approximates that of the raw features when their rows are near
zero-mean.

Examples
--------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
>>> rdms = extract_rdms(net, torch.randn(6, 3, 2, 2), ["1", "3"], progress=False)
>>> rdms.n_rdm, rdms.n_cond, rdms.rdm_descriptors["layer"]
(2, 6, ['1', '3'])
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from brainrdl.errors import DegenerateDataError
from brainrdl.rsa.methods import LAYER_RDM_METHODS
from brainrdl.validation import check_choice

METHODS = LAYER_RDM_METHODS  # the one list: brainrdl.rsa.methods
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageFolder(torch.utils.data.Dataset):
    """The images of a folder (sorted by file name) as float tensors (3, H, W) in [0, 1].

    Images are read with Pillow when installed, else with ``matplotlib.image``; grey images are
    repeated to three channels and an alpha channel is dropped. ``size`` resizes (Pillow only)
    and ``transform`` is applied last (e.g. a normalisation).

    Examples
    --------
    >>> import tempfile, numpy as np, matplotlib.image
    >>> folder = tempfile.mkdtemp()
    >>> matplotlib.image.imsave(f"{folder}/a.png", np.zeros((4, 5, 3)))
    >>> ds = ImageFolder(folder)
    >>> len(ds), tuple(ds[0].shape), ds.ids
    (1, (3, 4, 5), ['a'])
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        size: int | tuple[int, int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"stimuli: {str(folder)!r} is not a folder of images")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(
                f"stimuli: no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}"
            )
        self.size = (size, size) if isinstance(size, int) else size
        self.transform = transform

    @property
    def ids(self) -> list[str]:
        """Stimulus ids: the file names without suffix."""
        return [p.stem for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        arr = _read_image(self.files[index], self.size)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        arr = arr[:, :, :3]
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
        return self.transform(x) if self.transform is not None else x


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # matplotlib reads PNG natively (other formats need Pillow anyway)
        if size is not None:
            msg = "resizing stimuli (size=...) needs Pillow (pip install pillow)"
            raise ImportError(msg) from None
        import matplotlib.image

        return np.asarray(matplotlib.image.imread(path))
    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img)


def extract_rdms(
    model: nn.Module,
    stimuli,
    layers: Sequence[str],
    *,
    batch_size: int = 32,
    method: str = "correlation",
    device: torch.device | str | None = None,
    reduction: str = "flatten",
    projection_dim: int | None = None,
    seed: int = 0,
    stimulus_ids: Sequence | None = None,
    progress: bool = True,
    memory_budget: float = 1e9,
    dtype: torch.dtype = torch.float32,
    on_undefined: str = "raise",
):
    """RDMs of the named layers of ``model`` over ``stimuli``, as rsatoolbox ``RDMs``.

    Parameters
    ----------
    model : nn.Module
        A ``torch.nn.Module``; it is run in eval mode without gradients (its training flag is
        restored afterwards). Moved to ``device`` when one is given.
    stimuli
        A tensor (N, ...), a ``Dataset`` (items are tensors or tuples whose first element is the
        input), a ``DataLoader`` (not shuffled: stimuli must come in the same order on every pass),
        or a folder of images (see :class:`ImageFolder`).
    layers : Sequence[str]
        Module paths as in ``model.named_modules()``, or ``"auto"`` (the layers of
        :func:`brainrdl.list_layers`: block outputs, pooled features, logits).
    batch_size : int
        Stimuli per forward pass (for tensors, Datasets and folders).
    method : str
        ``"correlation"`` (1 − Pearson r, default), ``"cosine"`` or ``"euclidean"`` (squared,
        divided by the number of features, as rsatoolbox).
    device : torch.device | str | None
        Device of the forward passes and Gram products (default: the model's).
    reduction, projection_dim, seed
        Passed to :class:`brainrdl.nets.taps.LayerTaps`: ``"flatten"``, ``"avgpool"``, a seeded
        ``"random_projection"`` to ``projection_dim`` features, or for transformer tokens
        ``"cls"`` / ``"mean"``.
    stimulus_ids : Sequence | None
        Pattern descriptor ``stimulus``; default the file names for a folder, else 0..N-1.
    progress : bool
        Show a tqdm progress bar.
    memory_budget : float
        Bytes of activations to hold at once (the anchor block); more passes when exceeded.
    dtype : torch.dtype
        Precision of the stored activations and Gram products (float32 default; float64 for
        exact agreement with a float64 reference). Grams are accumulated in float64.
    on_undefined : str
        What to do with a stimulus whose dissimilarities are undefined in a layer: NaN or
        infinite activations (any method), or activations that are constant across features
        (correlation) or all zero (cosine), e.g. dead ReLUs. ``"raise"`` (default): a
        ValueError naming the layer and the stimuli. ``"nan"``: those stimuli's rows and
        columns of that layer's RDM are NaN (rsatoolbox comparisons skip NaN pairs), with a
        warning naming them; the other entries are unaffected.

    Returns
    -------
    rsatoolbox.rdm.RDMs
        One RDM per layer (rdm descriptor ``layer``), pattern descriptor ``stimulus``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
    >>> rdms = extract_rdms(net, torch.randn(4, 5), ["1"], method="euclidean", progress=False)
    >>> rdms.get_matrices().shape
    (1, 4, 4)
    """
    from rsatoolbox.rdm import RDMs

    from brainrdl.nets.layers import expand_layers
    from brainrdl.nets.taps import LayerTaps

    check_choice("method", method, METHODS)
    check_choice("on_undefined", on_undefined, ("raise", "nan"))
    layers = expand_layers(model, layers)  # "auto" -> brainrdl.list_layers(model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    source = _StimulusSource(stimuli, batch_size)
    n = source.n
    if n < 2:
        raise ValueError(f"stimuli must hold at least 2 stimuli to form an RDM; got {n}")
    ids = _stimulus_ids(stimulus_ids, source, n)
    if device is not None:
        model = model.to(device)
    else:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)

    was_training = model.training
    model.eval()
    taps = LayerTaps(
        model, layers, reduction=reduction, projection_dim=projection_dim, seed=seed, detach=True
    )
    try:
        with torch.no_grad():
            grams, dims = _accumulate_grams(
                model, taps, source, layers, method, device, dtype, memory_budget, progress
            )
    finally:
        taps.close()
        model.train(was_training)

    vectors = np.stack([
        _rdm_from_gram(grams[name], dims[name], method, name, on_undefined, ids)
        for name in layers
    ])
    return RDMs(
        vectors,
        dissimilarity_measure=method,
        descriptors={"reduction": reduction},
        rdm_descriptors={"layer": layers},
        pattern_descriptors={"stimulus": list(ids)},
    )


class _StimulusSource:
    """Uniform batched access to tensors, Datasets, DataLoaders and image folders."""

    def __init__(self, stimuli, batch_size: int) -> None:
        self.batch_size = batch_size
        self.loader = None
        self.tensor = None
        self.dataset = None
        if isinstance(stimuli, (str, os.PathLike)):
            stimuli = ImageFolder(stimuli)
        if isinstance(stimuli, torch.Tensor):
            self.tensor = stimuli
            self.n = stimuli.shape[0]
        elif isinstance(stimuli, torch.utils.data.DataLoader):
            if isinstance(stimuli.sampler, torch.utils.data.RandomSampler):
                raise ValueError(
                    "stimuli: the DataLoader shuffles (shuffle=True); layer RDMs need the "
                    "stimuli in a fixed order, so pass a DataLoader with shuffle=False"
                )
            self.loader = stimuli
            try:
                self.n = len(stimuli.dataset)
            except TypeError as err:
                raise TypeError("stimuli: the DataLoader's dataset must have a length") from err
        elif isinstance(stimuli, torch.utils.data.Dataset):
            self.dataset = stimuli
            self.n = len(stimuli)
        else:
            raise TypeError(
                "stimuli must be a tensor, a torch Dataset or DataLoader, or a folder of images; "
                f"got {type(stimuli).__name__}"
            )
        self.ids = getattr(stimuli, "ids", None)

    def batches(self, start: int) -> Iterator[tuple[int, torch.Tensor | None]]:
        """Yield (first index, inputs) for batches covering [start, n); inputs None when skipped."""
        if self.tensor is not None:
            for i in range(start, self.n, self.batch_size):
                yield i, self.tensor[i : i + self.batch_size]
            return
        if self.dataset is not None:
            subset = torch.utils.data.Subset(self.dataset, range(start, self.n))
            loader = torch.utils.data.DataLoader(subset, batch_size=self.batch_size)
            i = start
            for batch in loader:
                x = _first(batch)
                yield i, x
                i += x.shape[0]
            return
        i = 0
        for batch in self.loader:  # a user's loader cannot skip: load, but do not forward
            x = _first(batch)
            if i + x.shape[0] > start:
                yield i, x
            i += x.shape[0]


def _first(batch) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        raise TypeError("stimuli: batches must be tensors or tuples (inputs, ...), not dicts")
    return batch


def _stimulus_ids(stimulus_ids, source: _StimulusSource, n: int) -> list:
    if stimulus_ids is None:
        return list(source.ids) if source.ids is not None else list(range(n))
    ids = list(stimulus_ids)
    if len(ids) != n:
        raise ValueError(f"stimulus_ids must have one id per stimulus ({n}); got {len(ids)}")
    return ids


def _prepare(x: torch.Tensor, method: str, shift: torch.Tensor | None) -> torch.Tensor:
    """Transform a (b, D) batch so that its Gram gives the RDM without cancellation."""
    if method == "correlation":
        return x - x.mean(dim=1, keepdim=True)  # row-centring is local to each stimulus
    if method == "euclidean" and shift is not None:
        return x - shift  # a common shift leaves distances unchanged; first-batch mean is close
    return x


def _accumulate_grams(model, taps, source, layers, method, device, dtype, budget, progress):
    n, bs = source.n, source.batch_size
    grams = {name: torch.zeros(n, n, dtype=torch.float64, device=device) for name in layers}
    dims: dict[str, int] = {}
    shifts: dict[str, torch.Tensor] = {}
    anchor_size = n  # refined once the layers' widths are known (after the first batch)
    n_passes = 1
    bar = _progress(progress, total=math.ceil(n / bs))
    p = 0
    while p * anchor_size < n:
        a0 = p * anchor_size
        anchors: dict[str, torch.Tensor] = {}
        for i0, x in source.batches(a0 - a0 % bs if source.loader is None else a0):
            feats = _forward(model, taps, x, device, dtype)
            if not dims:  # first batch: widths, shifts, and the pass plan
                dims = {k: v.shape[1] for k, v in feats.items()}
                # a NaN stimulus must not poison every row through the shift
                shifts = {k: torch.nan_to_num(v.nanmean(0, keepdim=True), nan=0.0, posinf=0.0,
                                              neginf=0.0) for k, v in feats.items()}
                per_stimulus = sum(dims.values()) * torch.tensor([], dtype=dtype).element_size()
                n_passes = max(1, math.ceil(n * per_stimulus / budget))
                anchor_size = math.ceil(n / n_passes)
                if bar is not None:
                    bar.total = sum(math.ceil((n - q * anchor_size) / bs) for q in range(n_passes))
                    bar.refresh()
            a1 = min(n, a0 + anchor_size)
            i1 = i0 + x.shape[0]
            if i1 <= a0:  # a whole batch before the anchor block: paired in an earlier pass
                continue
            for name in layers:
                f = _prepare(feats[name], method, shifts.get(name))
                if name not in anchors:
                    anchors[name] = torch.empty(a1 - a0, dims[name], dtype=dtype, device=device)
                lo, hi = max(i0, a0), min(i1, a1)
                if hi > lo:
                    anchors[name][lo - a0 : hi - a0] = f[lo - i0 : hi - i0]
                top = min(i1, a1)
                r0 = max(i0, a0)  # rows before the anchor block were paired in earlier passes
                block = (f[r0 - i0 :] @ anchors[name][: top - a0].T).to(torch.float64)
                grams[name][r0:i1, a0:top] = block
                grams[name][a0:top, r0:i1] = block.T
            if bar is not None:
                bar.update(1)
        del anchors
        p += 1
    if bar is not None:
        bar.close()
    return grams, dims


def _forward(model, taps, x, device, dtype) -> dict[str, torch.Tensor]:
    x = x.to(device, non_blocking=True)
    acts = taps.extract(x)
    return {k: v.reshape(v.shape[0], -1).to(dtype) for k, v in acts.items()}


def _rdm_from_gram(gram: torch.Tensor, dim: int, method: str, name: str,
                   on_undefined: str = "raise", ids: Sequence | None = None) -> np.ndarray:
    diag = torch.diagonal(gram)
    n = gram.shape[0]
    # a NaN/inf activation reaches its stimulus's Gram row (and diagonal): name it, never
    # return an all-NaN RDM in silence
    nonfinite = ~torch.isfinite(diag)
    finite_diag = torch.where(nonfinite, 0.0, diag)
    if method == "euclidean":
        undefined = nonfinite
        rdm = (finite_diag[:, None] + finite_diag[None, :] - 2.0 * gram).clamp_min(0.0) / dim
    else:
        # constant (correlation: centred to zero up to rounding) or all-zero (cosine) patterns;
        # relative to the typical pattern norm, as row-centring a constant leaves rounding noise
        typical = torch.median(finite_diag[~nonfinite]) if bool((~nonfinite).any()) else diag[0]
        flat = finite_diag <= 1e-12 * typical.clamp_min(0.0)
        undefined = nonfinite | flat
        norm = torch.sqrt(torch.where(undefined, 1.0, finite_diag))
        rdm = 1.0 - gram / (norm[:, None] * norm[None, :])
    if bool(undefined.any()):
        rows = torch.nonzero(undefined).flatten().tolist()
        labels = [ids[i] for i in rows] if ids is not None else rows
        shown = f"{labels[:10]}{' ...' if len(labels) > 10 else ''} ({len(labels)} of {n})"
        n_bad = int(nonfinite.sum())
        why = []
        if n_bad:
            why.append(f"{n_bad} with NaN or infinite activations")
        if len(rows) > n_bad:
            kind = "constant across features" if method == "correlation" else "all zero"
            why.append(f"{len(rows) - n_bad} whose activations are {kind} (e.g. dead ReLUs), "
                       f"for which {method} distance is undefined")
        if on_undefined == "raise":
            hint = ("check the model and inputs for NaN" if n_bad else
                    "use method='euclidean'")
            raise DegenerateDataError(
                f"layer {name!r}: dissimilarities undefined for stimuli {shown}: "
                f"{'; '.join(why)}; {hint}, or pass on_undefined='nan' to get NaN rows for them"
            )
        import warnings

        warnings.warn(f"layer {name!r}: NaN RDM rows for stimuli {shown}: {'; '.join(why)}",
                      stacklevel=3)
        rdm = rdm.masked_fill(undefined[:, None] | undefined[None, :], float("nan"))
    iu, ju = torch.triu_indices(n, n, offset=1, device=gram.device)
    return rdm[iu, ju].cpu().numpy()


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="layer RDMs", unit="batch")
