"""Labelling conventions (giblet_store.store.conventions), gs.join / gs.open_dataset, and how entries show
themselves in a notebook (giblet_store.store.entry_repr)."""

from __future__ import annotations

import importlib.util

import dask.array
import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import giblet_store as gs
from giblet_store import CodecParams, ParameterError, TrGrid, extract_codes, ingest_fmri, write_predictions
from giblet_store.testing import synth_audio, write_wav

TR = 1.5


@pytest.fixture(scope="module")
def paired(tmp_path_factory, model_dir):
    """A codes entry of 6 s (4 TRs) and an fmri entry of 6 TRs on its grid (a longer scan)."""
    d = tmp_path_factory.mktemp("paired")
    store = gs.open_store(d / "store")
    wav = write_wav(d / "stim.wav", synth_audio(6.0, 24000, seed=2), 24000)
    codes = extract_codes(store, wav, CodecParams(str(model_dir), bandwidth_kbps=1.5), TrGrid(TR)).entry
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image((100 + rng.standard_normal((4, 3, 2, 6))).astype(np.float32), np.diag([3.0, 3, 3, 1]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, TR))
    nii = d / "sub-01.nii.gz"
    nib.save(img, str(nii))
    with pytest.warns(UserWarning, match=r"stimulus has 4 TRs and the scan 6 TRs .* only TRs 0:4 pair"):
        fmri = ingest_fmri(store, [nii], ["sub-01"], stimulus=codes).entry
    return store, codes, fmri


def _all_labelled(ds) -> list[str]:
    return [n for n in ds.variables if not {"units", "long_name"} <= set(ds[n].attrs)]


def test_every_variable_and_coordinate_has_units_and_long_name(paired, model_dir):
    store, codes, fmri = paired
    y = store.open(fmri)["fmri"].values
    pred, _ = write_predictions(store, y + 0.1, fmri, model_name="m", checkpoint_sha256="1" * 64)
    ev, _ = gs.evaluate(store, pred, trs=(0, 6))
    emb = store.derive(codes, gs.Embeddings(), model=str(model_dir))
    for entry in (codes, fmri, pred, ev, emb, store.derive(emb, gs.Hrf("spm", length_s=6.0))):
        ds = entry.open()
        assert _all_labelled(ds) == [], entry.kind
    assert store.open(codes)["tr_start_s"].attrs["units"] == "s"


def test_fmri_side_entries_carry_time_and_voxel_coordinates(paired):
    store, codes, fmri = paired
    ds = fmri.open()
    assert fmri.attrs["paired_trs"] == [0, 4]
    np.testing.assert_allclose(ds["tr_start_s"].values, TR * np.arange(6))
    assert "voxel" in ds.indexes and ds["voxel_ijk"].dims == ("voxel", "ijk") and "voxel_ijk" in ds.coords
    one = ds.isel(voxel=[3])
    assert one["voxel_ijk"].values.tolist() == [ds["voxel_ijk"].values[3].tolist()]  # position travels along
    pred, _ = write_predictions(store, ds["fmri"].values[:, 2:], fmri, model_name="m", checkpoint_sha256="2" * 64,
                                trs=(2, 6))
    p = pred.open()
    np.testing.assert_allclose(p["tr_start_s"].values, TR * np.arange(2, 6))
    assert "voxel_ijk" in p.coords and p.sizes["voxel"] == ds.sizes["voxel"]


def test_tr_start_s_is_indexed_and_eager(paired):
    store, codes, _ = paired
    ds = codes.open()
    assert "tr_start_s" in ds.indexes and not isinstance(ds["tr_start_s"].data, dask.array.Array)
    assert ds.sel(tr_start_s=slice(1.0, 4.0))["tr"].values.tolist() == [1, 2]
    binned = ds["n_frames"].groupby_bins("tr_start_s", [0, 3, 6], right=False).sum()  # no flox, no .load()
    assert binned.values.tolist() == [113 + 112, 113 + 112]


