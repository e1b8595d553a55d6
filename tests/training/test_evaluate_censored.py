"""evaluate leaves an fmri entry's censored (scrubbed) TRs out by default (issue 19)."""

from __future__ import annotations

import json

import numpy as np

import giblet_store as gs
from giblet_store.testing import make_bids


def test_censored_trs_are_left_out_of_r_unless_included(tmp_path):
    study = make_bids(tmp_path / "ds")
    st = gs.open_store(tmp_path / "st")
    fe = gs.ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                        clean=gs.CleanParams(confounds=("motion", "scrub"), motion="basic")).entry
    ds = st.open(fe)
    y = ds["fmri"].values.astype(np.float64)
    cens = ds["censored"].values
    assert cens.any() and (cens[0] != cens[1]).any()  # the subjects are scrubbed at different TRs
    rng = np.random.default_rng(0)
    pred = (y + 5 * rng.standard_normal(y.shape)).astype(np.float32)
    pred[cens] += 100.0  # predictions that differ only where the scan was censored
    ckpt = tmp_path / "w.npy"
    np.save(ckpt, np.zeros(1))
    pe, _ = gs.write_predictions(st, pred, fe, model_name="noisy copy", checkpoint=ckpt)
    ev, _ = gs.evaluate(st, pe)
    ev_all, _ = gs.evaluate(st, pe, include_censored=True)
    assert ev.key != ev_all.key and ev.attrs["n_censored_left_out"] == int(cens.sum())
    r, r_all = st.open(ev)["r"].values, st.open(ev_all)["r"].values
    for i in range(2):
        keep = ~cens[i]
        want = [np.corrcoef(pred[i, keep, v], y[i, keep, v])[0, 1] for v in range(y.shape[2])]
        np.testing.assert_allclose(r[i], want, rtol=1e-4, atol=1e-5)
    assert np.abs(r - r_all).min() > 0.1  # with them, every voxel's r is another one
    assert np.isfinite(st.open(ev)["r2"].values).all()
    # the ceiling is the pairwise one on the TRs no subject censored (NaN where the shared response is not positive)
    from giblet_store.training.ceiling import noise_ceiling

    shared = ~cens.any(0)
    want, _ = noise_ceiling(y[:, shared])
    assert np.isfinite(want).sum() > y.shape[2] // 2
    np.testing.assert_allclose(st.open(ev)["noise_ceiling"].values, want, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_cli_evaluate_include_censored(tmp_path, capsys):
    from giblet_store.cli import main

    study = make_bids(tmp_path / "ds", n_subjects=1)
    st = gs.open_store(tmp_path / "st")
    fe = gs.ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                        clean=gs.CleanParams(confounds=("scrub",))).entry
    y = st.open(fe)["fmri"].values
    np.save(tmp_path / "w.npy", np.zeros(1))
    pe, _ = gs.write_predictions(st, y + 1.0, fe, model_name="shifted copy", checkpoint=tmp_path / "w.npy")
    keys = []
    for extra in ([], ["--include-censored"]):
        assert main(["evaluate", str(tmp_path / "st"), pe.key, "--json", *extra]) == 0
        keys.append(json.loads(capsys.readouterr().out)["entries"][0]["key"])
    assert keys[0] != keys[1]
    assert st.get(keys[0]).attrs["n_censored_left_out"] > 0 and "n_censored_left_out" not in st.get(keys[1]).attrs
