"""Headers that lie (issue 21 items 7, 8, 13 and the unclean list): each NIfTI is refused by name, with
the fix, before any voxel is read and with nothing written; a sane file still ingests."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.errors import FmriError, ParameterError
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.fmri.nifti import open_series

from helpers import snapshot, write_hostile_niftis


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_hostile_niftis(tmp_path_factory.mktemp("niftis"))


@pytest.mark.parametrize("name, wanted", [
    ("trunc.nii", "says 8 volume(s) of 144 bytes from byte 352 (1,504 bytes) but the file has 1,304 bytes: 6 complete"),
    ("morevols.nii", "says 20 volume(s)"),
    ("voxoff.nii", "vox_offset is 3,000,000,000 bytes, beyond the end of the 1,504-byte file"),
    ("voxoff.nii.gz", "more than any gzip stream of that size holds"),
    ("rgb.nii", "stores RGB colour values"),
    ("complex.nii", "stores complex values (complex64)"),
    ("zerovols.nii", "holds no volumes"),
    ("nanaff.nii", "affine (sform/qform) holds NaN"),
    ("singular.nii", "affine (sform/qform) is singular"),
])
def test_a_lying_header_is_refused_when_opened(files, name, wanted):
    tracemalloc.start()
    try:
        with pytest.raises(FmriError) as err:
            open_series(files[name])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert name in str(err.value) and wanted in str(err.value)
    assert peak < 50 * 1024**2  # nothing the size the header claims was allocated


@pytest.mark.parametrize("name, wanted", [
    ("msec.nii", "pixdim[4]=1.5 msec = 0.0015 s, outside the 0.05-60 s"),
    ("usec.nii", "pixdim[4]=1e-06 sec = 1e-06 s"),
    ("bigtr.nii", "pixdim[4]=1e+06 sec = 1000 s"),
])
def test_an_implausible_header_tr_is_refused_before_any_read(files, tmp_path, name, wanted, monkeypatch):
    import giblet_store.fmri.ingest as ingest

    monkeypatch.setattr(ingest, "scan_and_hash", lambda *a, **k: pytest.fail("data was read"))
    store = open_store(tmp_path / "st")
    before = snapshot(tmp_path)
    with pytest.raises(FmriError) as err:
        ingest_fmri(store, [files[name]], ["s1"])
    assert wanted in str(err.value) and "tr_s=1.5" in str(err.value)
    assert snapshot(tmp_path) == before
    assert open_series(files[name]).header_tr_s is None  # an explicit TR still ingests the file


def test_a_given_tr_below_any_scan_is_refused():
    with pytest.raises(ParameterError, match="tr_s=0.0015 s is shorter than 0.05 s"):
        FmriParams(tr_s=0.0015)


@pytest.mark.parametrize("zscore", [None, (0, 8)])
def test_scaling_that_overflows_float32_is_refused_and_nothing_is_written(files, tmp_path, zscore):
    store = open_store(tmp_path / "st")
    before = snapshot(tmp_path)
    with pytest.raises(FmriError) as err:
        ingest_fmri(store, [files["slope.nii"]], ["s1"], params=FmriParams(zscore_trs=zscore))
    assert "slope.nii" in str(err.value) and "scl_slope=1e+38" in str(err.value)
    assert "set_slope_inter" in str(err.value)
    assert snapshot(tmp_path) == before


def test_a_truncated_gzip_is_named(files, tmp_path):
    with pytest.raises(FmriError, match="trunc.nii.gz is truncated or damaged"):
        ingest_fmri(open_store(tmp_path / "st"), [files["trunc.nii.gz"]], ["s1"])


def test_the_sane_file_still_ingests(files, tmp_path):
    entry = ingest_fmri(open_store(tmp_path / "st"), [files["good.nii"]], ["s1"]).entry
    assert np.isfinite(entry.open()["fmri"].values).all()
