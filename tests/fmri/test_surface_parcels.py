"""derive(surface fmri, Parcellate(atlas=(left, right))): vertex means within the labels of a surface atlas
(.label.gii or FreeSurfer .annot per hemisphere), equal to nilearn's SurfaceLabelsMasker (issue 19 item 4:
"averages voxels (or vertices)")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import giblet_store as gs
from giblet_store import FmriParams, open_store, verify_store
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.fmri.surface import ingest_surface

from helpers import snapshot, write_gifti_pair

N_V, N_T = 12, 10
# labels 1-3 on the left, 4-5 on the right (one parcel per hemisphere), 0 background
LEFT = np.array([0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0])
RIGHT = np.array([4, 4, 4, 4, 5, 5, 5, 5, 0, 0, 0, 4])


def write_label_gii(path, labels, hemi: str | None = None):
    import nibabel as nib

    meta = {} if hemi is None else {"AnatomicalStructurePrimary": {"L": "CortexLeft", "R": "CortexRight"}[hemi]}
    img = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData(meta))
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.asarray(labels, dtype=np.int32), datatype="int32",
                                                      intent="NIFTI_INTENT_LABEL"))
    nib.save(img, str(path))
    return str(path)


def write_annot(path, labels):
    import nibabel as nib

    n = int(labels.max()) + 1
    ctab = np.array([[10 * i, 20, 30, 0, 0] for i in range(n)], dtype=np.int32)
    nib.freesurfer.write_annot(str(path), np.asarray(labels, dtype=np.int32), ctab, [f"p{i}" for i in range(n)])
    return str(path)


@pytest.fixture(scope="module")
def surf(tmp_path_factory):
    """A surface entry of two subjects (one NaN vertex dropped: vertex_index is not 0..n-1) and its values."""
    d = tmp_path_factory.mktemp("surfparc")
    rng = np.random.default_rng(5)
    files = []
    for s in ("01", "02"):
        left, right = (100 + rng.standard_normal((N_T, N_V)).astype(np.float32) for _ in range(2))
        left[3, 2] = np.nan  # left vertex 2 (label 1) is dropped by nan_policy="mask"
        files += write_gifti_pair(d, f"sub-{s}_task-movie", left, right)
    st = open_store(d / "st")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fe = ingest_surface(st, files, ["01", "02"], params=FmriParams(tr_s=1.5, nan_policy="mask")).entry
    return d, st, fe


def _masker_reference(fds) -> np.ndarray:
    """nilearn's SurfaceLabelsMasker on the entry's stored vertices (a mesh of just those vertices)."""
    from nilearn.maskers import SurfaceLabelsMasker
    from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage

    hemi, vi = fds["hemi"].values, fds["vertex_index"].values
    parts = {h: np.flatnonzero(hemi == h) for h in ("L", "R")}
    mesh = PolyMesh(**{name: InMemoryMesh(np.random.default_rng(0).random((len(ix), 3)),
                                          np.array([[0, 1, 2]] * 2)) for name, ix in
                       (("left", parts["L"]), ("right", parts["R"]))})
    labels = SurfaceImage(mesh, {"left": LEFT[vi[parts["L"]]], "right": RIGHT[vi[parts["R"]]]})
    out = []
    for x in fds["fmri"].values:  # (tr, vertex) per subject
        img = SurfaceImage(mesh, {"left": x[:, parts["L"]].T.astype(np.float64),
                                  "right": x[:, parts["R"]].T.astype(np.float64)})
        out.append(SurfaceLabelsMasker(labels_img=labels, standardize=None).fit().transform(img))
    return np.stack(out)


@pytest.mark.parametrize("fmt", ["label.gii", "annot"])
def test_surface_parcels_equal_nilearns_surface_labels_masker(surf, fmt):
    d, st, fe = surf
    if fmt == "annot":
        atlas = (write_annot(d / "rh.test.annot", RIGHT), write_annot(d / "lh.test.annot", LEFT))  # any order
    else:
        atlas = (write_label_gii(d / "test.L.label.gii", LEFT), write_label_gii(d / "x.label.gii", RIGHT, "R"))
    pe = st.derive(fe, gs.Parcellate(atlas=atlas))
    fds, pds = st.open(fe), st.open(pe)
    assert pds["fmri"].dims == ("subject", "tr", "parcel") and list(pds["parcel"].values) == [1, 2, 3, 4, 5]
    assert list(pds["parcel_hemi"].values) == ["L", "L", "L", "R", "R"]
    assert list(pds["parcel_n_vertices"].values) == [2, 3, 3, 5, 4]  # label 1 lost its NaN vertex
    np.testing.assert_allclose(pds["fmri"].values, _masker_reference(fds), rtol=0, atol=1e-5)  # float32 at ~100
    assert pe.attrs["n_parcels"] == 5 and "layout" not in pe.attrs and pe.attrs["surface"] == fe.attrs["surface"]
    assert set(pe.attrs["inputs"]["options"]["atlas_sha256"]) == {"L", "R"}
    assert verify_store(st).ok


def test_a_label_on_both_hemispheres_is_one_bilateral_parcel_and_says_so(surf):
    d, st, fe = surf
    right = RIGHT - 3 * (RIGHT > 0)  # labels 1, 2 on the right too
    atlas = (write_label_gii(d / "bi_hemi-L.label.gii", LEFT), write_label_gii(d / "bi_hemi-R.label.gii", right))
    with pytest.warns(UserWarning, match=r"2 atlas label\(s\) \(\[1, 2\]\) lie on both hemispheres"):
        pe = st.derive(fe, gs.Parcellate(atlas=atlas))
    pds, fds = st.open(pe), st.open(fe)
    assert list(pds["parcel"].values) == [1, 2, 3] and list(pds["parcel_hemi"].values) == ["L+R", "L+R", "L"]
    labels = np.where(fds["hemi"].values == "L", LEFT[fds["vertex_index"].values],
                      right[fds["vertex_index"].values])
    want = fds["fmri"].values[..., labels == 1].astype(np.float64).mean(-1)
    np.testing.assert_allclose(pds["fmri"].values[..., 0], want, rtol=0, atol=1e-5)


def test_the_key_names_each_hemispheres_atlas_by_content(surf, tmp_path):
    d, st, fe = surf
    a = (write_label_gii(tmp_path / "a.L.label.gii", LEFT), write_label_gii(tmp_path / "a.R.label.gii", RIGHT))
    b = (write_label_gii(tmp_path / "lh.b.label.gii", LEFT), write_label_gii(tmp_path / "rh.b.label.gii", RIGHT))
    assert st.derive(fe, gs.Parcellate(atlas=a)).key == st.derive(fe, gs.Parcellate(atlas=b)).key
    swapped = (write_label_gii(tmp_path / "s.L.label.gii", RIGHT), write_label_gii(tmp_path / "s.R.label.gii", LEFT))
    assert gs.Parcellate(atlas=swapped).to_dict() != gs.Parcellate(atlas=a).to_dict()


def test_cli_derive_parcellate_takes_two_surface_files(surf, capsys):
    d, st, fe = surf
    atlas = [write_label_gii(d / "cli.L.label.gii", LEFT), write_label_gii(d / "cli.R.label.gii", RIGHT)]
    assert main(["derive", str(d / "st"), fe.key[:16], "--parcellate", *atlas, "--json"]) == 0
    out = capsys.readouterr().out
    assert st.derive(fe, gs.Parcellate(atlas=tuple(atlas))).key in out


def _bad(d, name: str) -> tuple:
    L, R = str(d / f"{name}.L.label.gii"), str(d / f"{name}.R.label.gii")
    if name == "mesh":
        return write_label_gii(L, np.ones(N_V + 1, int)), write_label_gii(R, RIGHT)
    if name == "twoleft":
        return write_label_gii(L, LEFT), write_label_gii(d / "twoleft2.L.label.gii", LEFT)
    if name == "nohemi":
        return write_label_gii(d / "a.label.gii", LEFT), write_label_gii(R, RIGHT)
    if name == "one":
        return (write_label_gii(L, LEFT),)
    if name == "background":
        return write_label_gii(L, 0 * LEFT), write_label_gii(R, 0 * RIGHT)
    raise ValueError(name)


@pytest.mark.parametrize("name,match", [
    ("mesh", r"has 13 vertices but fmri entry .*'s hemi-L surface has 12 .*give an atlas on the data's mesh"),
    ("twoleft", r"both label hemisphere L; give one left and one right"),
    ("nohemi", r"which hemisphere it labels is unknown"),
    ("one", r"a surface atlas is one file per hemisphere; got 1 "),
    ("background", r"labels none of the 23 vertices"),
])
def test_bad_surface_atlases_are_refused_and_the_store_is_unchanged(surf, tmp_path, name, match):
    d, st, fe = surf
    before = snapshot(d / "st")
    with pytest.raises(ParameterError, match=match):
        st.derive(fe, gs.Parcellate(atlas=_bad(tmp_path, name)))
    assert snapshot(d / "st") == before


def test_volume_and_surface_atlases_are_not_mixed_up(surf, tmp_path):
    from helpers import synth, write_series

    d, st, fe = surf
    vol = write_series(tmp_path / "atlas.nii", synth(n=1))
    with pytest.raises(ParameterError, match=r"is on a surface \(vertices\) but Parcellate was given the volume atlas"):
        st.derive(fe, gs.Parcellate(atlas=str(vol)))
    with pytest.raises(ParameterError, match=r"a surface atlas must be on the data's mesh"):
        gs.Parcellate(atlas=(write_label_gii(tmp_path / "r.L.label.gii", LEFT),
                             write_label_gii(tmp_path / "r.R.label.gii", RIGHT)), resample=True)


def test_surface_parcels_of_a_bids_study_are_a_model_target(tmp_path):
    """fMRIPrep func.gii pairs -> parcels of the planted half of each hemisphere -> StoreDataset, predictions and
    evaluation over parcel; the planted parcel is predicted."""
    from giblet_store.testing import make_bids
    from giblet_store.training.dataset import StoreDataset
    from helpers import stimulus_entry

    study = make_bids(tmp_path / "ds", n_trs=40, surface_vertices=16)
    st = open_store(tmp_path / "st")
    fe = gs.ingest_bids(st, study.root, "movie", derivatives="fmriprep", space="fsaverage6").entry
    n = fe.attrs["surface"]["n_surface"]["L"]
    planted = np.r_[np.full(n // 2, 1), np.full(n - n // 2, 2)]  # the planted half of each hemisphere, the rest
    atlas = (write_label_gii(tmp_path / "lh.label.gii", planted, "L"), write_label_gii(tmp_path / "rh.label.gii",
                                                                                         planted + 2, "R"))
    pe = st.derive(fe, gs.Parcellate(atlas=atlas))
    pds = st.open(pe)
    assert list(pds["parcel"].values) == [1, 2, 3, 4] and list(pds["parcel_hemi"].values) == ["L", "L", "R", "R"]
    drive = np.concatenate([study.drive[("01", r)] for r in study.runs])
    feats = {r: stimulus_entry(st, tr_s=2.0, source=r * 64, values=study.drive[("01", r)]) for r in study.runs}
    ds = StoreDataset(st, pe, [(feats, "loudness")], window=0, shuffle=False, io_threads=0)
    assert ds.sample_shapes["fmri"][0] == (4,) and len(ds) == 2 * 80
    b = next(iter(ds))
    np.testing.assert_array_equal(b["fmri"].numpy(), pds["fmri"].values[int(b["subject"]), int(b["tr"])])
    y = pds["fmri"].values.astype(np.float64)
    pred = np.stack([np.outer(drive[40:], np.polyfit(drive[:40], y[s, :40], 1)[0]) for s in range(2)])
    pred_entry, _ = gs.write_predictions(st, pred.astype(np.float32), pe, model_name="slope",
                                         checkpoint_sha256="2" * 64, trs=(40, 80))
    ev_entry = gs.evaluate(st, pred_entry, trs=(40, 80))[0]
    ev = st.open(ev_entry)
    assert ev["r"].dims == ("subject", "parcel") and ev["parcel"].values.tolist() == [1, 2, 3, 4]
    assert ev["r"].values[:, [0, 2]].min() > 0.5  # the planted halves
    # the r map painted back onto each hemisphere's mesh: every vertex its parcel's r
    import nibabel as nib

    left, right = gs.entry_to_gifti(st, ev_entry, tmp_path / "r", subject="02")
    r = ev["r"].sel(subject="02").values
    for f, lab in ((left, planted), (right, planted + 2)):
        np.testing.assert_array_equal(nib.load(str(f)).darrays[0].data, r[lab - 1].astype(np.float32))
    with pytest.raises(ParameterError, match="is on a surface .* export it per hemisphere to GIFTI"):
        gs.entry_to_nifti(st, ev_entry, tmp_path / "r.nii.gz", subject="02")
    assert verify_store(st).ok
