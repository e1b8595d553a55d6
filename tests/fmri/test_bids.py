"""BIDS studies in (issue 19): discovery, sidecar TR with inheritance, events onsets, confounds, denoising."""

from __future__ import annotations

import json
import shutil
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.errors import FmriError
from giblet_store.fmri.bids import ingest_bids
from giblet_store.fmri.clean import CleanParams
from giblet_store.testing import make_bids

from helpers import fmriprep_bold, masked_series

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_bids(tmp_path_factory.mktemp("bids") / "ds")


@pytest.fixture
def own_study(study, tmp_path):
    """A copy of the study this test may edit."""
    shutil.copytree(study.root, tmp_path / "ds")
    return tmp_path / "ds"


def test_make_bids_writes_bids_and_fmriprep_names(study):
    from nilearn.interfaces.fmriprep import load_confounds

    root = study.root
    assert json.loads((root / "task-movie_bold.json").read_text())["RepetitionTime"] == 2.0
    ev = pd.read_csv(root / "sub-01" / "func" / "sub-01_task-movie_run-2_events.tsv", sep="\t")
    assert list(ev.columns) == ["onset", "duration", "trial_type", "stim_file"]
    assert ev.loc[ev.stim_file == "movie.wav", "onset"].item() == study.onsets_s["2"] == 6.0
    img = nib.load(str(fmriprep_bold(root, "02", "2")))
    assert img.shape == (6, 5, 4, 40) and img.header.get_zooms()[3] == 2.0
    conf, mask = load_confounds(str(fmriprep_bold(root, "01", "1")), strategy=("motion", "wm_csf", "high_pass", "scrub"))
    assert {"trans_x", "rot_z", "csf", "white_matter", "cosine00"} <= set(conf.columns)
    assert mask is not None and 0 < 40 - len(mask) < 40  # the two jerks are scrubbed, not every volume
    tsv = pd.read_csv(fmriprep_bold(root, "01", "1").parent / "sub-01_task-movie_run-1_desc-confounds_timeseries.tsv",
                      sep="\t")
    assert {"global_signal", "framewise_displacement", "a_comp_cor_00", "std_dvars"} <= set(tsv.columns)


def test_raw_ingest_takes_runs_tr_onsets_and_entities_from_bids(study, tmp_path):
    st = open_store(tmp_path / "st")
    r = ingest_bids(st, study.root, "movie", event="movie.wav")
    a = r.entry.attrs
    assert r.created and a["subjects"] == ["01", "02"] and a["tr_s"] == 2.0 and a["tr_source"] == "task-movie_bold.json"
    assert [x["run"] for x in a["runs"]] == ["1", "2"]
    assert [x["onset_s"] for x in a["runs"]] == [-4.0, -6.0]  # TR k pairs with stimulus time k*TR - onset
    assert [x["stimulus_onset_s"] for x in a["runs"]] == [4.0, 6.0]
    assert all(len(x["events_sha256"]) == 64 for x in a["runs"])
    assert [s["bids_path"] for s in a["sources"]][:2] == [
        "sub-01/func/sub-01_task-movie_run-1_bold.nii.gz", "sub-01/func/sub-01_task-movie_run-2_bold.nii.gz"]
    assert a["bids_entities"]["task"] == "movie" and a["bids"]["derivatives"] is None
    ds = st.open(r.entry)
    assert ds["tr_start_s"].values[0] == -4.0 and ds["tr_start_s"].values[40] == -6.0
    raw = masked_series(ds, study.root / "sub-02" / "func" / "sub-02_task-movie_run-2_bold.nii.gz")
    np.testing.assert_array_equal(ds["fmri"].values[1, 40:], raw.astype(np.float32))
    assert ingest_bids(st, study.root, "movie", event="movie.wav").created is False


def test_runs_order_by_number_and_subject_selection(own_study, tmp_path):
    for s in ("01", "02"):
        for src, dst in (("2", "10"),):
            for p in (own_study / f"sub-{s}" / "func").glob(f"*run-{src}_*"):
                p.rename(p.with_name(p.name.replace(f"run-{src}_", f"run-{dst}_")))
    r = ingest_bids(open_store(tmp_path / "st"), own_study, "movie", subjects=["sub-02"])
    assert [x["run"] for x in r.entry.attrs["runs"]] == ["1", "10"] and r.entry.attrs["subjects"] == ["02"]


