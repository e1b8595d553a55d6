"""A parcel entry (derive Parcellate) is a model target like the voxel entry it came from (issue 19 item 4):
StoreDataset, join, write_predictions, evaluate and the noise ceiling take it, over ``parcel``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import giblet_store as gs
from giblet_store.cli import main
from giblet_store.testing import make_bids
from giblet_store.training.ceiling import noise_ceiling
from giblet_store.training.dataset import StoreDataset
from helpers import labels_masker_signals, snapshot, stimulus_entry

WINDOW = 2


@pytest.fixture(scope="module")
def parcelled(tmp_path_factory):
    """A scrubbed BIDS ingest (2 subjects x 2 runs x 40 TRs), its parcels, and the planted drive per run as a
    features entry on each run's grid."""
    root = tmp_path_factory.mktemp("parcel_target")
    study = make_bids(root / "ds")
    st = gs.open_store(root / "st")
    fe = gs.ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                        clean=gs.CleanParams(confounds=("motion", "scrub"), motion="basic")).entry
    shape, affine = tuple(fe.attrs["volume_shape"]), np.asarray(fe.attrs["affine"])
    labels = np.random.default_rng(1).integers(0, 8, size=shape).astype(np.int16)
    labels[study.signal_voxels & (labels > 0)] = 9  # one parcel carries the planted signal
    labels[labels == 3] = 0
    nib.save(nib.Nifti1Image(labels, affine), root / "atlas.nii.gz")
    pe = st.derive(fe, gs.Parcellate(atlas=str(root / "atlas.nii.gz")))
    drive = {r: study.drive[("01", r)] for r in study.runs}
    assert all(np.array_equal(study.drive[("02", r)], drive[r]) for r in study.runs)  # one stimulus
    feats = {r: stimulus_entry(st, tr_s=2.0, source=r * 64, values=drive[r]) for r in study.runs}
    cens = st.open(fe)["censored"].values
    assert cens.any() and (cens[0] != cens[1]).any()
    return root, st, fe, pe, feats, drive, cens


def test_a_parcel_entry_is_an_fmri_entry_over_parcel(parcelled):
    root, st, fe, pe, *_ = parcelled
    ds = st.open(pe)
    assert pe.kind == "fmri" and pe.attrs["parent"] == fe.key and pe.attrs["parent_kind"] == "fmri"
    assert ds["fmri"].dims == ("subject", "tr", "parcel") and pe.attrs["n_parcels"] == ds.sizes["parcel"]
    assert pe.attrs["inputs"]["options"]["atlas_sha256"] == gs.Parcellate(atlas=str(root / "atlas.nii.gz")).atlas_sha256
    assert "n_voxels" not in pe.attrs and "mask" not in ds and "voxel_ijk" not in ds
    assert pe in list(st.entries(kind="fmri"))
    with pytest.raises(gs.errors.ParameterError, match="already over 'parcel', not voxels: parcellate its parent"):
        st.derive(pe, gs.Parcellate(atlas=str(root / "atlas.nii.gz")))


