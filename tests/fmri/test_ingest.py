"""fMRI ingest (giblet_store.fmri.ingest, giblet_store.fmri.nifti): real NIfTI through nibabel, real Zarr on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
import xarray as xr

from giblet_store import content_key, open_store
from giblet_store.store.hashing import sha256_file
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.fmri.ingest import FmriError, FmriParams, MaskParams, ingest_fmri, to_nifti
from giblet_store.fmri.nifti import header_tr
from helpers import AFFINE, fmri_snapshot as snapshot, stimulus_entry, synth, write_series

DATA = Path(nibabel.testing.data_path)
FUNCTIONAL = DATA / "functional.nii"  # 17x21x3x20, TR 2.0 s, real SPM-normalised BOLD
def reference_mask(data_list, percentile=10.0, fraction=0.5, sample=200):
    """The reference project's rule, on whole arrays (fine for test-sized data)."""
    votes = 0
    for d in data_list:
        std = d[..., :sample].std(-1)
        thr = np.percentile(std[std > 0], percentile)
        votes = votes + (std > thr)
    return votes >= math.ceil(fraction * len(data_list))


# ------------------------------------------------------------------------------------ real data
def test_ingest_functional_matches_a_whole_array_reference(store):
    r = ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(zscore_trs=(0, 12)))
    assert r.created
    ds = store.open(r.entry)
    raw = nib.load(FUNCTIONAL).get_fdata()  # fine for the 17x21x3x20 test file
    mask = reference_mask([raw])
    np.testing.assert_array_equal(ds["mask"].values, mask)
    np.testing.assert_array_equal(ds["voxel_ijk"].values, np.argwhere(mask))
    ts = raw[mask].T  # (tr, voxel), np.argwhere order
    z = (ts - ts[:12].mean(0)) / ts[:12].std(0)
    assert ds["fmri"].dtype == np.float32 and ds["fmri"].dims == ("subject", "tr", "voxel")
    np.testing.assert_allclose(ds["fmri"].values[0], z, atol=2e-5)
    np.testing.assert_allclose(ds["zscore_mean"].values[0], ts[:12].mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds["zscore_std"].values[0], ts[:12].std(0), rtol=1e-5)
    a = r.entry.attrs
    assert a["tr_s"] == 2.0 and a["n_trs"] == 20 and a["n_voxels"] == int(mask.sum()) and a["subjects"] == ["sub-01"]
    np.testing.assert_allclose(a["affine"], nib.load(FUNCTIONAL).affine)
    assert a["mask_rule"] == "std_percentile_vote" and a["normalize"] == "zscore" and a["zscore_trs"] == [0, 12]
    # training statistics only: the test TRs are not standardised to mean 0
    assert abs(float(ds["fmri"].values[0, 12:].mean())) > 1e-3


def test_raw_values_are_the_scaled_nifti_values(store):
    r = ingest_fmri(store, [FUNCTIONAL], ["s1"], mask=np.ones((17, 21, 3), bool))
    raw = nib.load(FUNCTIONAL).get_fdata()
    np.testing.assert_allclose(store.open(r.entry)["fmri"].values[0], raw.reshape(-1, 20).T, rtol=1e-6)
    assert r.entry.attrs["normalize"] == "none" and "zscore_mean" not in store.open(r.entry)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_zscore_with_a_given_mask_uses_training_trs_only(store, tmp_path, dtype):
    """int16 files skip the non-finite scan (statistics from their own pass); float files get them from the scan."""
    data = synth(n=30, seed=4) * 10
    data[..., 20:] += 50  # a shift after the training range must not leak into the statistics
    path = write_series(tmp_path / "s.nii", data, dtype=dtype)
    mask = np.zeros((6, 5, 4), bool)
    mask[1:4, 2:5, :3] = True
    r = ingest_fmri(store, [path], ["s"], mask=mask, params=FmriParams(zscore_trs=(0, 20)))
    ts = nib.load(path).get_fdata()[mask].T
    z = (ts - ts[:20].mean(0)) / ts[:20].std(0)
    np.testing.assert_allclose(store.open(r.entry)["fmri"].values[0], z, atol=1e-4)
    assert store.open(r.entry)["fmri"].values[0, 20:].mean() > 3