def test_deeper_sidecar_overrides_and_tr_is_the_exact_decimal(own_study, tmp_path):
    (own_study / "task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 7.0}))
    for s in ("01", "02"):
        (own_study / f"sub-{s}" / f"sub-{s}_task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 2.0004}))
    r = ingest_bids(open_store(tmp_path / "st"), own_study, "movie")
    assert r.entry.attrs["tr_s"] == 2.0004 and r.entry.attrs["tr_source"] == "sub-01/sub-01_task-movie_bold.json"


def test_sidecar_and_header_disagree(own_study, tmp_path):
    (own_study / "task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 2.5}))
    with pytest.raises(FmriError, match=r"task-movie_bold.json gives RepetitionTime 2.5 s but the header .* says 2 s"):
        ingest_bids(open_store(tmp_path / "st"), own_study, "movie")


def test_missing_sidecar_falls_back_to_the_header_with_a_warning(own_study, tmp_path):
    (own_study / "task-movie_bold.json").unlink()
    with pytest.warns(UserWarning, match="no sidecar gives RepetitionTime; using the header's TR 2 s"):
        r = ingest_bids(open_store(tmp_path / "st"), own_study, "movie")
    assert r.entry.attrs["tr_s"] == 2.0


def test_key_covers_sidecars_events_and_cleaning(own_study, tmp_path):
    st = open_store(tmp_path / "st")
    k0 = ingest_bids(st, own_study, "movie", derivatives="fmriprep").entry.key
    k1 = ingest_bids(st, own_study, "movie", derivatives="fmriprep", clean=CleanParams(detrend=True)).entry.key
    side = own_study / "task-movie_bold.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "TaskDescription": "a film"}))
    k2 = ingest_bids(st, own_study, "movie", derivatives="fmriprep").entry.key
    ev = own_study / "sub-01" / "func" / "sub-01_task-movie_run-1_events.tsv"
    ev.write_text(ev.read_text().replace("fixation", "rest"))
    k3 = ingest_bids(st, own_study, "movie", derivatives="fmriprep").entry.key
    assert len({k0, k1, k2, k3}) == 4 and len(st.entries()) == 4


def _signal_r(ds, study) -> float:
    """Mean r between the planted drive and the stored BOLD over the signal voxels (uncensored TRs)."""
    ijk = np.asarray(ds["voxel_ijk"].values)
    sig = study.signal_voxels[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    rs = []
    for i, s in enumerate(study.subjects):
        for j, run in enumerate(study.runs):
            y = ds["fmri"].values[i, j * 40:(j + 1) * 40][:, sig]
            keep = ~ds["censored"].values[i, j * 40:(j + 1) * 40] if "censored" in ds else np.ones(40, bool)
            d = study.drive[(s, run)][keep]
            rs += [np.corrcoef(d, y[keep, v])[0, 1] for v in range(y.shape[1])]
    return float(np.mean(rs))


def test_denoising_raises_the_planted_signals_r(study, tmp_path):
    st = open_store(tmp_path / "st")
    raw = st.open(ingest_bids(st, study.root, "movie", derivatives="fmriprep").entry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = st.open(ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                                      clean=CleanParams(confounds=("motion", "wm_csf", "high_pass"),
                                                         motion="basic")).entry)
    r_raw, r_clean = _signal_r(raw, study), _signal_r(cleaned, study)
    assert r_clean > r_raw + 0.15, (r_raw, r_clean)


def test_stimulus_entry_must_sit_on_the_events_onset(study, tmp_path):
    from giblet_store import TrGrid
    from giblet_store.features.mel import MelParams, extract_mel

    st = open_store(tmp_path / "st")
    mp = MelParams(sample_rate_hz=16000, n_fft=512, hop=256, n_mels=16)
    with warnings.catch_warnings():  # the grids crop the soundtrack's last second
        warnings.simplefilter("ignore")
        wrong = extract_mel(st, study.stimulus, mp, TrGrid(tr_s=2.0, onset_s=0.0, n_trs=40)).entry
        good = [extract_mel(st, study.stimulus, mp, TrGrid(tr_s=2.0, onset_s=-o, n_trs=40)).entry
                for o in (4.0, 6.0)]
    with pytest.raises(FmriError, match=r"Extract the stimulus with --onset -4"):
        ingest_bids(st, study.root, "movie", stimulus=wrong.key)
    r = ingest_bids(st, study.root, "movie", stimulus=[g.key for g in good])
    assert [x["stimulus_key"] for x in r.entry.attrs["runs"]] == [g.key for g in good]
    assert [x["stimulus_onset_s"] for x in r.entry.attrs["runs"]] == [4.0, 6.0]


def test_cli_ingests_a_bids_study(study, tmp_path, capsys):
    code = main(["ingest-fmri", str(tmp_path / "st"), "--bids", str(study.root), "--task", "movie",
                 "--derivatives", "fmriprep", "--confounds", "motion", "scrub", "--detrend", "--runs", "2",
                 "--json"])
    out = json.loads(capsys.readouterr().out)["entries"][0]
    assert code == 0 and out["created"]
    e = open_store(tmp_path / "st").get(out["key"])
    assert [x["run"] for x in e.attrs["runs"]] == ["2"] and e.attrs["clean"]["confounds"] == ["motion", "scrub"]


def test_sessions_are_chosen_and_a_choice_is_asked_for(tmp_path):
    study = make_bids(tmp_path / "ds", n_subjects=1, n_trs=30, sessions=("pre", "post"))
    assert (study.root / "sub-01" / "ses-post" / "func" / "sub-01_ses-post_task-movie_run-2_bold.nii.gz").is_file()
    st = open_store(tmp_path / "st")
    with pytest.raises(FmriError, match="scanned in sessions post, pre; one entry holds one session"):
        ingest_bids(st, study.root, "movie", derivatives="fmriprep")
    r = ingest_bids(st, study.root, "movie", derivatives="fmriprep", session="ses-post",
                    clean=CleanParams(confounds=("motion",), motion="basic"))
    assert all("ses-post" in s["bids_path"] for s in r.entry.attrs["sources"])
    assert r.entry.attrs["bids_entities"]["ses"] == "post" and r.entry.attrs["n_trs"] == 60


def test_a_cleaned_entry_verifies(study, tmp_path):
    from giblet_store import verify_store

    st = open_store(tmp_path / "st")
    ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                clean=CleanParams(confounds=("motion", "scrub"), motion="basic"))
    report = verify_store(st)
    assert report.checked == 1 and report.ok and not report.problems


def test_two_series_of_one_run_are_refused_not_chosen_among(own_study, tmp_path):
    func = own_study / "sub-01" / "func"
    shutil.copy(func / "sub-01_task-movie_run-1_bold.nii.gz", func / "sub-01_task-movie_acq-fast_run-1_bold.nii.gz")
    st = open_store(tmp_path / "st")
    with pytest.raises(FmriError, match="subject '01' run '1' has more than one BOLD file"):
        ingest_bids(st, own_study, "movie")
    assert st.entries() == []


def test_trial_type_names_the_stimulus_and_subjects_must_agree_on_onsets(own_study, tmp_path):
    st = open_store(tmp_path / "st")
    r = ingest_bids(st, own_study, "movie", event="movie", event_column="trial_type", runs=["run-2"])
    assert [x["stimulus_onset_s"] for x in r.entry.attrs["runs"]] == [6.0]
    ev = own_study / "sub-02" / "func" / "sub-02_task-movie_run-2_events.tsv"
    ev.write_text(ev.read_text().replace("6.0\t", "8.0\t"))
    with pytest.raises(FmriError, match=r"run 2: the events files put the stimulus at different onsets "
                                        r"\(sub-01: 6 s, sub-02: 8 s\)"):
        ingest_bids(st, own_study, "movie", event="movie.wav")