def test_join_keeps_dtypes_pairs_by_stimulus_time_and_warns(paired):
    store, codes, fmri = paired
    with pytest.warns(UserWarning, match="only TRs 0:4 pair"):
        both = gs.join(codes, fmri)
    assert both["codes"].dtype == np.int16 and both["fmri"].dtype == np.float32
    assert both.sizes["tr"] == 4 and "tr_start_s" in both.indexes
    np.testing.assert_array_equal(both["codes"].values, codes.open()["codes"].values)
    with pytest.warns(UserWarning):
        assert gs.join(codes.key, fmri.key, store=store).sizes["tr"] == 4
    # the same thing with xr.merge pads and casts: what join is for
    assert xr.merge([codes.open()[["codes"]], fmri.open()[["fmri"]]], join="outer")["codes"].dtype != np.int16


def test_join_refuses_other_grids_and_name_clashes(paired, model_dir):
    store, codes, fmri = paired
    other = store.derive(store.derive(codes, gs.Embeddings(), model=str(model_dir)), gs.Resample(tr_s=2.0))
    with pytest.raises(ParameterError, match=r"TR grids differ: features has TR 2 s from 0 s, fmri has TR 1.5 s"):
        gs.join(other, fmri)
    with pytest.raises(ParameterError, match=r"variables \['codes', 'n_frames'\] appear in more than one item"):
        gs.join(codes, codes.open())
    with pytest.raises(ParameterError, match="two or more"):
        gs.join(codes)


def test_entry_repr_open_and_open_dataset(paired):
    store, codes, fmri = paired
    text = repr(codes)
    assert text.startswith(f"<Entry codes {codes.key[:12]} ") and "kbps=1.5" in text and "n_trs=4" in text
    assert len(text) < 200 and "\n" not in text and "inputs" not in text
    found = store.find(kind="codes")  # other tests of this module add entries: compare with their own reprs
    listing = repr(found)
    assert codes in found and listing == "[" + ", ".join(repr(e) for e in found) + "]" and "\n" not in listing
    page = codes._repr_html_()
    assert "<table" in page and "codes" in page and "tr: 4" in page and "codebook: 2" in page
    plain = codes.open(chunks=None)
    assert not isinstance(plain["codes"].variable._data, dask.array.Array)
    assert plain["codes"].values.dtype == np.int16
    ds = gs.open_dataset(store.url, codes.key[:10], chunks={"tr": 4})
    assert ds["codes"].data.chunks[0] == (4,) and ds.attrs["key"] == codes.key


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa (giblet_store[mel]) not installed")
def test_mel_hz_is_eager(paired, tmp_path):
    store, _, _ = paired
    wav = write_wav(tmp_path / "m.wav", synth_audio(3.0, 22050, seed=1), 22050)
    mel = gs.extract_mel(store, wav, gs.MelParams(n_mels=16, n_fft=512, hop=256), TrGrid(TR)).entry.open()
    assert not isinstance(mel["mel_hz"].data, dask.array.Array)
    assert mel["mel_hz"].attrs["units"] == "Hz" and "long_name" in mel["mel_hz"].attrs


def _problems(entry) -> list[str]:
    """Every way ``entry`` breaks the conventions of giblet_store.store.conventions (empty: none)."""
    ds = entry.open()
    out = [f"{n}: no units/long_name" for n in ds.variables if not {"units", "long_name"} <= set(ds[n].attrs)]
    names: dict[str, str] = {}
    for n in ds.variables:  # a label copied from another variable (arithmetic keeps attrs) misleads
        label = ds[n].attrs.get("long_name")
        if label == n:
            out.append(f"{n}: long_name is just the name")
        if label in names:
            out.append(f"{n}: long_name {label!r} is also {names[label]}'s")
        names.setdefault(label, str(n))
    if "tr" in ds.dims and not ("tr_start_s" in ds.coords and ds["tr_start_s"].attrs.get("units") == "s"):
        out.append("tr axis without tr_start_s in s")
    if "tr" in ds.dims and "run" not in ds.coords and "tr_start_s" not in ds.indexes:  # runs: per-run times
        out.append("tr_start_s is not indexed")
    if entry.kind in ("fmri", "predictions", "evaluation") and not (
            "voxel" in ds.indexes and "voxel_ijk" in ds.coords):
        out.append("no voxel index / voxel_ijk coordinate")
    return out


