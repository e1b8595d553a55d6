"""Runs (issue #10 item 3): one NIfTI per (subject, run), one stimulus per run, runs along ``tr``.

Real NIfTI files written by nibabel, real Zarr stores on disk, the CLI in-process.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.errors import FmriError, PairingWarning, ParameterError
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.fmri.runs import run_table, select_run
from helpers import fmri_snapshot as snapshot, stimulus_entry, synth, write_series

#: run "1" has 12 TRs, run "2" has 8 (a movie shown in two parts of different lengths)
LENGTHS = {"1": 12, "2": 8}
MASK = np.zeros((6, 5, 4), bool)
MASK[1:5, 1:4, :3] = True


def write_runs(tmp_path, subjects=("s1", "s2")) -> tuple[list, list, list, dict]:
    """Files, subject IDs, run IDs (subject-major) and the raw (tr, voxel) of each (subject, run)."""
    files, subj, runs, raw = [], [], [], {}
    for i, s in enumerate(subjects):
        for j, (run, n) in enumerate(LENGTHS.items()):
            data = synth(n=n, seed=10 * i + j, offset=100.0 + 40 * j)  # run 2 on another baseline
            files.append(write_series(tmp_path / f"{s}_run-{run}.nii.gz", data))
            subj.append(s)
            runs.append(run)
            raw[(s, run)] = nib.load(files[-1]).get_fdata()[MASK].T
    return files, subj, runs, raw


@pytest.fixture
def stimuli(store):
    return {run: stimulus_entry(store, n_trs=n, source=run * 64) for run, n in LENGTHS.items()}


def test_runs_are_stored_along_tr_and_zscored_per_run(store, tmp_path, stimuli):
    files, subj, runs, raw = write_runs(tmp_path)
    r = ingest_fmri(store, files[::-1], subj[::-1], runs=runs[::-1], mask=MASK,  # any file order
                    params=FmriParams(zscore_trs=(0, 6)), stimulus=stimuli)
    ds = store.open(r.entry)
    a = r.entry.attrs
    assert ds["fmri"].dims == ("subject", "tr", "voxel") and ds["fmri"].shape == (2, 20, int(MASK.sum()))
    assert list(ds["subject"].values) == ["s2", "s1"] and a["n_runs"] == 2 and a["n_trs"] == 20
    assert list(ds["run"].values) == ["2"] * 8 + ["1"] * 12  # runs in order of first appearance
    np.testing.assert_array_equal(ds["tr_in_run"].values, np.r_[np.arange(8), np.arange(12)])
    np.testing.assert_allclose(ds["tr_start_s"].values, 2.0 * np.r_[np.arange(8), np.arange(12)])
    assert [(x["run"], x["tr_offset"], x["n_trs"]) for x in a["runs"]] == [("2", 0, 8), ("1", 8, 12)]
    assert [x["stimulus_key"] for x in a["runs"]] == [stimuli["2"].key, stimuli["1"].key]
    assert "stimulus_key" not in a  # per run only
    for s in ("s1", "s2"):
        for run in ("1", "2"):
            ts = raw[(s, run)]
            z = (ts - ts[:6].mean(0)) / ts[:6].std(0)  # each run on its own training TRs
            got = select_run(ds, run)["fmri"].sel(subject=s).values
            np.testing.assert_allclose(got, z, atol=1e-4)
    assert ds["zscore_mean"].dims == ("subject", "run_id", "voxel")
    np.testing.assert_allclose(ds["zscore_mean"].sel(subject="s1", run_id="2").values, raw[("s1", "2")][:6].mean(0),
                               rtol=1e-5)
    again = ingest_fmri(store, files, subj, runs=runs, mask=MASK, params=FmriParams(zscore_trs=(0, 6)),
                        stimulus=[stimuli["1"], stimuli["2"]])
    assert again.created and again.entry.key != r.entry.key  # the run order is part of the key
    hit = ingest_fmri(store, files, subj, runs=runs, mask=MASK, params=FmriParams(zscore_trs=(0, 6)),
                      stimulus=[stimuli["1"], stimuli["2"]])
    assert hit.entry.key == again.entry.key and not hit.created


def test_run_structure_is_in_the_key(store, tmp_path):
    files, subj, runs, _ = write_runs(tmp_path, subjects=("s1",))
    with_runs = ingest_fmri(store, files, subj, runs=runs, mask=MASK).entry
    swapped = ingest_fmri(store, files, ["s1", "s1"], runs=["2", "1"], mask=MASK).entry
    assert with_runs.key != swapped.key
    assert with_runs.attrs["inputs"]["runs"][0] == {"run": "1", "n_trs": 12, "stimulus_sha256": None, "onset_s": 0.0}
    alone = ingest_fmri(store, files[:1], ["s1"], mask=MASK).entry  # no runs: the layout (and key) before runs
    assert "runs" not in alone.attrs["inputs"] and "run" not in store.open(alone).coords
    assert run_table(alone.attrs) == [{"run": "1", "tr_offset": 0, "n_trs": 12, "onset_s": 0.0}]
    assert select_run(store.open(alone), "1")["fmri"].shape[1] == 12
    with pytest.raises(ParameterError, match="holds one run"):
        select_run(store.open(alone), "2")


def test_a_stimulus_shorter_or_longer_than_its_run_warns_with_the_trs_that_pair(store, tmp_path):
    files, subj, runs, _ = write_runs(tmp_path, subjects=("s1",))
    short = stimulus_entry(store, n_trs=10, source="c" * 64)  # run 1 has 12 TRs
    long = stimulus_entry(store, n_trs=11, source="d" * 64)  # run 2 has 8
    with pytest.warns(PairingWarning) as caught:
        r = ingest_fmri(store, files, subj, runs=runs, mask=MASK, stimulus={"1": short, "2": long})
    text = [str(w.message) for w in caught]
    assert any("run '1'" in t and "TRs 0:10 (entry TRs 0:10)" in t and "more scan" in t for t in text)
    assert any("run '2'" in t and "TRs 0:8 (entry TRs 12:20)" in t and "more stimulus" in t for t in text)
    assert [x["paired_trs"] for x in r.entry.attrs["runs"]] == [[0, 10], [0, 8]]


def test_one_run_stimulus_shorter_than_the_scan_warns_too(store, tmp_path):
    path = write_series(tmp_path / "s.nii", synth(n=20))
    stim = stimulus_entry(store, n_trs=10)
    with pytest.warns(PairingWarning, match="only TRs 0:10 pair"):
        r = ingest_fmri(store, [path], ["s"], stimulus=stim)
    assert r.entry.attrs["paired_trs"] == [0, 10]


@pytest.mark.parametrize("case, kwargs, match", [
    ("runs-count", {"runs": ["1", "2", "1"]}, "4 NIfTI file.*3 run ID"),
    ("missing-run", {"runs": ["1", "2", "1", "1"]}, r"more than once"),
    ("stimulus-count", {"stimulus": "ONE"}, "1 stimulus entr.* for 2 runs"),
    ("stimulus-tr", {"stimulus": "TR"}, r"run '2': TR mismatch: the fMRI TR is 2 s.*1.5 s"),
    ("n-trs", {"params": FmriParams(n_trs=5)}, "with runs each run keeps its own length"),
])
def test_bad_runs_input_is_refused_and_the_store_unchanged(store, tmp_path, stimuli, case, kwargs, match):
    files, subj, runs, _ = write_runs(tmp_path)
    other_tr = stimulus_entry(store, tr_s=1.5, n_trs=8, source="e" * 64)
    stim = {"ONE": stimuli["1"], "TR": [stimuli["1"], other_tr]}.get(kwargs.get("stimulus"))
    kwargs = {"runs": runs, **kwargs, **({"stimulus": stim} if "stimulus" in kwargs else {})}
    before = snapshot(store)
    with pytest.raises((FmriError, ParameterError), match=match):
        ingest_fmri(store, files, subj, mask=MASK, **kwargs)
    assert snapshot(store) == before


def test_runs_of_different_lengths_within_one_run_are_refused(store, tmp_path):
    a = write_series(tmp_path / "a.nii", synth(n=12))
    b = write_series(tmp_path / "b.nii", synth(n=11, seed=1))
    with pytest.raises(FmriError, match=r"run '1': the subjects' NIfTIs have different numbers of volumes"):
        ingest_fmri(store, [a, b], ["s1", "s2"], runs=["1", "1"], mask=MASK)
    with pytest.raises(FmriError, match="has no NIfTI for run '2'"):
        ingest_fmri(store, [a, b, a], ["s1", "s2", "s1"], runs=["1", "1", "2"], mask=MASK)


def test_cli_ingest_runs_and_bad_input_exit_2(tmp_path, capsys):
    files, subj, runs, _ = write_runs(tmp_path)
    st = tmp_path / "st"
    args = ["ingest-fmri", str(st), *map(str, files), "--subject", *subj, "--run", *runs, "--zscore-trs", "0:6"]
    assert main(args + ["--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["entries"]
    assert doc["attrs"]["n_runs"] == 2 and [x["n_trs"] for x in doc["attrs"]["runs"]] == [12, 8]
    store = open_store(st)
    before = snapshot(store)
    assert main(args[:-2] + ["--run", "1"]) == 2  # 5 run IDs for 4 files
    err = capsys.readouterr().err
    assert "4 NIfTI file(s) but 5 run ID(s)" in err and "Traceback" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(args[:-2] + ["--zscore-trs", "0:10"]) == 2  # run 2 has 8 TRs
    assert "shortest run (8 TRs" in capsys.readouterr().err
    assert snapshot(store) == before
    part1 = stimulus_entry(store, n_trs=12, source="1" * 64)
    part2_at_1_5 = stimulus_entry(store, tr_s=1.5, n_trs=8, source="2" * 64)
    before = snapshot(store)
    assert main(args + ["--stimulus", part1.key[:12], part2_at_1_5.key[:12]]) == 2
    err = capsys.readouterr().err
    assert "run '2': TR mismatch: the fMRI TR is 2 s" in err and "1.5 s grid" in err and "Traceback" not in err
    assert main(args + ["--stimulus", part1.key[:12]]) == 2
    assert "1 stimulus entr(ies) for 2 runs" in capsys.readouterr().err
    assert snapshot(store) == before


# ------------------------------------------------------------------------------------ dataset, splits
@pytest.fixture
def runs_entry(store, tmp_path, stimuli):
    files, subj, runs, raw = write_runs(tmp_path)
    entry = ingest_fmri(store, files, subj, runs=runs, mask=MASK, stimulus=stimuli, chunk_trs=5).entry
    return entry, raw


def test_dataset_serves_each_run_with_its_own_stimulus_and_windows_stay_in_the_run(store, stimuli, runs_entry):
    from giblet_store.training.dataset import StoreDataset

    entry, raw = runs_entry
    per_run = [({"1": stimuli["1"], "2": stimuli["2"]}, "loudness")]
    ds = StoreDataset(store, entry, per_run, window=2, shuffle=True, seed=3)
    assert ds.runs == ["1", "2"] and len(ds) == 2 * ((12 - 2) + (8 - 2))
    seen = set()
    loud = {r: np.linspace(0, 1, n, dtype=np.float32) for r, n in LENGTHS.items()}
    for x in ds:
        s, t, j = ds.subjects[int(x["subject"])], int(x["tr"]), int(x["run"])
        run = ds.runs[j]
        off = 0 if run == "1" else 12
        within = t - off
        assert 2 <= within < LENGTHS[run]  # the window never reaches into the other run
        np.testing.assert_allclose(x["loudness"].numpy(), loud[run][within - 2 : within + 1])
        np.testing.assert_allclose(x["fmri"].numpy(), raw[(s, run)][within], rtol=1e-6)
        seen.add((s, t))
    assert len(seen) == len(ds)
    assert all(a < b and ds.plan.run_of(a) == ds.plan.run_of(b - 1) for _, a, b in ds.units_for())
    first = ds[0]
    assert int(first["tr"]) == 2 and int(first["run"]) == 0


def test_leave_one_run_out(store, stimuli, runs_entry):
    from giblet_store.training.samples import split_trs
    from giblet_store.training.dataset import StoreDataset

    entry, _ = runs_entry
    sp = split_trs(runs=entry, leave_out="2")
    assert sp == {"train": [(0, 12)], "test": [(12, 20)]}
    assert split_trs(runs={"a": 5, "b": 6, "c": 7}, leave_out="b", val="c") == {
        "train": [(0, 5)], "val": [(11, 18)], "test": [(5, 11)]}
    features = [({"1": stimuli["1"], "2": stimuli["2"]}, "loudness")]
    test = StoreDataset(store, entry, features, trs=sp["test"], shuffle=False)
    assert {int(x["run"]) for x in test} == {1} and len(test) == 2 * 8
    train = StoreDataset(store, entry, features, trs=sp["train"], shuffle=False)
    assert {int(x["tr"]) for x in train} == set(range(12))
    with pytest.raises(ParameterError, match="not a run of this entry"):
        split_trs(runs=entry, leave_out="3")
    with pytest.raises(ParameterError, match="needs a training run"):
        split_trs(runs={"1": 4}, leave_out="1")


def test_dataset_request_errors_with_runs(store, stimuli, runs_entry):
    from giblet_store.errors import DatasetRequestError
    from giblet_store.training.samples import plan_samples

    entry, _ = runs_entry
    with pytest.raises(DatasetRequestError, match="name no entry for run '2'"):
        plan_samples(store, entry, [({"1": stimuli["1"]}, "loudness")])
    with pytest.raises(DatasetRequestError, match="comes from stimulus"):  # run 2's TRs joined with run 1's stimulus
        plan_samples(store, entry, [(stimuli["1"], "loudness")])
    with pytest.raises(DatasetRequestError, match="not within the 20 TRs"):
        plan_samples(store, entry, None, trs=[(0, 25)])
    plan = plan_samples(store, entry, None, trs=[(10, 14)])  # fMRI only: a range may span runs; samples do not
    assert plan.ranges == ((10, 12), (12, 14)) and plan.n_samples == 2 * 4


def test_a_short_run_stimulus_limits_that_runs_samples(store, tmp_path):
    from giblet_store.errors import DatasetRequestError
    from giblet_store.training.samples import plan_samples

    files, subj, runs, _ = write_runs(tmp_path, subjects=("s1",))
    short = stimulus_entry(store, n_trs=10, source="c" * 64)
    full = stimulus_entry(store, n_trs=8, source="d" * 64)
    with pytest.warns(PairingWarning):
        entry = ingest_fmri(store, files, subj, runs=runs, mask=MASK, stimulus=[short, full]).entry
    plan = plan_samples(store, entry, [({"1": short, "2": full}, "loudness")])
    assert plan.ranges == ((0, 10), (12, 20))  # run 1's TRs 10:12 have no stimulus
    with pytest.raises(DatasetRequestError, match="reaches TRs of run '1' from 10 on"):
        plan_samples(store, entry, [({"1": short, "2": full}, "loudness")], trs=[(0, 12)])


# ------------------------------------------------------------------------------------ evaluate per run
def _pearson(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def test_evaluate_reports_per_run(store, runs_entry, capsys):
    from giblet_store.training.evaluation import evaluate
    from giblet_store.training.predictions import write_predictions

    entry, _ = runs_entry
    y = store.open(entry)["fmri"].values
    rng = np.random.default_rng(0)
    pred_values = y + rng.standard_normal(y.shape).astype(np.float32) * np.r_[np.full(12, 0.3), np.full(8, 3.0)][:, None]
    pred, _ = write_predictions(store, pred_values, entry, model_name="ridge", checkpoint_sha256="0" * 64)
    assert list(store.open(pred)["run"].values[[0, 12]]) == ["1", "2"]  # predictions carry the run coordinates
    ev, created = evaluate(store, pred)
    a, ds = ev.attrs, store.open(ev)
    assert created and [r["run"] for r in a["runs"]] == ["1", "2"] and [r["n_trs_used"] for r in a["runs"]] == [12, 8]
    assert ds["r_run"].dims == ("subject", "run_id", "voxel")
    for j, (lo, hi) in enumerate([(0, 12), (12, 20)]):
        np.testing.assert_allclose(ds["r_run"].values[:, j], _pearson(pred_values[:, lo:hi].transpose(1, 0, 2),
                                                                       y[:, lo:hi].transpose(1, 0, 2)), atol=1e-5)
    assert a["runs"][0]["r_mean_all"] > a["runs"][1]["r_mean_all"] + 0.3  # run 2 was predicted worse
    test_only, _ = evaluate(store, pred, trs=[(12, 20)])
    t = test_only.attrs
    assert t["trs"] == [12, 20] and t["runs"][0]["n_trs_used"] == 0 and t["runs"][0]["r_mean_all"] is None
    assert np.isnan(store.open(test_only)["r_run"].values[:, 0]).all()
    np.testing.assert_allclose(store.open(test_only)["r"].values, ds["r_run"].values[:, 1], atol=1e-6)
    assert main(["evaluate", store.url, pred.key[:12], "--trs", "12:20"]) == 0
    out = capsys.readouterr().out
    assert "run 2: trs=12:20 (8 TRs) mean r=" in out and "run 1: trs=- (0 TRs) mean r=undefined" in out


def test_cli_to_nifti_of_one_run(store, runs_entry, tmp_path, capsys):
    entry, raw = runs_entry
    out = tmp_path / "s1_run2.nii.gz"
    assert main(["to-nifti", store.url, entry.key[:12], "-o", str(out), "--subject", "s1", "--run", "2",
                 "--trs", "1:5"]) == 0
    img = nib.load(out)
    assert img.shape == MASK.shape + (4,)
    np.testing.assert_allclose(img.get_fdata()[MASK].T, raw[("s1", "2")][1:5], rtol=1e-6)
    capsys.readouterr()
    assert main(["to-nifti", store.url, entry.key[:12], "-o", str(out), "--subject", "s1", "--run", "3"]) == 2
    assert "run '3' is not in entry" in capsys.readouterr().err
    assert main(["to-nifti", store.url, entry.key[:12], "-o", str(out), "--run", "2", "--trs", "0:9"]) == 2
    assert "not within the 8 TRs of run '2'" in capsys.readouterr().err


def test_join_pairs_one_run_with_its_own_stimulus_and_refuses_several(store, stimuli, runs_entry):
    import giblet_store as gs

    entry, raw = runs_entry
    fds = store.open(entry)
    with pytest.raises(ParameterError, match=r"holds 2 runs \['1', '2'\].*select_run"):
        gs.join(stimuli["2"], fds)
    both = gs.join(stimuli["2"], select_run(fds, "2"))  # run 2 sits at entry TRs 12:20
    assert both.sizes["tr"] == LENGTHS["2"] and list(both["tr"].values) == list(range(LENGTHS["2"]))
    np.testing.assert_allclose(both["fmri"].values, select_run(fds, "2")["fmri"].values)
    np.testing.assert_allclose(both["loudness"].values, np.linspace(0, 1, LENGTHS["2"], dtype=np.float32))


def test_derive_along_tr_of_an_entry_with_runs_is_refused(store, runs_entry):
    from giblet_store.features.resample import Resample

    entry, _ = runs_entry
    before = snapshot(store)
    with pytest.raises(ParameterError, match="holds 2 runs one after another along tr"):
        store.derive(entry, Resample(tr_s=1.0), axis="tr")
    assert snapshot(store) == before


# ------------------------------------------------------------------------------------ issue 20 item 3
def test_a_selected_run_carries_its_own_grid_and_joins_with_its_features(store, tmp_path):
    """Run 2's stimulus starts at 37.5 s of the movie: the selected run says so (onset, n_trs, TR), and
    joins with run 2's features; select_run takes an Entry as well as a Dataset."""
    import giblet_store as gs

    stims = {"1": stimulus_entry(store, n_trs=12, source="1" * 64),
             "2": stimulus_entry(store, n_trs=8, source="2" * 64, onset_s=37.5)}
    files, subj, runs, raw = write_runs(tmp_path)
    entry = ingest_fmri(store, files, subj, runs=runs, mask=MASK, stimulus=stims).entry
    part = gs.select_run(entry, "2")  # an Entry (was AttributeError)
    assert part.attrs["onset_s"] == 37.5 and part.attrs["n_trs"] == 8 and part.attrs["tr_s"] == 2.0
    assert part.attrs["run"] == "2" and part.attrs["tr_offset"] == 12 and part.attrs["n_runs"] == 1
    assert part.attrs["stimulus_key"] == stims["2"].key and [r["run"] for r in part.attrs["runs"]] == ["2"]
    np.testing.assert_allclose(part["tr_start_s"].values, 37.5 + 2.0 * np.arange(8))
    assert entry.attrs["onset_s"] == 0.0 and store.open(entry).attrs["n_trs"] == 20  # the entry is untouched
    both = gs.join(stims["2"], part)  # was refused: "TR grids differ ... 37.5 s ... 0 s"
    assert list(both["tr"].values) == list(range(8)) and both.attrs["onset_s"] == 37.5
    np.testing.assert_allclose(both["fmri"].sel(subject="s1").values, raw[("s1", "2")], rtol=1e-6)
    one = gs.select_run(store.open(entry), "1")
    assert one.attrs["onset_s"] == 0.0 and one.attrs["n_trs"] == 12 and one.attrs["tr_offset"] == 0
    y = store.open(entry)["fmri"].values
    pred, _ = gs.write_predictions(store, y, entry, model_name="m", checkpoint_sha256="d" * 64)
    p2 = gs.select_run(pred, "2")  # predictions: the grid from the run coordinates
    assert p2.attrs["onset_s"] == 37.5 and p2.attrs["n_trs"] == 8 and p2.attrs["tr_offset"] == 12
    with pytest.raises(ParameterError, match="takes an entry or an xarray Dataset"):
        gs.select_run("not a dataset", "2")


