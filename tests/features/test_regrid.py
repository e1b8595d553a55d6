"""Codes at another onset or TR count are re-grouped from an entry holding the whole stream (issue 19 item 5)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import giblet_store as gs
import giblet_store.features.codes as codes_mod

GRIDS = [gs.TrGrid(1.5, onset_s=-3.0), gs.TrGrid(1.5, onset_s=0.75, n_trs=4), gs.TrGrid(2.0, onset_s=1.0)]


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded; a re-grid must not encode")


def _extract(store, wav, model_dir, grid):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # frames before TR 0 / after the last TR
        return gs.extract_codes(store, wav, gs.CodecParams(str(model_dir), 1.5), grid)


@pytest.mark.parametrize("grid", GRIDS, ids=["onset-3", "onset0.75-4trs", "tr2"])
def test_regrid_equals_a_fresh_encode_bit_for_bit_without_the_model(tmp_path, model_dir, tone_wav, grid, monkeypatch):
    st = gs.open_store(tmp_path / "a")
    whole = _extract(st, tone_wav, model_dir, gs.TrGrid(1.5)).entry
    assert whole.attrs["frames_before_grid"] == 0 and whole.attrs["frames_after_grid"] == 0
    fresh = _extract(gs.open_store(tmp_path / "b"), tone_wav, model_dir, grid).entry  # encoded
    assert "regridded_from" not in fresh.attrs
    monkeypatch.setattr(codes_mod, "load_codec", _no_model)
    res = _extract(st, tone_wav, model_dir, grid)
    assert res.created and res.entry.key == fresh.key
    assert res.entry.attrs["regridded_from"] == whole.key
    got, want = st.open(res.entry), fresh.open()
    for var in ("codes", "n_frames", "tr_start_s"):
        assert got[var].dtype == want[var].dtype
        np.testing.assert_array_equal(got[var].values, want[var].values)
    strip = {"regridded_from", "status"}
    assert {k: v for k, v in res.entry.attrs.items() if k not in strip} == \
        {k: v for k, v in fresh.attrs.items() if k not in strip}


def test_an_entry_missing_frames_is_not_regridded(tmp_path, model_dir, tone_wav, monkeypatch):
    st = gs.open_store(tmp_path / "a")
    cropped = _extract(st, tone_wav, model_dir, gs.TrGrid(1.5, n_trs=3)).entry
    assert cropped.attrs["frames_after_grid"] > 0
    other_bw = gs.extract_codes(st, tone_wav, gs.CodecParams(str(model_dir), 3.0), gs.TrGrid(1.5)).entry
    assert other_bw.attrs["frames_after_grid"] == 0
    monkeypatch.setattr(codes_mod, "load_codec", _no_model)
    with pytest.raises(AssertionError, match="the model was loaded"):  # neither holds this request's frames
        _extract(st, tone_wav, model_dir, gs.TrGrid(1.5, onset_s=0.75))


def _no_audio(*args, **kwargs):
    raise AssertionError("the audio was read; a re-grid must not compute the spectrogram again")


@pytest.mark.parametrize("grid", GRIDS[:2], ids=["onset-3", "onset0.75-4trs"])
def test_mel_regrid_equals_a_fresh_extract_without_reading_audio(tmp_path, tone_wav, grid, monkeypatch):
    import giblet_store.features.mel as mel_mod

    mp = gs.MelParams(n_mels=16)
    st = gs.open_store(tmp_path / "a")
    whole = gs.extract_mel(st, tone_wav, mp, gs.TrGrid(1.5)).entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fresh = gs.extract_mel(gs.open_store(tmp_path / "b"), tone_wav, mp, grid).entry
        monkeypatch.setattr(mel_mod, "load_audio", _no_audio)
        res = gs.extract_mel(st, tone_wav, mp, grid)
    assert res.created and res.entry.key == fresh.key and res.entry.attrs["regridded_from"] == whole.key
    got, want = st.open(res.entry), fresh.open()
    for var in ("mel", "mel_mean", "n_frames"):
        np.testing.assert_array_equal(got[var].values, want[var].values)
    strip = {"regridded_from", "status"}
    assert {k: v for k, v in res.entry.attrs.items() if k not in strip} == \
        {k: v for k, v in fresh.attrs.items() if k not in strip}


def test_a_parent_whose_frames_do_not_read_back_whole_is_encoded_instead(tmp_path, model_dir, tone_wav, monkeypatch):
    from pathlib import Path

    st = gs.open_store(tmp_path / "a")
    whole = _extract(st, tone_wav, model_dir, gs.TrGrid(1.5)).entry
    chunks = sorted(p for p in (Path(st.url.removeprefix("file://")) / whole.path / "codes").rglob("*")
                    if p.is_file() and p.name != "zarr.json")
    assert chunks
    chunks[0].unlink()  # a lost chunk reads back as the fill value -1
    grid = gs.TrGrid(1.5, onset_s=0.75)
    with monkeypatch.context() as m:
        m.setattr(codes_mod, "load_codec", _no_model)
        with pytest.raises(AssertionError, match="the model was loaded"):
            _extract(st, tone_wav, model_dir, grid)
    assert st.lookup(whole.key) is None  # the damaged parent was quarantined, not served
    res = _extract(st, tone_wav, model_dir, grid)
    fresh = _extract(gs.open_store(tmp_path / "b"), tone_wav, model_dir, grid).entry
    assert "regridded_from" not in res.entry.attrs and res.entry.key == fresh.key
    np.testing.assert_array_equal(st.open(res.entry)["codes"].values, fresh.open()["codes"].values)