def _runs_fmri(store, d):
    rng = np.random.default_rng(5)
    files = []
    for i, n in enumerate((5, 4)):
        img = nib.Nifti1Image((100 + rng.standard_normal((3, 3, 2, n))).astype(np.float32), np.eye(4))
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((1.0, 1.0, 1.0, TR))
        nib.save(img, str(d / f"run{i}.nii"))
        files.append(d / f"run{i}.nii")
    return ingest_fmri(store, files, ["s1", "s1"], runs=["1", "2"]).entry


def _stereo48_codes(store, d):
    from giblet_store.testing import STEREO_48KHZ, save_test_model

    model = save_test_model(d / "m48", seed=1, fill_seconds=4.0, **STEREO_48KHZ)
    wav = write_wav(d / "s48.wav", synth_audio(3.0, 48000, seed=1, channels=2), 48000)
    return extract_codes(store, wav, CodecParams(str(model), bandwidth_kbps=3), TrGrid(TR)).entry


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa (giblet_store[mel]) not installed")
def test_every_kind_the_package_writes_follows_the_conventions(paired, model_dir, tmp_path):
    store, codes, fmri = paired
    m = str(model_dir)
    wav = write_wav(tmp_path / "stim.wav", synth_audio(6.0, 24000, seed=2), 24000)  # the codes entry's source
    emb = store.derive(codes, gs.Embeddings(), model=m)
    mel = gs.extract_mel(store, wav, gs.MelParams(n_mels=16, n_fft=512, hop=256), TrGrid(TR)).entry
    y = store.open(fmri)["fmri"].values
    pred, _ = write_predictions(store, y[:, ::-1].copy(), fmri, model_name="m", checkpoint_sha256="5" * 64)
    rec, _ = gs.write_reconstruction(store, emb.open()["embeddings"].values, emb, fmri=fmri, model_name="r",
                                     checkpoint_sha256="6" * 64)
    runs = _runs_fmri(store, tmp_path)
    yr = store.open(runs)["fmri"].values
    run_pred, _ = write_predictions(store, yr[:, ::-1].copy(), runs, model_name="m", checkpoint_sha256="7" * 64)
    gs.export_codes(store, codes, tmp_path / "c.npy")
    entries = [
        codes, emb, mel, fmri, pred, rec, runs,
        store.derive(emb, gs.Hrf("spm", length_s=6.0)), store.derive(emb, gs.Fir((1, 2))),
        store.derive(emb, gs.Resample(tr_s=2.0)), store.derive(mel, gs.Hrf("glover", length_s=6.0)),
        gs.evaluate(store, pred, trs=(0, 6))[0], gs.evaluate(store, run_pred)[0],
        store.derive(rec, gs.Quantise(bandwidth_kbps=1.5), model=m),
        gs.score_audio(wav, codes, store=store, params=gs.QualityParams(metrics=("snr",)), model=m).entry,
        gs.import_codes(store, tmp_path / "c.npy", model=m, grid=TrGrid(TR)).entry,
        _stereo48_codes(store, tmp_path),  # frame times, chunks and scales
    ]
    assert {e.kind for e in entries} == set(gs.KINDS)  # at least one entry of every kind
    assert [(e.kind, p) for e in entries for p in _problems(e)] == []
    lines = [e.kind + " " + repr(e).split(" ", 3)[-1] for e in entries]  # all but the key tells them apart
    assert len(set(lines)) == len(lines), lines
