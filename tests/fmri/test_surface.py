"""Surface BOLD in (issue 19 item 3): GIFTI pairs and CIFTI dtseries as an fmri entry on ``vertex``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from giblet_store import FmriParams, open_store
from giblet_store.cli import main
from giblet_store.errors import FmriError
from giblet_store.fmri.bids import ingest_bids
from giblet_store.fmri.clean import CleanParams
from giblet_store.fmri.surface import ingest_surface
from giblet_store.testing import make_bids

from helpers import snapshot, write_cifti, write_gifti, write_gifti_pair

N_V, N_T = 9, 12


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_bids(tmp_path_factory.mktemp("bids") / "ds", n_trs=40, surface_vertices=16)


def _series(seed: int, n_t: int = N_T, n_v: int = N_V):
    rng = np.random.default_rng(seed)
    return 100 + rng.standard_normal((n_t, n_v)).astype(np.float32), 50 + rng.standard_normal((n_t, n_v)).astype(
        np.float32)


@pytest.fixture
def pairs(tmp_path):
    """Two subjects x two runs of func.gii pairs; ``truth[(sub, run)]`` = (left, right) (tr, vertex)."""
    files, truth = [], {}
    for i, (s, r) in enumerate([("01", "1"), ("01", "2"), ("02", "1"), ("02", "2")]):
        truth[(s, r)] = _series(i)
        files += write_gifti_pair(tmp_path, f"sub-{s}_task-movie_run-{r}", *truth[(s, r)])
    return files, truth


def test_gifti_pairs_become_a_vertex_entry_equal_to_the_files(tmp_path, pairs):
    files, truth = pairs
    st = open_store(tmp_path / "st")
    r = ingest_surface(st, files, ["01", "01", "02", "02"], runs=["1", "2", "1", "2"], params=FmriParams(tr_s=1.5))
    ds = r.entry.open()
    assert r.created and ds["fmri"].dims == ("subject", "tr", "vertex") and "voxel" not in ds.dims
    assert list(ds["hemi"].values) == ["L"] * N_V + ["R"] * N_V
    assert list(ds["vertex_index"].values) == list(range(N_V)) * 2
    assert list(ds["structure"].values) == ["CortexLeft"] * N_V + ["CortexRight"] * N_V
    got = ds["fmri"].values
    for i, s in enumerate(["01", "02"]):
        for j, run in enumerate(["1", "2"]):
            left, right = truth[(s, run)]
            np.testing.assert_array_equal(got[i, j * N_T:(j + 1) * N_T], np.concatenate([left, right], axis=1))
    a = r.entry.attrs
    assert a["surface"] == {"space": "fsaverage6", "format": "gifti", "n_surface": {"L": N_V, "R": N_V},
                            "volume_parts_dropped": {}}
    assert a["tr_s"] == 1.5 and [x["run"] for x in a["runs"]] == ["1", "2"]
    assert list(ds["tr_in_run"].values[:2]) == [0, 1]
    assert [f["hemi"] for f in a["sources"][0]["files"]] == ["L", "R"]


def test_key_is_stable_and_covers_every_file(tmp_path, pairs):
    files, truth = pairs
    st = open_store(tmp_path / "st")
    kw = dict(runs=["1", "2", "1", "2"], params=FmriParams(tr_s=1.5))
    first = ingest_surface(st, files, ["01", "01", "02", "02"], **kw)
    again = ingest_surface(st, files, ["01", "01", "02", "02"], **kw)
    assert not again.created and again.entry.key == first.entry.key
    left, right = truth[("02", "2")]
    write_gifti(files[-1], right + 1, "R")  # only a right hemisphere changed
    changed = ingest_surface(st, files, ["01", "01", "02", "02"], **kw)
    assert changed.created and changed.entry.key != first.entry.key


def test_zscore_and_nan_policy_on_vertices(tmp_path):
    left, right = _series(0, n_t=10)
    right[3, 2] = np.nan
    files = write_gifti_pair(tmp_path, "sub-01_task-movie", left, right)
    st = open_store(tmp_path / "st")
    with pytest.raises(FmriError, match="NaN/inf at some TR"):
        ingest_surface(st, files, ["01"], params=FmriParams(tr_s=2.0))
    with pytest.warns(UserWarning, match="left out 1 vertex"):
        r = ingest_surface(st, files, ["01"], params=FmriParams(tr_s=2.0, zscore_trs=(0, 6), nan_policy="mask"))
    ds = r.entry.open()
    assert ds.sizes["vertex"] == 2 * N_V - 1 and 2 not in list(ds["vertex_index"].values[N_V:])
    x = np.concatenate([left, np.delete(right, 2, axis=1)], axis=1).astype(np.float64)
    want = (x - x[:6].mean(0)) / x[:6].std(0)
    np.testing.assert_allclose(ds["fmri"].values[0], want, rtol=1e-5, atol=1e-5)


def test_bids_space_picks_the_func_gii_pair_with_the_planted_signal(study, tmp_path):
    st = open_store(tmp_path / "st")
    r = ingest_bids(st, study.root, "movie", derivatives="fmriprep", space="fsaverage6")
    ds, a = r.entry.open(), r.entry.attrs
    assert ds.sizes["vertex"] == 32 and a["tr_s"] == 2.0 and a["bids"]["space"] == "fsaverage6"
    assert a["tr_source"].endswith("hemi-L_space-fsaverage6_bold.json")
    key_files = [f["file"] for f in a["inputs"]["bids"]["files"][0]["bold_files"]]
    assert [f.split("_hemi-")[1][:1] for f in key_files] == ["L", "R"]
    drive = np.concatenate([study.drive[("01", r)] for r in study.runs])
    r_sig = [np.corrcoef(drive, ds["fmri"].values[0, :, v])[0, 1] for v in range(32)]
    sig = study.signal_vertices
    assert np.mean(np.array(r_sig)[sig]) > np.mean(np.array(r_sig)[~sig]) + 0.2
    cleaned = ingest_bids(st, study.root, "movie", derivatives="fmriprep", space="fsaverage6",
                          clean=CleanParams(confounds=("motion", "wm_csf"), detrend=True))
    assert cleaned.entry.key != r.entry.key and cleaned.entry.attrs["runs"][0]["confounds"][:1] == ["csf"]
    c = cleaned.entry.open()["fmri"].values[0]
    r_clean = [np.corrcoef(drive, c[:, v])[0, 1] for v in np.flatnonzero(sig)]
    assert np.mean(r_clean) > np.mean(np.array(r_sig)[sig])  # the confound noise was removed


def test_bids_surface_sidecar_tr_and_censoring(study, tmp_path):
    st = open_store(tmp_path / "st")
    r = ingest_bids(st, study.root, "movie", derivatives="fmriprep", space="fsaverage6",
                    clean=CleanParams(confounds=("motion", "scrub")))
    ds = r.entry.open()
    assert ds["censored"].dims == ("subject", "tr") and ds["censored"].values.any()
    assert (ds["fmri"].values[ds["censored"].values] == 0).all()


def test_cifti_dtseries_keeps_cortex_and_says_what_was_left_out(tmp_path):
    n_surf, lv, rv = 20, [0, 3, 5, 9], [1, 2, 7]
    rng = np.random.default_rng(3)
    data = rng.standard_normal((8, len(lv) + len(rv) + 3)).astype(np.float32)
    f = write_cifti(tmp_path / "sub-01_task-movie_space-fsLR_den-91k_bold.dtseries.nii", data, n_surf, lv, rv,
                    tr_s=1.5)
    st = open_store(tmp_path / "st")
    r = ingest_surface(st, [f], ["01"])
    ds, a = r.entry.open(), r.entry.attrs
    assert a["tr_s"] == 1.5 and a["surface"]["format"] == "cifti" and a["surface"]["space"] == "fsLR"
    assert a["surface"]["volume_parts_dropped"] == {"CIFTI_STRUCTURE_THALAMUS_LEFT": 3}
    assert a["surface"]["n_surface"] == {"L": n_surf, "R": n_surf}
    assert list(ds["vertex_index"].values) == lv + rv and list(ds["hemi"].values) == ["L"] * 4 + ["R"] * 3
    assert list(ds["structure"].values[:1]) == ["CIFTI_STRUCTURE_CORTEX_LEFT"]
    np.testing.assert_array_equal(ds["fmri"].values[0], data[:, :7])


# ------------------------------------------------------------------------------ bad input
def _bad(tmp_path, argv, *must):
    st = tmp_path / "st"
    open_store(st)
    before = snapshot(st)
    code = main(["ingest-fmri", str(st), *[str(a) for a in argv]])
    assert code == 2 and snapshot(st) == before
    return code


def test_bad_surfaces_exit_2_and_leave_the_store(tmp_path, capsys):
    left, right = _series(0)
    good = write_gifti_pair(tmp_path, "sub-01_task-movie_run-1", left, right)
    short = write_gifti_pair(tmp_path, "sub-01_task-movie_run-2", left[:, :5], right[:, :5])
    odd = write_gifti(tmp_path / "sub-02_task-movie_hemi-R_space-fsaverage6_bold.func.gii", right[:, :4], "R")
    other = write_gifti_pair(tmp_path, "sub-01_task-movie_run-3", left, right, space="fsaverage5")
    empty = write_gifti(tmp_path / "sub-03_task-movie_hemi-L_space-fsaverage6_bold.func.gii", left, "L", empty=True)
    cases = [
        ([good[0], odd, "--subject", "01", "--tr", "2"], "has 9 vertices but", "has 4"),
        ([*good, *short, "--subject", "01", "01", "--run", "1", "2", "--tr", "2"], "hemi-L vertices", "same surface"),
        ([*good, *other, "--subject", "01", "01", "--run", "1", "3", "--tr", "2"], "space 'fsaverage5'",
         "ingest the spaces apart"),
        ([good[0], other[1], "--subject", "01", "--tr", "2"], "is in space 'fsaverage6'", "of one space"),
        ([*good, good[0], "--subject", "01", "01", "--tr", "2"], "one hemisphere is missing"),
        ([good[0], good[0], "--subject", "01", "--tr", "2"], "both hemi-L"),
        ([empty, good[1], "--subject", "01", "--tr", "2"], "holds no data arrays"),
        ([*good, "--subject", "01"], "records no TR", "--tr"),
        ([*good, "--subject", "01", "02", "--tr", "2"], "1 surface run(s), func.gii pair(s)",
         "a func.gii pair is one run"),
    ]
    for argv, *must in cases:
        capsys.readouterr()
        _bad(tmp_path, argv)
        err = capsys.readouterr().err
        for m in must:
            assert m in err, (m, err)
        assert "Traceback" not in err


def test_bids_surface_with_one_hemisphere_missing(study, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(study.root, root)
    (root / "derivatives/fmriprep/sub-02/func/sub-02_task-movie_run-2_hemi-R_space-fsaverage6_bold.func.gii").unlink()
    _bad(tmp_path, ["--bids", root, "--task", "movie", "--derivatives", "fmriprep", "--space", "fsaverage6"])
    err = capsys.readouterr().err
    assert "subject '02' run '2'" in err and "no hemi-R file" in err


def test_cli_ingests_a_plain_gifti_list(tmp_path, pairs, capsys):
    files, _ = pairs
    st = tmp_path / "st"
    assert main(["ingest-fmri", str(st), *map(str, files), "--subject", "01", "01", "02", "02", "--run", "1", "2",
                 "1", "2", "--tr", "2"]) == 0
    out = capsys.readouterr().out
    assert "vertices=18 space=fsaverage6" in out and "runs=2" in out


# ------------------------------------------------------------------------------ downstream and export
@pytest.fixture(scope="module")
def surface_world(study, tmp_path_factory):
    """The study's surface entry, a ridge fitted on run 1 predicting run 2, and its evaluation."""
    from giblet_store import evaluate, write_predictions

    work = tmp_path_factory.mktemp("surface_world")
    st = open_store(work / "st")
    fe = ingest_bids(st, study.root, "movie", derivatives="fmriprep", space="fsaverage6").entry
    y = fe.open()["fmri"].values.astype(np.float64)
    n = fe.attrs["runs"][0]["n_trs"]
    x = np.concatenate([study.drive[("01", r)] for r in study.runs])  # the planted regressor, both runs
    design = np.c_[np.ones_like(x), x]
    preds = []
    for i in range(y.shape[0]):
        w = np.linalg.solve(design[:n].T @ design[:n] + 1e-3 * np.eye(2), design[:n].T @ y[i, :n])
        preds.append(design[n:] @ w)
    ckpt = work / "ridge.npy"
    np.save(ckpt, np.zeros(2))
    pe, _ = write_predictions(st, np.stack(preds).astype(np.float32), fe, model_name="ridge(drive)", checkpoint=ckpt,
                              trs=(n, 2 * n))
    ev, _ = evaluate(st, pe, trs=(n, 2 * n))
    return {"store": st, "fmri": fe, "pred": pe, "eval": ev, "study": study, "work": work}


