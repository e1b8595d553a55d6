"""Denoising at ingest (issue 19): voxel-block cleaning equals nilearn.signal.clean, confounds as used."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.errors import FmriError, ParameterError
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


def test_cleaning_in_voxel_blocks_equals_signal_clean_of_the_whole_matrix(study, tmp_path):
    from nilearn import signal
    from nilearn.interfaces.fmriprep import load_confounds

    clean = CleanParams(confounds=("motion", "wm_csf", "scrub"), detrend=True, high_pass_hz=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = open_store(tmp_path / "st")
        r = ingest_bids(st, study.root, "movie", derivatives="fmriprep", clean=clean,
                        block_bytes=4 * 40 * 8 * 7)  # 7 voxels per block: many blocks
        ds = st.open(r.entry)
        for i, s in enumerate(study.subjects):
            for j, run in enumerate(study.runs):
                conf, keep = load_confounds(str(fmriprep_bold(study.root, s, run)), strategy=("motion", "wm_csf", "scrub"))
                x = masked_series(ds, fmriprep_bold(study.root, s, run))
                want = signal.clean(x, detrend=True, standardize=None, confounds=conf.to_numpy(), sample_mask=keep,
                                    filter="butterworth", high_pass=0.01, t_r=2.0)
                got = ds["fmri"].values[i, j * 40:(j + 1) * 40]
                censored = ds["censored"].values[i, j * 40:(j + 1) * 40]
                np.testing.assert_array_equal(np.flatnonzero(~censored), keep)
                np.testing.assert_allclose(got[~censored], want, rtol=1e-5, atol=1e-3 * np.abs(want).max())
                assert (got[censored] == 0).all() and censored.any()
    runs = r.entry.attrs["runs"]
    assert "trans_x" in runs[0]["confounds"] and "csf" in runs[0]["confounds"]
    assert r.entry.attrs["clean"]["high_pass_hz"] == 0.01 and r.entry.attrs["clean"]["detrend"] is True

def test_column_confounds_and_their_errors(own_study, tmp_path):
    st = open_store(tmp_path / "st")
    r = ingest_bids(st, own_study, "movie", derivatives="fmriprep",
                    clean=CleanParams(confounds=("trans_x", "framewise_displacement")))
    assert r.entry.attrs["runs"][0]["confounds"] == ["trans_x", "framewise_displacement"]
    tsv = own_study / "derivatives/fmriprep/sub-02/func/sub-02_task-movie_run-2_desc-confounds_timeseries.tsv"
    tsv.write_text("\n".join(tsv.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(FmriError, match="sub-02_task-movie_run-2_desc-confounds_timeseries.tsv has 37 rows but "
                                        ".* has 40 volumes"):
        ingest_bids(st, own_study, "movie", derivatives="fmriprep", clean=CleanParams(confounds=("csf",)))

def test_clean_params_validate_themselves():
    with pytest.raises(ParameterError, match="high_pass_hz=0.2 must be below low_pass_hz=0.1"):
        CleanParams(high_pass_hz=0.2, low_pass_hz=0.1)
    with pytest.raises(ParameterError, match="n_compcor must be 'all' or a count"):
        CleanParams(n_compcor="some")
    assert not CleanParams().active and CleanParams(detrend=True).active
    assert CleanParams(confounds="csf").confounds == ("csf",)