def test_store_dataset_serves_parcel_samples_and_skips_censored_trs(parcelled):
    _, st, _, pe, feats, drive, cens = parcelled
    y = st.open(pe)["fmri"].values
    ds = StoreDataset(st, pe, [(feats, "loudness")], window=WINDOW, shuffle=False, io_threads=0)
    assert ds.sample_shapes["fmri"][0] == (y.shape[2],) and ds.sample_shapes["loudness"][0] == (WINDOW + 1,)
    assert "parcels" in repr(ds)
    got = []
    for b in ds:
        s, t = int(b["subject"]), int(b["tr"])
        got.append((s, t))
        np.testing.assert_array_equal(b["fmri"].numpy(), y[s, t])
        run, within = str(t // 40 + 1), t % 40
        np.testing.assert_allclose(b["loudness"].numpy(), drive[run][within - WINDOW : within + 1], rtol=1e-6)
    want = {(s, t) for s in range(2) for t in range(80) if t % 40 >= WINDOW and not cens[s, t]}
    assert len(got) == len(set(got)) == len(ds) and set(got) == want


def test_join_pairs_a_run_of_parcels_with_its_stimulus(parcelled):
    _, st, _, pe, feats, drive, _ = parcelled
    j = gs.join(feats["2"], gs.select_run(pe, "2"))
    assert j["fmri"].dims == ("subject", "tr", "parcel")
    assert j["parcel"].values.tolist() == st.open(pe)["parcel"].values.tolist()
    np.testing.assert_array_equal(j["fmri"].values, st.open(pe)["fmri"].values[:, 40:])
    np.testing.assert_allclose(j["loudness"].values, drive["2"], rtol=1e-6)
    short = stimulus_entry(st, tr_s=2.0, source="3" * 64, values=drive["2"][:30])
    with pytest.warns(gs.errors.PairingWarning, match="the stimulus has 30 TRs and the scan 40 TRs"):
        assert gs.join(short, gs.select_run(pe, "2")).sizes["tr"] == 30  # the parcels are the scan side


def _design(drive: dict) -> np.ndarray:
    """(tr, WINDOW + 1) the drive at t-WINDOW .. t within each run (0 before the run), runs one after the other."""
    out = []
    for r in ("1", "2"):
        x = np.concatenate([np.zeros(WINDOW), drive[r]])
        out.append(np.stack([x[i : i + drive[r].size] for i in range(WINDOW + 1)], axis=1))
    return np.concatenate(out)


def _ridge(y: np.ndarray, x: np.ndarray, cens: np.ndarray) -> np.ndarray:
    """Per subject, sklearn Ridge fitted on run 1's uncensored TRs; (subject, 40, target) predictions of run 2."""
    from sklearn.linear_model import Ridge

    out = []
    for s in range(y.shape[0]):
        fit = ~cens[s, :40]
        out.append(Ridge(alpha=1.0).fit(x[:40][fit], y[s, :40][fit]).predict(x[40:]))
    return np.stack(out).astype(np.float32)


def _pearson(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    pc, yc = p - p.mean(0), y - y.mean(0)
    return (pc * yc).sum(0) / np.sqrt((pc * pc).sum(0) * (yc * yc).sum(0))


def test_ridge_on_parcels_evaluates_as_hand_made_labels_masker_means(parcelled):
    root, st, fe, pe, _, drive, cens = parcelled
    x = _design(drive)
    pds = st.open(pe)
    pred, _ = gs.write_predictions(st, _ridge(pds["fmri"].values, x, cens), pe, model_name="ridge",
                                   checkpoint_sha256="0" * 64, trs=(40, 80))
    assert st.open(pred)["predictions"].dims == ("subject", "tr", "parcel")
    ev, _ = gs.evaluate(st, pred, trs=(40, 80))
    eds = st.open(ev)
    assert eds["r"].dims == ("subject", "parcel") and eds["noise_ceiling"].dims == ("parcel",)
    # by hand: nilearn's parcel means of the voxel entry, the same ridge, r on each subject's uncensored test TRs
    hand, ids = labels_masker_signals(st, fe, root / "atlas.nii.gz")
    assert eds["parcel"].values.tolist() == ids and 9 in ids
    p_hand = _ridge(hand, x, cens)
    r_hand = np.stack([_pearson(p_hand[s][~cens[s, 40:]], hand[s, 40:][~cens[s, 40:]]) for s in range(2)])
    np.testing.assert_allclose(eds["r"].values, r_hand, atol=2e-4)
    assert eds["r"].values[:, ids.index(9)].min() > 0.5  # the planted parcel is predicted
    shared = ~cens[:, 40:].any(axis=0)
    ceiling, _ = noise_ceiling(hand[:, 40:][:, shared].astype(np.float64))
    np.testing.assert_allclose(eds["noise_ceiling"].values, ceiling, atol=2e-4, equal_nan=True)
    assert ev.attrs["n_censored_left_out"] == int(cens[:, 40:].sum())


def test_cli_evaluate_on_parcel_predictions(parcelled, capsys):
    root, st, _, pe, _, drive, cens = parcelled
    pred, _ = gs.write_predictions(st, _ridge(st.open(pe)["fmri"].values, _design(drive), cens), pe,
                                   model_name="ridge-cli", checkpoint_sha256="1" * 64, trs=(40, 80))
    assert main(["evaluate", str(root / "st"), pred.key[:12], "--trs", "40:80", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ev = st.get(out["entries"][0]["key"])
    assert ev.attrs["fmri_key"] == pe.key and st.open(ev)["r_run"].dims == ("subject", "run_id", "parcel")
    # the r map per parcel, painted back onto the voxels (each voxel its parcel's r; voxels in no parcel: fill)
    before = snapshot(root / "st")
    assert main(["to-nifti", str(root / "st"), ev.key[:12], "-o", str(root / "r.nii.gz")]) == 0
    capsys.readouterr()
    assert snapshot(root / "st") == before
    img = nib.load(root / "r.nii.gz")
    labels = np.asarray(nib.load(root / "atlas.nii.gz").dataobj)
    r_mean = st.open(ev)["r_mean"].values
    parcels = st.open(pe)["parcel"].values.tolist()
    mask = st.open(st.get(pe.attrs["parent"]))["mask"].values
    got = np.asarray(img.dataobj)
    np.testing.assert_array_equal(img.affine, np.asarray(pe.attrs["affine"]))
    for i, lab in enumerate(parcels):
        np.testing.assert_array_equal(got[mask & (labels == lab)], np.float32(r_mean[i]))
    assert (got[~mask | (labels == 0)] == 0).all() and (got[mask & (labels == 9)] > 0.5).all()
    # a moved atlas: refused, then given with --atlas; another atlas (not the key's): refused, store unchanged
    (root / "atlas.nii.gz").rename(root / "moved.nii.gz")
    try:
        assert main(["to-nifti", str(root / "st"), ev.key[:12], "-o", str(root / "r2.nii.gz")]) == 2
        assert "Give the atlas it was made with" in capsys.readouterr().err and not (root / "r2.nii.gz").exists()
        assert main(["to-nifti", str(root / "st"), ev.key[:12], "-o", str(root / "r2.nii.gz"),
                     "--atlas", str(root / "moved.nii.gz")]) == 0
        np.testing.assert_array_equal(np.asarray(nib.load(root / "r2.nii.gz").dataobj), got)
        nib.save(nib.Nifti1Image((labels > 0).astype(np.int16), img.affine), root / "other.nii.gz")
        assert main(["to-nifti", str(root / "st"), ev.key[:12], "-o", str(root / "r3.nii.gz"),
                     "--atlas", str(root / "other.nii.gz")]) == 2
        assert "is not the atlas parcel entry" in capsys.readouterr().err and not (root / "r3.nii.gz").exists()
    finally:
        (root / "moved.nii.gz").rename(root / "atlas.nii.gz")
    assert snapshot(root / "st") == before


def test_predictions_with_the_voxel_count_are_refused_for_a_parcel_target(parcelled):
    _, st, fe, pe, *_ = parcelled
    n_vox = int(fe.attrs["n_voxels"])
    with pytest.raises(gs.errors.PredictionsError, match=rf"predictions have {n_vox} parcels; fmri entry .* has "
                                                         rf"{st.open(pe).sizes['parcel']} \(its atlas's count\)"):
        gs.write_predictions(st, np.zeros((2, 40, n_vox), np.float32), pe, model_name="m",
                             checkpoint_sha256="0" * 64, trs=(40, 80))
