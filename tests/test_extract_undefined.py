"""extract_rdms with undefined patterns: a named error by default, NaN rows on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import calc_rdm
from scipy.spatial.distance import cdist
from torch import nn

from brainrdl.analysis.layer_rdms import extract_rdms


class _Fixed(nn.Module):
    """Returns preset activations for the stimuli (indexed by the input's first column)."""

    def __init__(self, acts: torch.Tensor) -> None:
        super().__init__()
        self.acts = acts
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(self.acts[x[:, 0].long()])


def _acts(n=7, d=9, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _run(acts, **kw):
    stimuli = torch.arange(acts.shape[0], dtype=torch.float64)[:, None]
    return extract_rdms(_Fixed(acts), stimuli, ["out"], progress=False, batch_size=3,
                        dtype=torch.float64, **kw)


def test_nan_activations_raise_naming_layer_and_stimuli():
    acts = _acts()
    acts[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'out'.*stimuli \[4\].*NaN.*on_undefined"):
        _run(acts)


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
def test_on_undefined_nan_gives_nan_rows_and_exact_other_entries(method):
    acts = _acts()
    acts[2] = float("nan") if method == "euclidean" else 0.0  # a dead row
    with pytest.warns(UserWarning, match=r"layer 'out'.*\[2\]"):
        rdms = _run(acts, method=method, on_undefined="nan")
    got = rdms.get_matrices()[0]
    keep = [i for i in range(7) if i != 2]
    assert np.isnan(got[2, keep]).all() and np.isnan(got[keep, 2]).all()
    a = acts[keep].numpy()
    if method == "correlation":
        ref = calc_rdm(Dataset(a), method="correlation").get_matrices()[0]
    elif method == "euclidean":
        ref = calc_rdm(Dataset(a), method="euclidean").get_matrices()[0]
    else:
        ref = cdist(a, a, "cosine")
    np.testing.assert_allclose(got[np.ix_(keep, keep)], ref, rtol=1e-10, atol=1e-12)


def test_constant_row_raises_by_default_for_correlation():
    acts = _acts()
    acts[5] = 0.7  # constant across features: row-centring leaves rounding noise only
    with pytest.raises(ValueError, match=r"stimuli \[5\].*constant across features"):
        _run(acts)
    # euclidean is defined for it
    assert np.isfinite(_run(acts, method="euclidean").get_vectors()).all()


def test_bad_on_undefined_is_named():
    with pytest.raises(ValueError, match="on_undefined='zero'"):
        _run(_acts(), on_undefined="zero")
