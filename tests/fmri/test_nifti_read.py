"""One-read ingest (nifti_read.py, ingest_scan.py): the hash of the bytes read equals sha256_file,
gathered-then-scaled values equal nibabel's, and the entry equals the one the fallback path makes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from giblet_store.store.hashing import sha256_file
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.fmri.nifti import iter_blocks, iter_masked, open_series
from giblet_store.fmri.nifti_read import HashedVolumes, one_read_supported, raw_rows, scale

SHAPE = (6, 5, 4)


def _write(path, n=17, dtype=np.int16, slope=None, inter=None, big_endian=False, pair=False, seed=0):
    """A 4D series written by hand (header + bytes), so the header's scaling is what we set."""
    import gzip

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype).newbyteorder(">" if big_endian else "<")
    data = (100 + 50 * rng.standard_normal(SHAPE + (n,))).astype(dt)
    data[0, 0, 0] = 0
    hdr = (nib.Nifti1Header if not pair else nib.nifti1.Nifti1PairHeader)()
    hdr = hdr.as_byteswapped(">") if big_endian else hdr
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(dt)
    hdr.set_zooms((2.0, 2.0, 2.0, 1.5))
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=2)
    if slope is not None:
        hdr.set_slope_inter(slope, inter if inter is not None else 0.0)
    if pair:
        with open(path.with_suffix(".hdr"), "wb") as f:
            f.write(hdr.binaryblock)
        path.write_bytes(data.tobytes(order="F"))
        return path.with_suffix(".hdr")
    hdr["vox_offset"] = 352
    with (gzip.open if path.name.endswith(".gz") else open)(path, "wb") as f:
        f.write(hdr.binaryblock + b"\x00" * 4 + data.tobytes(order="F"))
    return path


@pytest.mark.parametrize("name,kw", [
    ("a.nii", dict(slope=0.5, inter=3.0)), ("b.nii.gz", dict(slope=0.25, inter=None)), ("c.nii", dict(dtype=np.float32)),
    ("d.nii", dict(dtype=np.uint8)), ("e.nii", dict(big_endian=True, slope=2.0, inter=-1.0)),
    ("f.nii.gz", dict(dtype=np.float64)),
])
@pytest.mark.parametrize("stop", [17, 9])
def test_hashed_blocks_are_the_file_and_scale_like_nibabel(tmp_path, name, kw, stop):
    path = _write(tmp_path / name, **kw)
    s = open_series(path)
    assert one_read_supported(s)
    reader = HashedVolumes(s)
    mask = np.zeros(SHAPE, bool)
    mask[1:4, ::2, 1:] = True
    flat = np.flatnonzero(mask.ravel(order="F"))
    got = {t0: raw for t0, raw in reader.blocks(stop, 4)}
    assert reader.hexdigest() == sha256_file(path)  # every byte, even when the blocks stopped early
    ref = {t0: b for t0, b in iter_blocks(s, 0, stop, max_bytes=4 * 8 * int(np.prod(SHAPE)))}
    assert sorted(got) == sorted(ref) == list(range(0, stop, 4))
    for t0, raw in got.items():
        np.testing.assert_array_equal(scale(raw, s), ref[t0])  # bit for bit
        np.testing.assert_array_equal(scale(raw[:, flat], s), ref[t0][:, flat])
        np.testing.assert_array_equal(scale(raw_rows(s, t0, t0 + raw.shape[0])[:, flat], s), ref[t0][:, flat])
    masked = list(iter_masked(s, 2, stop, flat, max_bytes=3 * 8 * int(np.prod(SHAPE))))
    whole = np.asarray(s.img.dataobj[..., 2:stop], dtype=np.float64).reshape(-1, stop - 2, order="F")[flat].T
    np.testing.assert_array_equal(np.concatenate([r for _, r in masked]), whole)


def test_hdr_img_pair_falls_back_and_gives_the_same_entry_values(store, tmp_path):
    one = _write(tmp_path / "s.nii", n=24, slope=0.5, inter=1.0, seed=3)
    pair = _write(tmp_path / "p.img", n=24, slope=0.5, inter=1.0, seed=3, pair=True)
    assert one_read_supported(open_series(one)) and not one_read_supported(open_series(pair))
    mask = np.zeros(SHAPE, bool)
    mask[1:5, 1:4, :3] = True
    for kw in (dict(params=FmriParams(zscore_trs=(0, 18), tr_s=1.5), mask_params=None),
               dict(params=FmriParams(zscore_trs=(0, 18), tr_s=1.5), mask=mask)):
        a = ingest_fmri(store, [one], ["s"], **kw).entry
        b = ingest_fmri(store, [pair], ["s"], **kw).entry
        assert a.key != b.key  # different files, different hashes
        assert a.attrs["sources"][0]["source_sha256"] == sha256_file(one)
        assert b.attrs["sources"][0]["source_sha256"] == sha256_file(pair)
        da, db = store.open(a), store.open(b)
        for var in ("fmri", "mask", "zscore_mean", "zscore_std"):
            np.testing.assert_array_equal(da[var].values, db[var].values)


def test_threads_reading_one_uncompressed_series_share_one_open_file(tmp_path, monkeypatch):
    """Unchained reads (uncompressed series) reach raw_rows from several threads at once; nibabel opens a kept-open
    file on a proxy's first read without a lock, so each racing thread opened (and leaked) its own file."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import nibabel.openers as op

    opened = []

    class SlowOpener(op.ImageOpener):
        def __init__(self, *args, **kwargs):
            time.sleep(0.05)  # widen the window in which a second thread finds no opener yet
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(op, "ImageOpener", SlowOpener)
    path = tmp_path / "s.nii"
    data = np.random.default_rng(0).standard_normal((4, 3, 2, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    series = open_series(path)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: raw_rows(series, t, t + 3), range(0, 12, 3)))
    assert len(opened) == 1
    opened[0].fobj.close()  # (the proxy keeps it open for the series' lifetime)
    np.testing.assert_array_equal(np.concatenate(got), data.reshape(-1, 12, order="F").T)