def test_back_to_nifti_4d_and_3d(store, tmp_path):
    r = ingest_fmri(store, [FUNCTIONAL], ["s1"])
    ds = store.open(r.entry)
    mask = ds["mask"].values
    series = to_nifti(store, r.entry, ds["fmri"].isel(subject=0), tmp_path / "back.nii.gz")
    img = nib.load(series)
    assert img.shape == (17, 21, 3, 20) and img.header.get_zooms()[3] == 2.0
    assert img.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(img.affine, nib.load(FUNCTIONAL).affine)
    back = img.get_fdata()
    np.testing.assert_allclose(back[mask].T, ds["fmri"].values[0], rtol=1e-6)
    assert np.all(back[~mask] == 0)
    vol = to_nifti(store, r.entry, np.arange(mask.sum(), dtype=np.float64), tmp_path / "map.nii", fill=-1)
    v = nib.load(vol).get_fdata()
    assert v.shape == (17, 21, 3)
    np.testing.assert_array_equal(v[mask], np.arange(mask.sum()))
    assert np.all(v[~mask] == -1)
    with pytest.raises(FmriError, match="voxel"):
        to_nifti(store, r.entry, np.zeros(int(mask.sum()) + 1), tmp_path / "bad.nii")


def test_streams_blocks_never_the_whole_series(store, tmp_path, monkeypatch):
    """Reads go through dataobj[..., t0:t1] with at most block_bytes of volumes, never get_fdata/asarray."""
    path = write_series(tmp_path / "long.nii", synth(n=40))
    sizes = []
    proxy = type(nib.load(path).dataobj)
    real = proxy.__getitem__

    def spy(self, idx):
        t = idx[-1]
        sizes.append(t.stop - t.start)
        return real(self, idx)

    def forbidden(*a, **k):
        raise AssertionError("whole-series read")

    from giblet_store.fmri.nifti_read import HashedVolumes

    scanned = []
    real_blocks = HashedVolumes.blocks

    def spy_blocks(self, stop, k):
        for t0, raw in real_blocks(self, stop, k):
            scanned.append(raw.shape[0])
            yield t0, raw

    monkeypatch.setattr(proxy, "__getitem__", spy)
    monkeypatch.setattr(proxy, "__array__", forbidden)
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", forbidden)
    monkeypatch.setattr(HashedVolumes, "blocks", spy_blocks)
    volume_bytes = 6 * 5 * 4 * 8
    r = ingest_fmri(store, [path], ["s1"], params=FmriParams(zscore_trs=(0, 20)), block_bytes=3 * volume_bytes,
                    chunk_trs=8)
    assert sizes and max(sizes) <= 3 and scanned and max(scanned) <= 3
    assert sum(scanned) == 40  # the scan (with the hash) reads every volume once
    assert sum(sizes) == 20 + 40  # the training TRs for the computed mask's z-score, then the write
    assert r.entry.attrs["sources"][0]["source_sha256"] == sha256_file(path)


def test_second_ingest_is_a_cache_hit_and_parameters_change_the_key(store):
    a = ingest_fmri(store, [FUNCTIONAL], ["s1"])
    b = ingest_fmri(store, [FUNCTIONAL], ["s1"])
    assert not b.created and b.entry.key == a.entry.key
    c = ingest_fmri(store, [FUNCTIONAL], ["s1"], params=FmriParams(zscore_trs=(0, 10)))
    d = ingest_fmri(store, [FUNCTIONAL], ["s1"], mask_params=MaskParams(std_percentile=50))
    assert len({a.entry.key, c.entry.key, d.entry.key}) == 3
    assert d.entry.attrs["n_voxels"] < a.entry.attrs["n_voxels"]


# ------------------------------------------------------------------------------------ synthetic
def test_computed_mask_votes_over_subjects(store, tmp_path):
    shape = (6, 5, 4)
    base = np.zeros(shape, bool)
    base[1:5, 1:4, 1:3] = True
    extra = np.zeros(shape, bool)
    extra[0, 0, 0] = True  # active in one subject of three: no majority
    datas = [synth(shape, 30, seed=i, active=base | (extra if i == 0 else False)) for i in range(3)]
    paths = [write_series(tmp_path / f"s{i}.nii.gz", d) for i, d in enumerate(datas)]
    r = ingest_fmri(store, paths, ["a", "b", "c"])
    ds = store.open(r.entry)
    np.testing.assert_array_equal(ds["mask"].values, reference_mask(datas))
    assert not ds["mask"].values[0, 0, 0]
    assert ds["fmri"].shape == (3, 30, int(ds["mask"].values.sum()))
    for i, d in enumerate(datas):
        np.testing.assert_allclose(ds["fmri"].values[i], d[ds["mask"].values].T.astype(np.float32))
    assert [s["subject"] for s in r.entry.attrs["sources"]] == ["a", "b", "c"]


