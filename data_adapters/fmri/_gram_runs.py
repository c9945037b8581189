"""Searchlight Grams for identity-noise RDMs, with the work of overlapping spheres shared.

Centres that follow each other along the fastest (z) axis of the volume form runs. When every
centre's neighbours are exactly the ball of offsets around it intersected with one fixed voxel
set (what ``searchlight_neighbourhoods`` makes), the sphere of centre ``c + 1`` is the sphere of
``c`` minus the ``k`` voxels ``L`` of its bottom cap plus the ``k`` voxels ``E`` of the new top cap
(``k`` = 25 of 93 at radius 3). So the Gram of the condition patterns follows

    G(c + 1) = G(c) + EᵀE − LᵀL,

and ``EᵀE − LᵀL`` is the symmetric part of ``(E + L)ᵀ(E − L)``, a product over ``k`` voxels
instead of the sphere's 93 (3.7× fewer flops). The non-symmetric products are summed along the
run (their antisymmetric parts cancel when each summed Gram is added to its transpose);
the first centre of each run, and the first of every block, gets its full Gram, so a block's
result depends only on the block (blocks are the same whatever the shard or rank). The
per-condition sums over the sphere (for the correlation's centring) follow the same recurrence.

Work is done in sub-blocks of :data:`SUB_BLOCK` centres on the CPU so that the (B, C, C) Grams
stay in cache while they are finished.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch

#: Centres per batched product on the CPU: the sub-block's Grams (16 × 92 × 92 float64, 1 MiB)
#: stay in cache across the finishing passes (16 measured faster than 8, 32 and 64 at 92
#: conditions); a CUDA device takes a whole block at once.
SUB_BLOCK = 16
#: Runs also restart every CHUNK centres of a block, so that blocks split into pieces that
#: worker threads share evenly (a multiple of SUB_BLOCK: the pieces' sub-blocks are the block's).
CHUNK = 256


def touch_pages(out: torch.Tensor) -> None:
    """Write one element per 4 KiB page of a CPU tensor from numpy: page faults of fresh
    result memory taken inside torch's gather cost several times more (measured)."""
    out.numpy().reshape(-1)[:: 4096 // out.element_size()] = 0


def cap_offsets(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the ball that enter (top cap, relative to the new centre) and leave (bottom
    cap, relative to the previous centre) when the centre moves one voxel along z.

    Examples
    --------
    >>> from data_adapters.fmri.searchlight import ball_offsets
    >>> enter, leave = cap_offsets(ball_offsets(3))
    >>> enter.shape, leave.shape
    ((25, 3), (25, 3))
    """
    ball = {tuple(o) for o in offsets.tolist()}
    enter = np.array([o for o in offsets.tolist() if (o[0], o[1], o[2] + 1) not in ball])
    leave = np.array([o for o in offsets.tolist() if (o[0], o[1], o[2] - 1) not in ball])
    return enter.reshape(-1, 3), leave.reshape(-1, 3)


def run_starts(centres: np.ndarray, shape: tuple[int, int, int], block: int,
               chunk: int = CHUNK) -> np.ndarray:
    """(n,) bool: centre i starts a run (its predecessor is not the voxel just below it along
    z), or starts a block of ``block`` centres, or a piece of ``chunk`` centres of a block.

    Examples
    --------
    Voxel 4 does not follow 2; voxel 6 starts the next z-line of a (1, 2, 3) volume:

    >>> run_starts(np.array([0, 1, 2, 4, 5, 6]), (1, 2, 3), 10).tolist()
    [True, False, False, True, False, True]
    >>> run_starts(np.array([0, 1, 2, 4, 5, 6]), (1, 2, 3), 2).tolist()
    [True, False, True, True, True, True]
    """
    starts = np.ones(centres.size, dtype=bool)
    z = centres % shape[2]
    starts[1:] = ~((centres[1:] == centres[:-1] + 1) & (z[1:] != 0))
    starts[(np.arange(centres.size) % block) % chunk == 0] = True
    return starts


class GramRuns:
    """Correlation / squared-euclidean RDM vectors of blocks of centres from a voxel table.

    Parameters
    ----------
    table : torch.Tensor
        (U + 1, C) per-voxel condition values of the union voxels; the last row is zeros
        (padding and voxels outside the set).
    columns : torch.Tensor
        (n, width) rows of ``table`` of each centre's neighbours (padding points at U).
    sizes : numpy.ndarray
        (n,) neighbours per centre.
    method : {"correlation", "euclidean"}
        What to finish the Grams into ("euclidean": rsatoolbox's squared distance / voxels).
    recurrence : tuple, optional
        ``(centres, shape, offsets, position, block)`` when the neighbourhoods are spheres
        (see the module docstring): flat centre indices, the volume's shape, the ball's
        offsets, the (prod(shape),) map from flat voxel index to table row (U elsewhere) and
        the block size (a run restarts at every block start). Without it every Gram is formed
        from the whole neighbourhood.
    sub_block : int, optional
        Centres per batched product (default :data:`SUB_BLOCK` on CPU, the block on CUDA).
    """

    def __init__(self, table, columns, sizes, method, recurrence=None, sub_block=None):
        self.table, self.columns, self.method = table, columns, method
        self.dev, self.dtype = table.device, table.dtype
        self.sizes = torch.as_tensor(sizes, dtype=table.dtype, device=table.device)
        self.sizes_np = np.asarray(sizes)
        n_cond = table.shape[1]
        self.n_cond = n_cond
        rows, cols = torch.triu_indices(n_cond, n_cond, offset=1, device=table.device)
        self.upper = rows * n_cond + cols  # (P,) flat upper triangle, squareform order
        self.sub = sub_block
        # on the CPU a row-by-row numpy loop beats torch.cumsum along the batch axis
        self.numpy_cumsum = table.device.type == "cpu"
        self.recurrence = recurrence
        if recurrence is not None:
            centres, shape, offsets, position, block = recurrence
            self.centres = np.asarray(centres)
            self.shape = np.asarray(shape)
            self.enter, self.leave = cap_offsets(offsets)
            if self.enter.shape != self.leave.shape:
                raise ValueError("the ball is not symmetric along z")  # cannot happen for a ball
            self.starts = run_starts(self.centres, tuple(shape), block)
            # table rows on a volume padded by the ball's reach (U outside the volume), so that
            # a cap's voxels are the centre's padded flat index plus constant offsets
            reach = int(np.abs(offsets).max()) + 1
            padded = np.full(tuple(self.shape + 2 * reach), table.shape[0] - 1, dtype=np.int64)
            inner = tuple(slice(reach, reach + int(d)) for d in self.shape)
            padded[inner] = np.asarray(position).reshape(tuple(self.shape))
            self.padded = padded.reshape(-1)
            strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
            ijk = np.stack(np.unravel_index(self.centres, tuple(self.shape)), axis=1) + reach
            self.centre_flat = ijk @ strides
            self.enter_flat = self.enter @ strides  # relative to the centre
            self.leave_flat = self.leave @ strides - strides[2]  # relative to the previous one

    def _pair_index(self, b: int) -> torch.Tensor:
        base = torch.arange(b, device=self.dev)[:, None] * (self.n_cond * self.n_cond)
        return (base + self.upper[None, :]).reshape(-1)  # (b · P,)

    def _cap_rows(self, lo: int, hi: int) -> np.ndarray:
        """(hi − lo, 2k) table rows of the voxels entering (top cap) and leaving (bottom cap of
        the previous centre) at centres lo..hi; U (the zero row) outside the volume."""
        flat = self.centre_flat[lo:hi, None] + np.concatenate([self.enter_flat,
                                                               self.leave_flat])[None, :]
        return self.padded[flat]

    def block(self, lo: int, hi: int, out: torch.Tensor) -> None:
        """RDM vectors of centres lo..hi (a whole block: runs restart at ``lo``) into ``out``."""
        sub = self.sub or (hi - lo if self.dev.type != "cpu" else SUB_BLOCK)
        n_cond = self.n_cond
        carry = None
        if out.device.type == "cpu":
            touch_pages(out)
        # buffers reused by the sub-blocks (a fresh multi-MiB tensor per sub-block costs page
        # faults); local to the call, so that blocks can run in parallel threads
        grams = torch.empty((2, min(sub, hi - lo), n_cond, n_cond), dtype=self.dtype,
                            device=self.dev)
        index = None
        if self.recurrence is not None:
            k = self.enter.shape[0]
            caps = torch.as_tensor(self._cap_rows(lo, hi), device=self.dev)
            buf = torch.empty((4, min(sub, hi - lo) * k, n_cond), dtype=self.dtype,
                              device=self.dev)  # [E, L] gathered, E + L, E − L
        for a in range(lo, hi, sub):
            b = min(a + sub, hi)
            nb = b - a
            n = self.sizes[a:b]
            if self.recurrence is None:
                gram, sums = self._full(a, b)
            else:
                e_l = buf[:2].view(-1, n_cond)[: 2 * nb * k]
                torch.index_select(self.table, 0, caps[a - lo : b - lo].reshape(-1), out=e_l)
                e_l = e_l.view(nb, 2, k, n_cond)
                p = torch.add(e_l[:, 0], e_l[:, 1], out=buf[2, : nb * k].view(nb, k, n_cond))
                q = torch.sub(e_l[:, 0], e_l[:, 1], out=buf[3, : nb * k].view(nb, k, n_cond))
                gram = torch.bmm(p.transpose(1, 2), q, out=grams[0, :nb])  # sym: EᵀE − LᵀL
                sums = q.sum(1)  # Σ E − Σ L
                starts = np.flatnonzero(self.starts[a:b])
                if starts.size:
                    full_g, full_s = self._full(a + starts, None)
                    at = torch.as_tensor(starts, device=self.dev)
                    gram.index_copy_(0, at, full_g)
                    sums.index_copy_(0, at, full_s)
                if not self.starts[a]:
                    gram[0] += carry[0]
                    sums[0] += carry[1]
                self._cumulate(gram, sums, starts)
                carry = (gram[nb - 1].clone(), sums[nb - 1].clone())
            if index is None or index[0] != nb:
                index = (nb, self._pair_index(nb))
            self._finish(gram, sums, n, out[a - lo : b - lo], index[1], grams[1, :nb])

    def _cumulate(self, gram, sums, starts) -> None:
        """Sums along each run in place: row i += row i − 1 unless i starts a run."""
        nb = gram.shape[0]
        bounds = [0, *starts.tolist(), nb]
        if not self.numpy_cumsum:
            for r0, r1 in pairwise(bounds):
                if r1 - r0 > 1:
                    gram[r0:r1].cumsum_(0)
                    sums[r0:r1].cumsum_(0)
            return
        g = gram.numpy().reshape(nb, -1)
        s = sums.numpy()
        for r0, r1 in pairwise(bounds):
            for i in range(r0 + 1, r1):
                np.add(g[i], g[i - 1], out=g[i])
            if r1 - r0 > 1:
                np.cumsum(s[r0:r1], axis=0, out=s[r0:r1])

    def _full(self, a, b):
        """Gram and sums over the whole neighbourhood of centres a..b (or the indices ``a``)."""
        if b is None:
            idx = self.columns[torch.as_tensor(a, device=self.columns.device)]
        else:
            idx = self.columns[a:b]
        w = int(self.sizes_np[a if b is None else slice(a, b)].max())
        idx = idx[:, :w].to(self.dev)
        y = torch.index_select(self.table, 0, idx.reshape(-1)).view(idx.shape[0], w, self.n_cond)
        return torch.bmm(y.transpose(1, 2), y), y.sum(1)

    def _finish(self, gram, sums, n, out, index, two) -> None:
        """RDM vectors from Grams whose symmetric part is the searchlight's Gram (``two``: a
        buffer like ``gram``)."""
        torch.add(gram, gram.transpose(1, 2), out=two)  # 2 × the symmetric part
        diag = torch.diagonal(gram, dim1=1, dim2=2)
        ones = torch.ones_like(diag)
        if self.method == "correlation":
            # 1 − r = 1 − aᵢ aⱼ cᵢⱼ with c = G − s sᵀ / n (centred over voxels; s the sums)
            # and a = 1 / √cᵢᵢ: scale 2G by −½ aᵢ aⱼ, then add wᵢ wⱼ + 1 with w = a s / √n
            scale = (diag - sums * sums / n[:, None]).rsqrt()
            two.mul_((scale * -0.5)[:, :, None]).mul_(scale[:, None, :])
            w = scale * sums * n.rsqrt()[:, None]
            left = torch.stack([w, ones], dim=2)
            two.baddbmm_(left, left.transpose(1, 2))
            torch.index_select(two.view(-1), 0, index, out=out.view(-1))
        else:
            # gᵢᵢ + gⱼⱼ − 2 gᵢⱼ, over the voxels
            two.baddbmm_(torch.stack([diag, ones], dim=2), torch.stack([ones, diag], dim=1),
                         beta=-1.0)
            torch.index_select(two.view(-1), 0, index, out=out.view(-1))
            out.clamp_min_(0.0)
            out.div_(n[:, None])