def test_ridge_evaluate_on_the_surface_gives_a_finite_r_map(surface_world):
    w = surface_world
    ev = w["store"].open(w["eval"])
    sig = w["study"].signal_vertices
    assert ev["r"].dims == ("subject", "vertex") and ev["noise_ceiling"].dims == ("vertex",)
    assert list(ev["hemi"].values) == list(w["fmri"].open()["hemi"].values)
    assert np.isfinite(ev["r_mean"].values).all() and np.isfinite(ev["noise_ceiling"].values[sig]).any()
    assert ev["r_mean"].values[sig].mean() > ev["r_mean"].values[~sig].mean() + 0.2
    assert ev["r_run"].dims == ("subject", "run_id", "vertex")
    p = w["store"].open(w["pred"])
    assert p["predictions"].dims == ("subject", "tr", "vertex") and list(p["vertex_index"].values[:2]) == [0, 1]


def test_join_and_store_dataset_read_vertices(surface_world):
    from giblet_store import join, select_run
    from giblet_store.training.dataset import StoreDataset

    from helpers import stimulus_entry

    st, fe = surface_world["store"], surface_world["fmri"]
    stim = stimulus_entry(st, tr_s=2.0, n_trs=40)
    joined = join(stim, select_run(fe, "1"), store=st)
    assert joined["fmri"].dims == ("subject", "tr", "vertex") and joined.sizes["vertex"] == 32
    ds = StoreDataset(st, fe.key, batch_size=None, shuffle=False, io_threads=0)
    item = next(iter(ds))
    np.testing.assert_array_equal(item["fmri"].numpy(), fe.open()["fmri"].values[int(item["subject"]),
                                                                                   int(item["tr"])])