def test_given_mask_file_is_used_exactly(store, tmp_path):
    shape = (6, 5, 4)
    path = write_series(tmp_path / "s.nii", synth(shape, 12))
    m = np.zeros(shape, np.uint8)
    m[2, 3, 1] = m[0, 0, 0] = m[5, 4, 3] = 1
    mpath = tmp_path / "mask.nii"
    nib.save(nib.Nifti1Image(m, AFFINE), str(mpath))
    r = ingest_fmri(store, [path], ["s"], mask=mpath)
    ds = store.open(r.entry)
    np.testing.assert_array_equal(ds["voxel_ijk"].values, [[0, 0, 0], [2, 3, 1], [5, 4, 3]])
    assert r.entry.attrs["mask_rule"] == "given" and r.entry.attrs["n_voxels"] == 3
    other = m.copy()
    other[1, 1, 1] = 1
    nib.save(nib.Nifti1Image(other, AFFINE), str(tmp_path / "mask2.nii"))
    assert ingest_fmri(store, [path], ["s"], mask=tmp_path / "mask2.nii").entry.key != r.entry.key


def test_different_lengths_error_then_crop(store, tmp_path):
    a = write_series(tmp_path / "a.nii", synth(n=12, seed=1))
    b = write_series(tmp_path / "b.nii", synth(n=10, seed=2))
    before = snapshot(store)
    with pytest.raises(FmriError, match="n_trs=10"):
        ingest_fmri(store, [a, b], ["a", "b"])
    assert snapshot(store) == before
    r = ingest_fmri(store, [a, b], ["a", "b"], params=FmriParams(n_trs=10))
    assert r.entry.attrs["n_trs"] == 10 and store.open(r.entry)["fmri"].shape[:2] == (2, 10)


# ------------------------------------------------------------------------------------ TR
def test_header_tr_units():
    h = nib.Nifti1Header()
    h.set_data_shape((2, 2, 2, 3))
    h.set_zooms((1, 1, 1, 1500))
    h.set_xyzt_units("mm", "msec")
    assert header_tr(h) == (1.5, None)
    h.set_xyzt_units("mm", "usec")
    h.set_zooms((1, 1, 1, 2_000_000))
    assert header_tr(h) == (2.0, None)
    h.set_xyzt_units("mm", "sec")
    h.set_zooms((1, 1, 1, 2000))
    tr, note = header_tr(h)
    assert tr == 2.0 and "ms" in note
    h.set_xyzt_units("mm", "unknown")
    h.set_zooms((1, 1, 1, 0.8))
    tr, note = header_tr(h)
    assert tr == pytest.approx(0.8) and "unknown" in note
    h.set_zooms((1, 1, 1, 0))
    assert header_tr(h)[0] is None


def test_real_header_that_says_sec_but_holds_2000(store):
    """nibabel's example4d.nii.gz: time unit 'sec', pixdim[4] = 2000 (a real, common mistake)."""
    path = DATA / "example4d.nii.gz"
    assert nib.load(path).header.get_zooms()[3] == 2000
    with pytest.warns(UserWarning, match="2000 ms = 2 s"):
        r = ingest_fmri(store, [path], ["s1"], mask=np.ones(nib.load(path).shape[:3], bool))
    assert r.entry.attrs["tr_s"] == 2.0


def test_given_tr_overrides_header(store, tmp_path):
    path = write_series(tmp_path / "s.nii", synth(n=8), tr=2.0)
    with pytest.warns(UserWarning, match="header says TR 2 s"):
        r = ingest_fmri(store, [path], ["s"], params=FmriParams(tr_s=1.5))
    assert r.entry.attrs["tr_s"] == 1.5
    nohdr = write_series(tmp_path / "z.nii", synth(n=8), tr=0.0)
    before = snapshot(store)
    with pytest.raises(FmriError, match="pass tr_s"):
        ingest_fmri(store, [nohdr], ["s"])
    assert snapshot(store) == before