# ------------------------------------------------------------------------------------ issue 20 item 14
def test_to_nifti_exports_per_run_maps_and_the_ceiling_without_a_subject(store, runs_entry, tmp_path, capsys):
    import giblet_store as gs

    entry, raw = runs_entry
    y = store.open(entry)["fmri"].values
    pred, _ = gs.write_predictions(store, y + np.random.default_rng(5).standard_normal(y.shape), entry,
                                   model_name="m", checkpoint_sha256="e" * 64)
    ev, _ = gs.evaluate(store, pred)
    eds = store.open(ev)
    out = tmp_path / "r_run.nii.gz"
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(out), "--var", "r_run", "--subject", "s1",
                 "--run", "2"]) == 0, capsys.readouterr().err  # was: dims ('run_id', 'voxel')
    want = eds["r_run"].sel(subject="s1", run_id="2").values
    np.testing.assert_allclose(nib.load(out).get_fdata()[MASK], want, rtol=1e-6)
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(out), "--run", "1"]) == 0  # default: r_run_mean
    np.testing.assert_allclose(nib.load(out).get_fdata()[MASK], eds["r_run_mean"].sel(run_id="1").values, rtol=1e-6)
    ceiling = tmp_path / "ceiling.nii.gz"
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(ceiling), "--var", "noise_ceiling"]) == 0
    np.testing.assert_allclose(nib.load(ceiling).get_fdata()[MASK], np.nan_to_num(eds["noise_ceiling"].values),
                               rtol=1e-6)
    capsys.readouterr()
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(out), "--var", "r_run", "--subject", "s1"]) == 2
    assert "holds runs ['1', '2']; say which (run=..., --run)" in capsys.readouterr().err
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(out), "--var", "r_run_mean", "--run", "3"]) == 2
    assert "run '3' is not in variable 'r_run_mean'" in capsys.readouterr().err
    assert main(["to-nifti", store.url, ev.key[:12], "-o", str(out), "--var", "r", "--subject", "s1",
                 "--run", "2"]) == 2
    assert "is not per run" in capsys.readouterr().err and not (tmp_path / "nothing.nii").exists()
    four = gs.entry_to_nifti(store, pred, tmp_path / "p.nii.gz", subject="s2", run="2")  # 4D: the run's TRs
    assert nib.load(four).shape == MASK.shape + (LENGTHS["2"],)


