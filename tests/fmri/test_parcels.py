"""derive(fmri, Parcellate(atlas)): voxel means within atlas labels, as nilearn's NiftiLabelsMasker (issue 19)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

import giblet_store as gs
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.testing import make_bids
from helpers import labels_masker_signals, snapshot


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A scrubbed BIDS ingest (2 subjects x 2 runs x 40 TRs on a 6x5x4 grid of 3 mm) and two atlases."""
    root = tmp_path_factory.mktemp("parcels")
    bids = make_bids(root / "ds")
    st = gs.open_store(root / "st")
    fe = gs.ingest_bids(st, bids.root, "movie", derivatives="fmriprep",
                        clean=gs.CleanParams(confounds=("motion", "scrub"), motion="basic")).entry
    shape, affine = tuple(fe.attrs["volume_shape"]), np.asarray(fe.attrs["affine"])
    labels = np.random.default_rng(1).integers(0, 8, size=shape).astype(np.int16)
    labels[labels == 3] = 0  # a gap in the label values
    labels[0, 0, 0] = 40
    nib.save(nib.Nifti1Image(labels, affine), root / "atlas.nii.gz")
    fine = np.repeat(np.repeat(np.repeat(labels, 3, 0), 3, 1), 3, 2)  # the same atlas at 1 mm
    fine_affine = affine.copy()
    fine_affine[:3, :3] = np.eye(3)
    fine_affine[:3, 3] = affine[:3, 3] - 1.0  # voxel centres so that nearest neighbour picks each block's centre
    nib.save(nib.Nifti1Image(fine, fine_affine), root / "atlas_1mm.nii.gz")
    return root, st, fe, labels


def test_parcel_means_equal_nilearn_labels_masker(study):
    root, st, fe, labels = study
    pe = st.derive(fe, gs.Parcellate(atlas=str(root / "atlas.nii.gz")))
    ds = st.open(pe)
    want, ids = labels_masker_signals(st, fe, root / "atlas.nii.gz")
    assert ds["fmri"].dims == ("subject", "tr", "parcel") and ds["fmri"].dtype == np.float32
    assert ds["parcel"].values.tolist() == ids and 40 in ids and 3 not in ids
    np.testing.assert_allclose(ds["fmri"].values, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    fds = st.open(fe)
    np.testing.assert_array_equal(ds["censored"].values, fds["censored"].values)  # kept, as subject and tr
    assert ds["subject"].values.tolist() == fds["subject"].values.tolist() and ds.sizes["tr"] == fds.sizes["tr"]
    assert pe.attrs["runs"] == fe.attrs["runs"] and pe.attrs["parent"] == fe.key
    sha = gs.Parcellate(atlas=str(root / "atlas.nii.gz")).atlas_sha256
    assert pe.attrs["inputs"]["options"]["atlas_sha256"] == sha == pe.attrs["atlas"]["sha256"]
    per = labels[tuple(fds["voxel_ijk"].values.T)]
    assert ds["parcel_n_voxels"].values.tolist() == [int((per == v).sum()) for v in ids]


def test_key_is_the_atlas_content_not_its_path(study, tmp_path):
    root, st, fe, labels = study
    shutil.copy(root / "atlas.nii.gz", tmp_path / "elsewhere.nii.gz")
    key = st.derive(fe, gs.Parcellate(atlas=str(root / "atlas.nii.gz"))).key
    assert st.derive(fe, gs.Parcellate(atlas=str(tmp_path / "elsewhere.nii.gz"))).key == key
    other = labels.copy()
    other[other == 40] = 41
    nib.save(nib.Nifti1Image(other, np.asarray(fe.attrs["affine"])), tmp_path / "other.nii.gz")
    assert st.derive(fe, gs.Parcellate(atlas=str(tmp_path / "other.nii.gz"))).key != key


def test_atlas_on_another_grid_is_refused_unless_resampling_is_asked(study):
    root, st, fe, _ = study
    before = snapshot(root / "st")
    with pytest.raises(ParameterError, match=r"on another grid than fmri entry .*shape \(18, 15, 12\) vs the data's "
                                             r"\(6, 5, 4\).*Parcellate\(resample=True\)"):
        st.derive(fe, gs.Parcellate(atlas=str(root / "atlas_1mm.nii.gz")))
    assert snapshot(root / "st") == before
    pe = st.derive(fe, gs.Parcellate(atlas=str(root / "atlas_1mm.nii.gz"), resample=True))
    want, ids = labels_masker_signals(st, fe, root / "atlas_1mm.nii.gz", resample=True)
    ds = st.open(pe)
    assert ds["parcel"].values.tolist() == ids and pe.attrs["atlas"]["resampled"] is True
    np.testing.assert_allclose(ds["fmri"].values, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    direct = st.open(st.derive(fe, gs.Parcellate(atlas=str(root / "atlas.nii.gz"))))
    np.testing.assert_array_equal(ds["fmri"].values, direct["fmri"].values)  # the same labels after resampling


def test_cli_derive_parcellate(study, capsys):
    root, st, fe, _ = study
    assert main(["derive", str(root / "st"), fe.key[:12], "--parcellate", str(root / "atlas.nii.gz"), "--json"]) == 0
    out = capsys.readouterr().out
    assert st.derive(fe, gs.Parcellate(atlas=str(root / "atlas.nii.gz"))).key in out
