"""Properties of the ROI extraction and spike windows that reference tests leave open.

Written to kill mutants that survived the suite (docs/mutation-testing.md).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from data_adapters.fmri import roi_masks


def test_an_empty_atlas_says_so():
    with pytest.raises(ValueError, match=r"atlas has no labelled \(non-zero\) voxel; expected "
                       "integer ROI labels"):
        roi_masks((3, 3, 3), np.eye(4), atlas=np.zeros((3, 3, 3), dtype=np.int16))


def test_an_atlas_off_the_data_grid_says_where_to_look(tmp_path):
    """Labels that exist but fall outside the data's field of view after resampling point at the
    affines, not at the labels."""
    atlas = np.zeros((4, 4, 4), dtype=np.int16)
    atlas[1:3, 1:3, 1:3] = 2
    far = np.eye(4)
    far[:3, 3] = 500.0  # 500 mm away from the data grid
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, far), path)
    with pytest.raises(ValueError, match=r"no atlas voxel overlaps the data grid: after resampling "
                       r"the atlas onto the data grid \(nearest neighbour\) every voxel is "
                       r"background \(0\); check that the atlas and the data are in the same "
                       r"space \(their affines\)"):
        roi_masks((4, 4, 4), np.eye(4), atlas=path, resample=True)
    # the same empty result without resampling is an empty atlas on the grid, not a space problem
    nib.save(nib.Nifti1Image(np.zeros_like(atlas), np.eye(4)), tmp_path / "empty.nii.gz")
    with pytest.raises(ValueError, match="atlas has no labelled"):
        roi_masks((4, 4, 4), np.eye(4), atlas=tmp_path / "empty.nii.gz", resample=True)


def test_resampled_labels_land_on_the_right_voxels(tmp_path):
    """An atlas on a grid shifted by whole voxels keeps each label on its mm position."""
    atlas = np.zeros((5, 5, 5), dtype=np.int16)
    atlas[1, 1, 1] = 3
    shifted = np.eye(4)
    shifted[:3, 3] = 1.0  # atlas voxel (i, j, k) sits at data voxel (i+1, j+1, k+1)
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, shifted), path)
    masks = roi_masks((5, 5, 5), np.eye(4), atlas=path, resample=True)
    assert list(masks) == ["3"]
    assert np.argwhere(masks["3"]).tolist() == [[2, 2, 2]]