def test_stimulus_reference_and_tr_mismatch(store):
    stim = stimulus_entry(store, tr_s=2.0)
    r = ingest_fmri(store, [FUNCTIONAL], ["s1"], stimulus=stim.key)
    a = r.entry.attrs
    assert a["stimulus_key"] == stim.key and a["stimulus_sha256"] == "a" * 64 and a["onset_s"] == 0.0
    wrong = stimulus_entry(store, tr_s=1.5, source="b" * 64)
    before = snapshot(store)
    with pytest.raises(FmriError, match="TR mismatch.*2 s.*1.5 s"):
        ingest_fmri(store, [FUNCTIONAL], ["s1"], stimulus=wrong)
    assert snapshot(store) == before


# ------------------------------------------------------------------------------------ bad input
def test_3d_nifti_is_refused(store):
    before = snapshot(store)
    with pytest.raises(FmriError, match="3D.*4D"):
        ingest_fmri(store, [DATA / "anatomical.nii"], ["s1"])
    assert snapshot(store) == before


def test_subjects_with_different_shapes_or_affines(store, tmp_path):
    a = write_series(tmp_path / "a.nii", synth((6, 5, 4), 8))
    b = write_series(tmp_path / "b.nii", synth((6, 5, 3), 8))
    c = write_series(tmp_path / "c.nii", synth((6, 5, 4), 8), affine=np.diag([2.0, 3.0, 4.0, 1.0]))
    before = snapshot(store)
    with pytest.raises(FmriError, match=r"shape \(6, 5, 3\)"):
        ingest_fmri(store, [a, b], ["a", "b"])
    with pytest.raises(FmriError, match="different affines"):
        ingest_fmri(store, [a, c], ["a", "c"])
    with pytest.raises(FmriError, match="one ID per file"):
        ingest_fmri(store, [a, a], ["a"])
    with pytest.raises(FmriError, match="distinct"):
        ingest_fmri(store, [a, a], ["a", "a"])
    with pytest.raises(FmriError, match="does not exist"):
        ingest_fmri(store, [tmp_path / "missing.nii"], ["a"])
    assert snapshot(store) == before


def test_bad_masks(store, tmp_path):
    path = write_series(tmp_path / "s.nii", synth((6, 5, 4), 8))
    wrong = tmp_path / "wrong.nii"
    nib.save(nib.Nifti1Image(np.ones((6, 5, 3), np.uint8), AFFINE), str(wrong))
    empty = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.uint8), AFFINE), str(empty))
    moved = tmp_path / "moved.nii"
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.uint8), np.diag([1.0, 1, 1, 1])), str(moved))
    before = snapshot(store)
    with pytest.raises(FmriError, match=r"shape \(6, 5, 3\)"):
        ingest_fmri(store, [path], ["s"], mask=wrong)
    with pytest.raises(FmriError, match="selects no voxel"):
        ingest_fmri(store, [path], ["s"], mask=empty)
    with pytest.raises(FmriError, match="affine"):
        ingest_fmri(store, [path], ["s"], mask=moved)
    with pytest.raises(FmriError, match="selects no voxel"):
        ingest_fmri(store, [path], ["s"], mask=np.zeros((6, 5, 4), bool))
    const = write_series(tmp_path / "const.nii", np.ones((6, 5, 4, 8)))
    with pytest.raises(FmriError, match="computed mask is empty"):
        ingest_fmri(store, [const], ["s"])
    assert snapshot(store) == before


def test_nan_volume_is_rejected(store, tmp_path):
    d = synth(n=10)
    d[..., 4] = np.nan
    path = write_series(tmp_path / "nan.nii", d)
    before = snapshot(store)
    with pytest.raises(FmriError, match=r"volume\(s\) \[4\] hold no finite value"):
        ingest_fmri(store, [path], ["s"], params=FmriParams(nan_policy="mask"))
    assert snapshot(store) == before


def test_nan_voxels_error_by_default_or_are_masked(store, tmp_path):
    d = synth(n=10)
    d[2, 2, 2, 3] = np.nan  # one voxel, one TR
    d[0, 0, 0, :] = np.nan  # background NaN (as SPM writes): never in a computed mask
    path = write_series(tmp_path / "nan.nii", d)
    mask = np.ones((6, 5, 4), bool)
    mask[0, 0, 0] = False
    before = snapshot(store)
    with pytest.raises(FmriError, match=r"1 voxel\(s\) of the mask are NaN/inf.*nan_policy='mask'"):
        ingest_fmri(store, [path], ["s"], mask=mask)
    assert snapshot(store) == before
    with pytest.warns(UserWarning, match="dropped 1 voxel"):
        r = ingest_fmri(store, [path], ["s"], mask=mask, params=FmriParams(nan_policy="mask", zscore_trs=(0, 8)))
    ds = store.open(r.entry)
    assert r.entry.attrs["n_voxels_dropped_nonfinite"] == 1 and r.entry.attrs["n_voxels"] == mask.sum() - 1
    assert not ds["mask"].values[2, 2, 2] and np.isfinite(ds["fmri"].values).all()
    with pytest.warns(UserWarning, match="dropped 1 voxel"):  # (2,2,2): NaN at one TR; (0,0,0) is background
        computed = ingest_fmri(store, [path], ["s"], mask_params=MaskParams(std_percentile=0),
                               params=FmriParams(nan_policy="mask"))
    assert computed.entry.attrs["n_voxels_dropped_nonfinite"] == 1
    assert not store.open(computed.entry)["mask"].values[0, 0, 0]