# ------------------------------------------------------------------------------------ issue 20 item 15
def test_split_trs_leaves_out_a_list_of_runs():
    from giblet_store.training.samples import split_trs

    runs = {"1": 10, "2": 12, "3": 14, "4": 16}
    assert split_trs(runs=runs, leave_out=["1", "3"]) == {"train": [(10, 22), (36, 52)], "test": [(0, 10), (22, 36)]}
    assert split_trs(runs=runs, leave_out=("4",), val="2") == {
        "train": [(0, 10), (22, 36)], "val": [(10, 22)], "test": [(36, 52)]}
    assert split_trs(runs=runs, leave_out=["2"]) == split_trs(runs=runs, leave_out="2")
    with pytest.raises(ParameterError, match="needs a training run"):
        split_trs(runs={"1": 4, "2": 4}, leave_out=["1", "2"])
    with pytest.raises(ParameterError, match=r"leave_out='9' is not a run of this entry"):
        split_trs(runs=runs, leave_out=["1", "9"])
    with pytest.raises(ParameterError, match="names a run twice"):
        split_trs(runs=runs, leave_out=["1", "1"])
    with pytest.raises(ParameterError, match="needs a training run"):
        split_trs(runs=runs, leave_out=["1", "2"], val="2")


def test_one_subject_given_twice_without_runs_says_add_run(store, tmp_path):
    files, subj, runs, _ = write_runs(tmp_path, subjects=("s1",))
    before = snapshot(store)
    with pytest.raises(FmriError, match=r"\('s1' more than once\); for several runs of one subject add --run "
                                        r"\(runs=\[...\]: a run ID per file\), e.g. --subject s1 s1 --run 1 2"):
        ingest_fmri(store, files, subj, mask=MASK)
    assert snapshot(store) == before