def test_gifti_export_round_trips_fmri_and_maps(surface_world, tmp_path, capsys):
    import nibabel as nib

    from giblet_store import entry_to_gifti, entry_to_nifti
    from giblet_store.errors import ParameterError

    st, fe, ev = surface_world["store"], surface_world["fmri"], surface_world["eval"]
    left, right = entry_to_gifti(st, fe, tmp_path / "sub-01_bold", subject="01")
    src = surface_world["study"].fmriprep / "sub-01" / "func"
    for got, hemi in ((left, "L"), (right, "R")):
        assert got.name == f"sub-01_bold_hemi-{hemi}.func.gii"
        back = np.stack([d.data for d in nib.load(str(got)).darrays])
        orig = [np.stack([d.data for d in nib.load(str(src / f"sub-01_task-movie_run-{r}_hemi-{hemi}_space-"
                                                        f"fsaverage6_bold.func.gii")).darrays]) for r in ("1", "2")]
        np.testing.assert_array_equal(back, np.concatenate(orig))
    again = ingest_surface(st, [left, right], ["01"])  # the export ingests again: TR from TimeStep, values equal
    assert again.entry.attrs["tr_s"] == 2.0
    np.testing.assert_array_equal(again.entry.open()["fmri"].values[0], fe.open()["fmri"].values[0])
    assert main(["to-gifti", str(st.root), ev.key[:12], "-o", str(tmp_path / "r")]) == 0
    r_mean = st.open(ev)["r_mean"].values
    maps = [nib.load(str(tmp_path / f"r_hemi-{h}.func.gii")).darrays[0].data for h in "LR"]
    np.testing.assert_array_equal(np.concatenate(maps), r_mean)
    with pytest.raises(ParameterError, match="to-gifti"):
        entry_to_nifti(st, ev, tmp_path / "r.nii.gz")
    assert main(["to-nifti", str(st.root), fe.key[:12], "--subject", "01", "-o", str(tmp_path / "x.nii")]) == 2
    assert "export it per hemisphere to GIFTI" in capsys.readouterr().err and not (tmp_path / "x.nii").exists()