def test_parameters_are_validated():
    with pytest.raises(ParameterError):
        FmriParams(tr_s=2000)
    with pytest.raises(ParameterError):
        FmriParams(zscore_trs=(5, 5))
    with pytest.raises(ParameterError):
        FmriParams(nan_policy="ignore")
    with pytest.raises(ParameterError):
        MaskParams(min_subject_fraction=0)
    p = FmriParams(tr_s=1.5, zscore_trs=(0, 100))
    assert FmriParams.from_dict(p.to_dict()) == p


def test_zscore_range_past_the_series(store):
    before = snapshot(store)
    with pytest.raises(ParameterError, match="stop <= 20"):
        ingest_fmri(store, [FUNCTIONAL], ["s"], params=FmriParams(zscore_trs=(0, 30)))
    assert snapshot(store) == before


# ------------------------------------------------------------------------------------ CLI
def test_cli_ingest_and_to_nifti(tmp_path, capsys):
    st = tmp_path / "st"
    assert main(["ingest-fmri", str(st), str(FUNCTIONAL), "--subject", "s1", "--zscore-trs", "0:12", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["entries"]
    assert doc["kind"] == "fmri" and doc["created"] and doc["attrs"]["zscore_trs"] == [0, 12]
    out = tmp_path / "s1.nii.gz"
    assert main(["to-nifti", str(st), doc["key"][:12], "-o", str(out), "--trs", "2:5"]) == 0
    assert nib.load(out).shape == (17, 21, 3, 3)
    store = open_store(st)
    before = snapshot(store)
    capsys.readouterr()
    assert main(["ingest-fmri", str(st), str(DATA / "anatomical.nii"), "--subject", "s1"]) == 2
    err = capsys.readouterr().err
    assert "4D" in err and "Traceback" not in err
    assert main(["ingest-fmri", str(st), str(FUNCTIONAL), "--subject", "s1", "--zscore-trs", "0-12"]) == 2
    assert "START:STOP" in capsys.readouterr().err
    assert snapshot(store) == before


# ------------------------------------------------------------------------ issue 21 #3: what is hashed is what is stored
@pytest.mark.parametrize("when", ["after the scan", "during the write"])
def test_a_series_rewritten_while_ingested_stores_nothing(store, tmp_path, monkeypatch, when):
    import giblet_store.fmri.ingest as ingest_mod
    import giblet_store.fmri.nifti as nifti_mod

    path = write_series(tmp_path / "s.nii", synth(n=12, seed=1))
    other = write_series(tmp_path / "o.nii", synth(n=12, seed=2)).read_bytes()
    assert len(other) == path.stat().st_size

    def rewrite():
        with open(path, "r+b") as f:  # same inode, same size, other voxel values
            f.write(other)

    module, name = (ingest_mod, "cache_hit") if when == "after the scan" else (nifti_mod, "iter_masked")
    real = getattr(module, name)

    def hooked(*a, **kw):
        rewrite()
        return real(*a, **kw)

    monkeypatch.setattr(module, name, hooked)
    before = snapshot(store)
    with pytest.raises(FmriError, match="changed while it was being read.*nothing was stored"):
        ingest_fmri(store, [path], ["s1"])
    after = snapshot(store)
    assert after[0] == before[0] == ()  # no entry, and at most the staging area's own (empty) group
    assert set(after[1]) - set(before[1]) <= ({"_staging", "_staging/zarr.json"} if when == "during the write" else set())
    monkeypatch.undo()
    r = ingest_fmri(store, [path], ["s1"])  # a normal run still works, keyed by the new bytes
    assert r.created and r.entry.attrs["sources"][0]["source_sha256"] == sha256_file(path)