def test_gifti_export_fills_vertices_a_cifti_leaves_out(tmp_path):
    import nibabel as nib

    from giblet_store import entry_to_gifti

    lv, rv = [0, 3, 5], [1, 2]
    data = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    f = write_cifti(tmp_path / "sub-01_task-movie_space-fsLR_den-91k_bold.dtseries.nii", data, 6, lv, rv)
    st = open_store(tmp_path / "st")
    fe = ingest_surface(st, [f], ["01"]).entry
    left, right = entry_to_gifti(st, fe, tmp_path / "out.func.gii", fill=np.nan)
    got = np.stack([d.data for d in nib.load(str(left)).darrays])
    assert got.shape == (4, 6) and np.isnan(got[:, [1, 2, 4]]).all()
    np.testing.assert_array_equal(got[:, lv], data[:, :3])
    np.testing.assert_array_equal(np.stack([d.data for d in nib.load(str(right)).darrays])[:, rv], data[:, 3:5])


def test_bids_cifti_space_and_a_surface_store_verifies(study, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(study.root, root)
    lv, rv = [0, 2, 4, 6], [1, 3, 5]
    rng = np.random.default_rng(5)
    truth = {}
    for s in study.subjects:
        for r in study.runs:
            truth[(s, r)] = rng.standard_normal((40, 10)).astype(np.float32)
            write_cifti(root / f"derivatives/fmriprep/sub-{s}/func/sub-{s}_task-movie_run-{r}_space-fsLR_den-91k_"
                        "bold.dtseries.nii", truth[(s, r)], 8, lv, rv)
    st = open_store(tmp_path / "st")
    fe = ingest_bids(st, root, "movie", derivatives="fmriprep", space="fsLR",
                     clean=CleanParams(confounds=("csf",))).entry
    ds = fe.open()
    assert fe.attrs["surface"]["format"] == "cifti" and list(ds["vertex_index"].values) == lv + rv
    assert fe.attrs["runs"][0]["confounds"] == ["csf"]
    from nilearn.signal import clean

    import pandas as pd

    csf = pd.read_csv(root / "derivatives/fmriprep/sub-02/func/sub-02_task-movie_run-2_desc-confounds_timeseries.tsv",
                      sep="\t")[["csf"]].to_numpy()
    want = clean(truth[("02", "2")][:, :7].astype(np.float64), confounds=csf, standardize=None, detrend=False, t_r=2.0)
    np.testing.assert_allclose(ds["fmri"].values[1, 40:], want, rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    assert main(["verify", str(st.root)]) == 0, capsys.readouterr()


def test_a_reconstruction_reads_a_surface_entry(surface_world):
    from giblet_store import MelParams, TrGrid, extract_mel, write_reconstruction

    st, fe, w = surface_world["store"], surface_world["fmri"], surface_world
    mel = extract_mel(st, w["study"].stimulus, MelParams(n_mels=8), TrGrid(tr_s=2.0)).entry
    values = st.open(mel)["mel"].values
    rec, created = write_reconstruction(st, values, mel, fmri=fe, model_name="ridge(fmri->mel)",
                                        checkpoint=w["work"] / "ridge.npy", subjects=["01"])
    assert created and rec.attrs["fmri_key"] == fe.key and rec.attrs["subjects"] == ["01"]
    np.testing.assert_array_equal(st.open(rec)["mel"].values, values)
